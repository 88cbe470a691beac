#!/usr/bin/env bash
# Authentication (protocol v9) through the CLI: `gen-key` makes keys; a server with
# --auth-keys serves a host that proves its key, with ram (PUSH_WRITES/PULL_READS: the window
# granted only after authentication) and file exports under fio verify, and authenticates again
# on every reconnect (server SIGKILLed mid-fio and restarted: 0 errors, 0 mismatches). Refused
# with exit 1 and a clear message, nothing attached: no key, a wrong key, a wrong host id, an
# export not in the host's list, a server that cannot prove the key the client checks
# (--server-key-file), a client that wants authentication from a server without it, key files
# readable by others (on both sides, at start). Failed attempts are logged with the peer's
# address and the (escaped) host id, counted, and rate-limited per address: after 5 within
# --auth-backoff (10 s here; 30 s by default) the address is refused at CONNECT for that long,
# and a good key works again after that.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
keys=$E2E_WORK/keys
mkdir -m 700 "$keys"
(
  umask 077
  for k in host-a server other; do "$UBLK" gen-key >"$keys/$k.key" || exit 1; done
) || fail "gen-key failed"
grep -qE '^URDMA-KEY-1:[A-Za-z0-9+/]{48}:$' "$keys/host-a.key" || fail "gen-key printed $(cat "$keys/host-a.key")"
cmp -s "$keys/host-a.key" "$keys/other.key" && fail "gen-key printed the same key twice"
[[ $(stat -c %a "$keys/host-a.key") == 600 ]] || fail "the test's key file is not 0600"
auth_keys=$keys/auth-keys
{
  echo "# host key exports"
  echo "host-a $(cat "$keys/host-a.key") vol0,f"
  echo "host-b $(cat "$keys/other.key") ram2"
} >"$auth_keys"
chmod 600 "$auth_keys"
serve_args=(--export vol0=ram:32M --export f=file:"$img" --export ram2=ram:8M --auth-keys "$auth_keys" --auth-backoff 10
            --key-file "$keys/server.key" --server-id srv-1)
auth=(--host-id host-a --key-file "$keys/host-a.key" --server-key-file "$keys/server.key")

