#!/usr/bin/env bash
# rdma target: `del` while fio runs at QD 32 on 2 queues: del returns, fio gets errors and exits,
# nothing hangs, the device and its daemon are gone; the server lets go of the connections, stays
# up and serves a new `add`, whose data verifies. Then `del` while the server is gone and the
# device holds fio's requests to reissue them (reconnecting, --ctrl-loss-tmo 600): it returns
# within seconds, not after the ctrl-loss timeout, and the held requests fail.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
serve_start --export vol0=ram:64M

id=0
rdma_add $id vol0 -q 2 -d 64
pid=$(ublk_daemon_pid $id)
fio_background del /dev/ublkb$id --bsrange=4k-256k
out=$E2E_BG_FIO_OUT fio_pid=$E2E_BG_FIO_PID
sleep 5
kill -0 $fio_pid 2>/dev/null || fail "fio ended early: $(tail -n 5 "$out")"
[[ $(serve_counter vol0 commands) -gt 0 ]] || fail "no command reached the server"

log "+ ublk-rdma del -n $id (fio running)"
t0=$SECONDS
# Under TCG, with fio and the polling queue threads on both vCPUs, starting ublk-rdma alone (its
# 40-odd libraries, librbd's chain most of them, paged in over 9p) has taken 40 s.
bounded 150 "$UBLK" del -n $id || fail "del under IO failed or hung"
log "  del returned after $((SECONDS - t0)) s"
for ((i = 0; i < 300; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 0.1; done
kill -0 $fio_pid 2>/dev/null && fail "fio still runs 30 s after del"
wait $fio_pid
rc=$?
grep -E 'err=|error' "$out" | head -n 5 | sed 's/^/    /'
((rc != 0)) || grep -qE 'err= *[1-9]' "$out" || fail "fio reported no error although the device was deleted"
log "  fio ended with status $rc and errors, as expected"
wait_gone /dev/ublkb$id 10
[[ ! -e /dev/ublkc$id ]] || fail "/dev/ublkc$id still exists"
wait_pid_gone "$pid" 10

log "the server drops the connections and stays up"
kill -0 "$E2E_SERVE_PID" || fail "the server died"
wait_until 30 "the server to close every connection" eval "[[ \$(jq '.connections | length' '$E2E_SERVE_STATS') == 0 ]]"
rdma_add $id vol0 -q 2 -d 64
fio_write_verify verify /dev/ublkb$id 12M
must "$UBLK" del -n $id
no_ublk_devices
serve_stop

log "del while the server is gone and the device holds requests for its return"
serve_start --export vol0=ram:64M
rdma_add $id vol0 -q 2 -d 64 --keepalive-tmo 2
pid=$(ublk_daemon_pid $id)
fio_background held /dev/ublkb$id --bsrange=4k-64k
out=$E2E_BG_FIO_OUT fio_pid=$E2E_BG_FIO_PID
sleep 3
log "+ kill -KILL $E2E_SERVE_PID (serve, fio running)"
kill -KILL "$E2E_SERVE_PID"
wait_until 30 "the device to reconnect" eval "[[ \$(ublk_state $id) == RECONNECTING ]]"
kill -0 $fio_pid 2>/dev/null || fail "fio ended while the device reconnects: $(tail -n 5 "$out")"
log "+ ublk-rdma del -n $id (requests held)"
t0=$SECONDS
bounded 150 "$UBLK" del -n $id || fail "del of a reconnecting device failed or hung"
((SECONDS - t0 < 150)) || fail "del took $((SECONDS - t0)) s: it waited for the held requests (--ctrl-loss-tmo 600)"
log "  del returned after $((SECONDS - t0)) s"
for ((i = 0; i < 300; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 0.1; done
kill -0 $fio_pid 2>/dev/null && fail "fio still runs 30 s after del"
wait $fio_pid
grep -qE 'err= *[1-9]' "$out" || fail "fio reported no error although its held requests were failed"
wait_gone /dev/ublkb$id 10
wait_pid_gone "$pid" 10
no_ublk_devices
