#!/usr/bin/env bash
# serve reloads --auth-keys on SIGHUP, without a restart, while a device of another host runs
# fio verify: a host added to the file attaches; a file that does not load (a bad line, a mode
# that others can read) changes nothing and is counted; a host removed from the file loses its
# connections at once (its device's IO fails after --fast-io-fail-tmo, its reconnects are
# refused); put back, the same device reconnects and is live again; its key rotated (the
# client's key file replaced, then the server's line and SIGHUP), the running device
# reconnects with the new key, with no IO error and no failed authentication. The other
# host's device never notices: fio ends with 0 errors and 0 mismatches. A server without
# --auth-keys ignores SIGHUP with a warning.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
keys=$E2E_WORK/keys
mkdir -m 700 "$keys"
(
  umask 077
  for k in host-a host-b; do "$UBLK" gen-key >"$keys/$k.key" || exit 1; done
) || fail "gen-key failed"
auth_keys=$keys/auth-keys
line_a="host-a $(cat "$keys/host-a.key") vol0"
line_b="host-b $(cat "$keys/host-b.key") vol1"
# write_keys LINE...: the file's new content, replaced in one rename, as an editor would.
write_keys() {
  (umask 077 && printf '%s\n' "$@" >"$auth_keys.new") && mv -f "$auth_keys.new" "$auth_keys" ||
    fail "cannot write $auth_keys"
}
# reload WHAT PATTERN: SIGHUP the server; its next "reload:" log line must match PATTERN (ERE).
reload() {
  local what=$1 pattern=$2 n line
  n=$(grep -c 'reload: ' "$E2E_SERVE_LOG")
  log "+ kill -HUP $E2E_SERVE_PID ($what)"
  kill -HUP "$E2E_SERVE_PID" || fail "serve is not running"
  wait_until 10 "the server to reload ($what)" eval "(( \$(grep -c 'reload: ' '$E2E_SERVE_LOG') > $n ))"
  line=$(grep 'reload: ' "$E2E_SERVE_LOG" | sed -n "$((n + 1))p")
  log "  $line"
  grep -qE "$pattern" <<<"$line" || fail "the reload ($what) did not log /$pattern/"
}
stat_of() { serve_stats wait | jq ".$1"; }

write_keys "$line_a"
serve_start --export vol0=ram:64M --export vol1=ram:16M --auth-keys "$auth_keys" --auth-backoff 5
auth_a=(--host-id host-a --key-file "$keys/host-a.key")
auth_b=(--host-id host-b --key-file "$keys/host-b.key")

log "host-a: fio verify on vol0 through every reload"
rdma_add 0 vol0 "${auth_a[@]}" -q 2 -d 32
conns_a=$(serve_connections vol0)
verify_fio_start 0 reload-verify 1m

