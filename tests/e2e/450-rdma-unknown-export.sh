#!/usr/bin/env bash
# Refused connections: `add -t rdma` for an export the server does not have, and for a port
# nothing listens on, fails with exit status 1 and a message that says why; no device, no daemon
# is left behind, and the server still serves a good request afterwards. A server's bound on the
# memory of all its connections (--max-memory) refuses a connection that does not
# fit as busy, leaves the connected device alone, and serves again once that memory is free
# (a device takes the same pool memory over 4 connections, the default, as over one: each
# connection's pool holds only the requests it carries). --max-connections 4 refuses a
# 2-queue add (2 x 4 connections, the default) as busy and serves a 1-queue one (with --spin-us
# 0: the server sleeps as soon as it is idle, and IO still flows). Every connection counts against
# --max-memory, a ram export's too (its slots and queues: 16 MiB at depth 4096), and the
# connections of one address against --max-host-memory: a client that asks for more is refused
# as busy.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 16M "$img"
# A file export needs a buffer pool per connection: its depth x 512 KiB max IO; -q 1 -d 64 over
# 4 connections (depth 16 each) or over 1 (depth 64) takes 32 MiB.
serve_start --export vol0=ram:16M --export f=file:"$img" --max-memory 48M --max-host-memory 48M

defer "$UBLK" del -a
add_refused "unknown export" "no export named 'nosuch'" -t rdma --traddr "$E2E_RDMA_ADDR" --export nosuch
add_refused "nothing listens" "nothing listens|refused|rejected" -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid 4 --export vol0
kill -0 "$E2E_SERVE_PID" || fail "the server died"
jq -e '.rejected_connections >= 1' <(serve_stats wait) >/dev/null || fail "the server did not count the refused connection"

log "the server still serves"
rdma_add 0 vol0
must dd if=/dev/ublkb0 of=/dev/null bs=1M iflag=direct status=none
must "$UBLK" del -n 0
wait_gone /dev/ublkb0

log "the server-wide buffer memory bound (48 MiB; 32 MiB per device here)"
rdma_add 0 f -q 1 -d 64
[[ $(serve_connections f) == 4 && $(serve_counter f depth) == 64 ]] ||
  fail "the server does not hold 4 connections of depth 16 for f: $(serve_stats wait | jq -c '.connections')"
log "+ ublk-rdma add -t rdma --export f -q 1 -d 64 --conns-per-queue 1 (expecting exit status 1: busy)"
out=$(bounded 60 "$UBLK" add -t rdma --traddr "$E2E_RDMA_ADDR" --export f -q 1 -d 64 --conns-per-queue 1 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/    | /' >&2
((rc == 1)) || fail "the add beyond the memory bound exited with $rc, expected 1"
grep -q "busy" <<<"$out" || fail "the refusal does not say the server is busy"
[[ $("$UBLK" list --json | jq length) == 1 ]] || fail "list after the refused add: $("$UBLK" list)"
grep -q "memory of all connections at its limit" "$E2E_SERVE_LOG" || fail "the server log does not say why"
must dd if=/dev/ublkb0 of=/dev/null bs=1M iflag=direct status=none
must "$UBLK" del -n 0
wait_gone /dev/ublkb0
log "once that connection is gone, its memory serves a new one"
for ((i = 0; ; i++)); do
  "$UBLK" add -n 1 -t rdma --traddr "$E2E_RDMA_ADDR" --export f -q 1 -d 64 --conns-per-queue 1 >/dev/null 2>&1 && break
  ((i < 20)) || fail "the server still refuses 10 s after the device was deleted"
  nap 0.5
done
must dd if=/dev/ublkb1 of=/dev/null bs=1M iflag=direct status=none
must "$UBLK" del -n 1
wait_gone /dev/ublkb1
serve_stop

log "the server-wide connection bound (--max-connections 4), a server that never spins"
serve_start --export vol0=ram:16M --max-connections 4 --spin-us 0
log "+ ublk-rdma add -t rdma --export vol0 -q 2 (expecting exit status 1: busy)"
out=$(bounded 60 "$UBLK" add -t rdma --traddr "$E2E_RDMA_ADDR" --export vol0 -q 2 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/    | /' >&2
((rc == 1)) || fail "the 2-queue add against --max-connections 4 exited with $rc, expected 1"
grep -q "busy" <<<"$out" || fail "the refusal does not say the server is busy"
no_ublk_devices
grep -q "server at its connection limit" "$E2E_SERVE_LOG" || fail "the server log does not say why"
for ((i = 0; ; i++)); do  # the refused add's first connections may take a moment to go
  "$UBLK" add -n 0 -t rdma --traddr "$E2E_RDMA_ADDR" --export vol0 -q 1 >/dev/null 2>&1 && break
  ((i < 20)) || fail "a 1-queue add is still refused 10 s after the refused one"
  nap 0.5
done
must dd if=/dev/zero of=/dev/ublkb0 bs=1M count=8 oflag=direct status=none
must dd if=/dev/ublkb0 of=/dev/null bs=1M iflag=direct status=none
must "$UBLK" del -n 0
serve_stop

log "every connection counts against the memory budget, ram exports too, and each host against its share"
serve_start --export vol0=ram:16M --max-memory 64M --max-host-memory 40M
# One connection of depth 4096 to a ram export: 64 KiB + 4096 x 4 KiB = 16.06 MiB of slots and
# queues, no pool; three of them exceed the host's 40 MiB.
add_refused "beyond the host's share" "busy" -t rdma --traddr "$E2E_RDMA_ADDR" --export vol0 -q 3 -d 4096 \
  --max-io 4K --conns-per-queue 1
grep -q "this host's share of the memory at its limit (serve --max-host-memory)" "$E2E_SERVE_LOG" ||
  fail "the server log does not say the host's share is spent"
rdma_add 0 vol0 -q 2 -d 4096 --max-io 4K --conns-per-queue 1
mem=$(serve_stats wait | jq .memory_bytes)
((mem == 2 * (65536 + 4096 * 4096))) || fail "the server counts $mem bytes for two depth-4096 connections"
must dd if=/dev/zero of=/dev/ublkb0 bs=4k count=256 oflag=direct status=none
must "$UBLK" del -n 0
wait_gone /dev/ublkb0
serve_stop