log "key files readable by others are refused at start"
cp "$auth_keys" "$keys/open"
chmod 644 "$keys/open"
out=$(bounded 20 "$UBLK" serve --listen "$E2E_RDMA_ADDR" --export vol0=ram:8M --auth-keys "$keys/open" 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/    | /' >&2
((rc == 1)) && grep -q "chmod 600" <<<"$out" || fail "serve with a world-readable --auth-keys: exit $rc"
add_refused "client key file readable by others" "chmod 600" -t rdma --traddr "$E2E_RDMA_ADDR" --export vol0 \
  --host-id host-a --key-file "$keys/open"

serve_start "${serve_args[@]}"
grep -q "authentication on: 2 host(s)" "$E2E_SERVE_LOG" || fail "the server does not say authentication is on"

log "the right key: a ram export (window granted after authentication) and fio verify"
rdma_add 0 vol0 "${auth[@]}" -q 2 -d 32
fio_write_verify auth-ram /dev/ublkb0 24M
stats=$(serve_stats wait)
jq -e '[.connections[] | select(.export == "vol0") | .host == "host-a" and .push_writes and .pull_reads] |
       length == 8 and all' <<<"$stats" >/dev/null ||
  fail "the server does not hold 8 authenticated vol0 connections with PUSH_WRITES and PULL_READS: $(jq -c .connections <<<"$stats")"
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0

log "a file export under fio verify; the server is killed and restarted: every reconnect authenticates again"
rdma_add 1 f "${auth[@]}" -q 2 -d 64 --reconnect-delay 1
defer cp "$(ublk_json 1 | jq -r .log)" "$E2E_LOG_DIR/daemon-1.log"
serve_restart_under_verify 1 auth-reconnect "${serve_args[@]}"
n=$(grep -c "host 'host-a' authenticated (server proved its own key) for export 'f'" "$E2E_SERVE_LOG")
((n == 8)) || fail "the restarted server authenticated $n connections, expected the 8 reconnected ones"
must bounded 60 "$UBLK" del -n 1
wait_gone /dev/ublkb1

log "refusals: each exits 1, says why, attaches nothing"
defer "$UBLK" del -a
rdma=(-t rdma --traddr "$E2E_RDMA_ADDR")
add_refused "no key" "requires authentication" "${rdma[@]}" --export vol0
add_refused "wrong key" "refused to authenticate host 'host-a': unknown host id or wrong key" "${rdma[@]}" \
  --export vol0 --host-id host-a --key-file "$keys/other.key"
add_refused "wrong host id" "refused to authenticate host 'host-b': unknown host id or wrong key" "${rdma[@]}" \
  --export vol0 --host-id host-b --key-file "$keys/host-a.key"
add_refused "export not in the host's list" "does not let it attach export 'ram2'" "${rdma[@]}" --export ram2 "${auth[@]}"
add_refused "the server cannot prove the key the client checks" "failed to prove the server key" "${rdma[@]}" \
  --export vol0 --host-id host-a --key-file "$keys/host-a.key" --server-key-file "$keys/other.key"
kill -0 "$E2E_SERVE_PID" || fail "the server died"
grep -qE "authentication of host 'host-a' for export 'vol0' queue 0 refused: wrong key" "$E2E_SERVE_LOG" ||
  fail "the server log does not name the wrong key"
grep -qE "^.*$E2E_RDMA_ADDR:[0-9]+: authentication of host 'host-b' .* refused: wrong key" "$E2E_SERVE_LOG" ||
  fail "the server log does not name the peer's address and host id"
grep -q "refused: export not in the host's list" "$E2E_SERVE_LOG" || fail "the server log does not say the export is not allowed"
failed=$(serve_stats wait | jq .failed_authentications)
((failed == 3)) || fail "the server counted $failed failed authentications, expected 3"

log "a host id with a newline and terminal escapes is logged escaped"
bad_id=$'evil\n2026-01-01 [server] [info] forged\e[2J'
out=$(bounded 60 "$UBLK" add "${rdma[@]}" --export vol0 --host-id "$bad_id" --key-file "$keys/host-a.key" 2>&1)
(($? == 2)) || fail "add with an invalid --host-id did not exit 2: $out"
grep -q "forged" "$E2E_SERVE_LOG" && fail "an invalid host id reached the server's log"

log "backoff: after 5 failures within 30 s the address is refused at CONNECT, then served again"
for ((i = 0; i < 5; i++)); do
  out=$(bounded 60 "$UBLK" add "${rdma[@]}" --export vol0 --host-id host-a --key-file "$keys/other.key" 2>&1) &&
    fail "a wrong key was accepted"
  grep -q "refuses this address for now" <<<"$out" && break
done
log "  blocked after $i more wrong keys"
add_refused "too many failures" "refuses this address for now" "${rdma[@]}" --export vol0 "${auth[@]}"
grep -q "too many failed authentications from this address" "$E2E_SERVE_LOG" || fail "the server log does not say why"
t0=$SECONDS
wait_until 45 "the right key to be served again" \
  eval "bounded 60 '$UBLK' add -n 2 ${rdma[*]} --export vol0 ${auth[*]} >/dev/null 2>&1"
log "  served again after $((SECONDS - t0)) s"
must dd if=/dev/ublkb2 of=/dev/null bs=1M count=4 iflag=direct status=none
must bounded 60 "$UBLK" del -n 2
serve_stop

log "trusted-network mode: the server warns; a client with a key refuses it"
serve_start --export vol0=ram:8M
grep -q "connections are NOT authenticated" "$E2E_SERVE_LOG" || fail "no warning that connections are unauthenticated"
add_refused "an unauthenticating server" "does not authenticate clients" "${rdma[@]}" --export vol0 "${auth[@]}"
rdma_add 3 vol0
must dd if=/dev/ublkb3 of=/dev/null bs=1M count=4 iflag=direct status=none
must bounded 60 "$UBLK" del -n 3
serve_stop