# refused WHAT ARGS...: `add ARGS` exits 1 saying that host-b's authentication is refused
# (add_refused wants no device at all; device 0 stays here).
refused() {
  local what=$1 out rc
  shift
  log "+ ublk-rdma add $* ($what: expecting exit status 1)"
  out=$(bounded 60 "$UBLK" add "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/    | /' >&2
  ((rc == 1)) && grep -q "refused to authenticate host 'host-b'" <<<"$out" || fail "add ($what) exited $rc"
  [[ $("$UBLK" list --json | jq length) == 1 ]] || fail "a refused add left a device: $("$UBLK" list)"
}
refused "host-b, not in the file yet" -t rdma --traddr "$E2E_RDMA_ADDR" --export vol1 "${auth_b[@]}"

log "host-b added to the file: attaches after SIGHUP"
write_keys "$line_a" "$line_b"
reload "host-b added" "2 host\(s\) .*\(added host-b\); 0 connection\(s\) closed"
# A relative key file: the daemon (working directory /) reads it again at every reconnect.
cd "$keys" || fail "cd $keys"
rdma_add 1 vol1 --host-id host-b --key-file host-b.key -q 1 --reconnect-delay 1 --fast-io-fail-tmo 3
cd - >/dev/null || fail "cd -"
must dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must dd if="$E2E_WORK/pattern" of=/dev/ublkb1 bs=1M oflag=direct status=none
sum=$(sha256sum <"$E2E_WORK/pattern" | cut -d' ' -f1)
[[ $(region_sum /dev/ublkb1 0 4) == "$sum" ]] || fail "host-b's device does not read back what was written"
conns_b=$(serve_connections vol1)

log "files that do not load change nothing"
write_keys "$line_a" "$line_b" "host-c not-a-key vol0"
reload "a bad line" "keeping the keys in use: .*auth-keys:3: the key of host 'host-c'"
chmod 644 "$auth_keys"
reload "a file others can read" "keeping the keys in use: .*chmod 600"
chmod 600 "$auth_keys"
[[ $(region_sum /dev/ublkb1 0 4) == "$sum" ]] || fail "host-b's device lost its data after a refused reload"
(($(stat_of auth_reload_failures) == 2)) || fail "the server did not count 2 failed reloads"
(($(stat_of revoked_connections) == 0)) || fail "a refused reload closed connections"

log "host-b removed: its $conns_b connection(s) close at once, its IO fails, host-a's $conns_a stay"
write_keys "$line_a"
reload "host-b removed" "1 host\(s\) .*\(removed host-b\); $conns_b connection\(s\) closed"
grep -q "host 'host-b' may no longer attach export 'vol1' (--auth-keys reloaded)" "$E2E_SERVE_LOG" ||
  fail "the server does not say why it closes host-b's connections"
wait_until 20 "host-b's connections to close" eval "(( \$(serve_connections vol1) == 0 ))"
(($(serve_connections vol0) == conns_a)) || fail "host-a's connections changed: $(serve_connections vol0) of $conns_a"
(($(stat_of revoked_connections) == conns_b)) || fail "the server counted $(stat_of revoked_connections) revoked"
expect_status "1" bounded 30 dd if=/dev/ublkb1 of=/dev/null bs=4k count=1 iflag=direct status=none
grep -q "refused to authenticate host 'host-b'" "$(ublk_json 1 | jq -r .log)" ||
  fail "host-b's daemon does not log why its reconnects fail"

log "host-b put back: the same device reconnects and reads its data"
nap 5  # past --auth-backoff: host-b's refused reconnects count as failures against the address
write_keys "$line_a" "$line_b"
reload "host-b back" "2 host\(s\) .*\(added host-b\); 0 connection\(s\) closed"
wait_until 60 "host-b's device to be live again" eval "ublk_json 1 | jq -e '.io_state == \"live\"'"
fails0=$(stat_of failed_authentications)
[[ $(region_sum /dev/ublkb1 0 4) == "$sum" ]] || fail "host-b's device does not read back its data after the reload"

log "host-b's key rotated: the running device reads its new key file at the reconnect the reload forces"
(umask 077 && "$UBLK" gen-key >"$keys/host-b.key.new") || fail "gen-key failed"
line_b="host-b $(cat "$keys/host-b.key.new") vol1"
must mv -f "$keys/host-b.key.new" "$keys/host-b.key"  # the client's file first: it is read at connection time only
authenticated_b() { grep -c "host 'host-b' authenticated for export 'vol1'" "$E2E_SERVE_LOG"; }
n0=$(authenticated_b)
errors0=$(ublk_json 1 | jq '[.queues[].stats.target.errors] | add')
write_keys "$line_a" "$line_b"
reload "host-b's key rotated" "2 host\(s\) .*\(changed host-b\); $conns_b connection\(s\) closed"
wait_until 60 "host-b's $conns_b connection(s) to authenticate with the new key" \
  eval "(( \$(authenticated_b) >= n0 + conns_b ))"
wait_until 30 "host-b's device to be live" eval "ublk_json 1 | jq -e '.io_state == \"live\"'"
[[ $(region_sum /dev/ublkb1 0 4) == "$sum" ]] || fail "host-b's device does not read back its data after the rotation"
(($(ublk_json 1 | jq '[.queues[].stats.target.errors] | add') == errors0)) || fail "the rotation cost host-b IO errors"
(($(stat_of failed_authentications) == fails0)) || fail "the rotation cost failed authentications"

verify_fio_finish 0 180 "five reloads"
must bounded 60 "$UBLK" del -n 1
must bounded 60 "$UBLK" del -n 0
serve_stop

log "without --auth-keys, SIGHUP changes nothing and says so"
serve_start --export vol0=ram:8M
reload "no keys" "nothing to reload"
kill -0 "$E2E_SERVE_PID" || fail "serve died of SIGHUP"
serve_stop
