#!/usr/bin/env bash
# rdma target survives its server: the server is SIGKILLed while fio writes and verifies
# (crc32c, verify_backlog) a file export at QD 32, and started again 3 s later on the same
# address. The client holds the lost connections' requests, reconnects every --reconnect-delay
# and reissues them: fio sees 0 errors and 0 mismatches, a full verify pass afterwards finds
# every block, `list --json` shows the outage (RECONNECTING, held requests) while it lasts and
# the reconnects afterwards. Then the timeouts: with --ctrl-loss-tmo 5 and the server gone for
# good, a read fails with EIO after 5..8 s (not before, not never) and `del` works; with
# --fast-io-fail-tmo 2 a read fails after ~2 s while reconnecting goes on, and IO works again
# once the server is back. A ram export recreated by a restart is a new instance (protocol v7):
# the client fails IO with a clear error instead of reading the new export's zeros.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img"

id=0
rdma_add $id f -q 2 -d 64 --reconnect-delay 1
pid=$(ublk_daemon_pid $id)
defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"

# Paced so that it is still writing when the server comes back.
verify_fio_start $id reconnect 4m

log "+ kill -KILL $E2E_SERVE_PID (serve, fio running)"
kill -KILL "$E2E_SERVE_PID"
wait "$E2E_SERVE_PID" 2>/dev/null
nap 1.5
state=$(ublk_json $id | jq -c '{state, io_state, held: ([.queues[].stats.target.held] | add),
    connections: [.queues[].stats.target.connection_states[].state] | unique}')
log "  during the outage: $state"
jq -e '.state == "RECONNECTING" and .io_state == "reconnecting"' <<<"$state" >/dev/null ||
  fail "the device is not reported RECONNECTING while its server is gone: $state"
nap 1.5
serve_start --export f=file:"$img"
wait_until 30 "every connection to be live again" \
  eval "ublk_json $id | jq -e '.state == \"LIVE\" and .io_state == \"live\"'"
log "  live again: $(ublk_json $id | jq -c '[.queues[].stats.target | {reissued, connection_lost,
    reconnects: ([.connection_states[].reconnects] | add)}]')"

verify_fio_finish $id 120 "the server restart"
jq -e '[.queues[].stats.target.connection_states[].reconnects] | add >= 8' <(ublk_json $id) >/dev/null ||
  fail "list --json does not show the 8 connections reconnected: $(ublk_json $id | jq -c '[.queues[].stats.target.connection_states]')"
[[ $(ublk_daemon_pid $id) == "$pid" ]] || fail "the daemon changed (pid $pid -> $(ublk_daemon_pid $id))"
must bounded 60 "$UBLK" del -n $id
wait_gone /dev/ublkb$id 10

# read_status ID: reads one block of /dev/ublkbID; prints "STATUS SECONDS".
read_status() {
  local t0=$EPOCHREALTIME rc
  bounded 60 dd if=/dev/ublkb"$1" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null
  rc=$?
  awk -v rc="$rc" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%s %.1f\n", rc, b - a }'
}
# within LOW HIGH SECS: whether LOW <= SECS <= HIGH.
within() { awk -v l="$1" -v h="$2" -v s="$3" 'BEGIN { exit !(s >= l && s <= h) }'; }
# read_after_kill ID: kills the server, reads a block of /dev/ublkbID and fails unless the read
# fails with an error; sets secs to how long it took.
read_after_kill() {
  local rc
  kill -KILL "$E2E_SERVE_PID"
  wait "$E2E_SERVE_PID" 2>/dev/null
  read -r rc secs < <(read_status "$1")
  log "  a read right after the kill: exit $rc after $secs s"
  ((rc != 0 && rc != 124)) || fail "the read did not fail with an error (exit $rc)"
}

log "--ctrl-loss-tmo 5: the server is gone for good"
rdma_add 1 f -q 1 -d 16 --conns-per-queue 2 --reconnect-delay 1 --ctrl-loss-tmo 5
read_after_kill 1
within 4.5 9 "$secs" || fail "the read failed after $secs s, expected 5..8 s (--ctrl-loss-tmo 5)"
read -r rc secs < <(read_status 1)
log "  and one after that: exit $rc after $secs s"
((rc != 0)) && within 0 2 "$secs" || fail "IO after the ctrl-loss-tmo did not fail at once"
jq -e '.state == "FAILED"' <(ublk_json 1) >/dev/null || fail "the device is not reported FAILED: $(ublk_json 1 | jq -c .state)"
must bounded 60 "$UBLK" del -n 1
wait_gone /dev/ublkb1 10

log "--fast-io-fail-tmo 2: IO fails early, reconnecting goes on"
serve_start --export f=file:"$img"
rdma_add 2 f -q 1 -d 16 --conns-per-queue 2 --reconnect-delay 1 --fast-io-fail-tmo 2
read_after_kill 2
within 1.5 5 "$secs" || fail "the read failed after $secs s, expected ~2 s (--fast-io-fail-tmo 2)"
serve_start --export f=file:"$img"
wait_until 30 "device 2 to be live again" eval "ublk_json 2 | jq -e '.io_state == \"live\"'"
read -r rc secs < <(read_status 2)
((rc == 0)) || fail "a read failed (exit $rc) after the server came back"
log "  a read after the server came back: exit 0 after $secs s"
must bounded 60 "$UBLK" del -n 2
wait_gone /dev/ublkb2 10

log "a ram export recreated by a server restart is another export: IO fails, no zeros read as data"
serve_stop
serve_start --export vol0=ram:16M
rdma_add 3 vol0 -q 1 -d 16 --conns-per-queue 1 --reconnect-delay 1
must bounded 60 dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=1 status=none
must bounded 60 dd if="$E2E_WORK/pattern" of=/dev/ublkb3 bs=1M count=1 oflag=direct status=none
kill -KILL "$E2E_SERVE_PID"
wait "$E2E_SERVE_PID" 2>/dev/null
serve_start --export vol0=ram:16M
read -r rc secs < <(read_status 3)
log "  a read after the restart: exit $rc after $secs s"
((rc != 0 && rc != 124)) || fail "a read of the recreated ram export did not fail (exit $rc)"
daemon_log=$(ublk_json 3 | jq -r .log)
grep -q "is a new instance" "$daemon_log" || fail "the daemon's log does not say the export was recreated"
log "  the daemon says: $(grep -m1 "is a new instance" "$daemon_log" | cut -c1-200)"
jq -e '.state == "FAILED"' <(ublk_json 3) >/dev/null || fail "the device is not reported FAILED: $(ublk_json 3 | jq -c .state)"
must bounded 60 "$UBLK" del -n 3
wait_gone /dev/ublkb3 10
no_ublk_devices
