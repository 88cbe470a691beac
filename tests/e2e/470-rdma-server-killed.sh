#!/usr/bin/env bash
# rdma target: the server is killed (SIGKILL) while fio runs at QD 32 on a device that does not
# reconnect (--ctrl-loss-tmo 0; 500-rdma-reconnect covers reconnecting): the client's IO fails
# within a bounded time, nothing hangs, later IO fails fast, and `del` removes the device and
# its daemon.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
serve_start --export vol0=ram:64M

id=0
rdma_add $id vol0 -q 2 -d 64 --io-timeout 5000 --ctrl-loss-tmo 0
pid=$(ublk_daemon_pid $id)
out=$E2E_LOG_DIR/killed.fio
log "+ fio (background) on /dev/ublkb$id, QD 32, 2 jobs"
fio "${E2E_FIO_COMMON[@]}" --filename=/dev/ublkb$id --rw=randrw --bsrange=4k-256k --iodepth=32 \
  --numjobs=2 --runtime=300 --time_based --name=server-killed >"$out" 2>&1 &
fio_pid=$!
defer kill -9 "$fio_pid"
sleep 5
kill -0 $fio_pid 2>/dev/null || fail "fio ended early: $(tail -n 5 "$out")"

log "+ kill -KILL $E2E_SERVE_PID (serve, fio running)"
kill -KILL "$E2E_SERVE_PID"
t0=$SECONDS
for ((i = 0; i < 600; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 0.1; done
kill -0 $fio_pid 2>/dev/null && fail "fio still runs 60 s after the server was killed"
wait $fio_pid
rc=$?
log "  fio ended $((SECONDS - t0)) s after the server was killed, status $rc"
grep -E 'err=|error' "$out" | head -n 5 | sed 's/^/    /'
((rc != 0)) || grep -qE 'err= *[1-9]' "$out" || fail "fio reported no error although the server is gone"

log "new IO fails, within the IO timeout"
t0=$SECONDS
out=$(bounded 30 dd if=/dev/ublkb$id of=/dev/null bs=4k count=1 iflag=direct 2>&1)
rc=$?
log "  dd: exit $rc after $((SECONDS - t0)) s: $out"
((rc != 124)) || fail "a read hung on the device whose server is gone"
((rc != 0)) || fail "a read succeeded although the server is gone"
jq -e '[.queues[].stats.target.connection_lost // 0] | add > 0' <(ublk_json $id) >/dev/null ||
  log "  (the queues do not count a lost connection: $(ublk_json $id | jq -c '[.queues[].stats.target | {timeouts, connection_lost, errors}]'))"

log "+ ublk-rdma del -n $id"
bounded 60 "$UBLK" del -n $id || fail "del after the server died failed or hung"
wait_gone /dev/ublkb$id 10
wait_pid_gone "$pid" 10
no_ublk_devices
