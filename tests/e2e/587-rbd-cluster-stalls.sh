#!/usr/bin/env bash
# An rbd export whose cluster stops answering mid-IO: the OSD is stopped (SIGSTOP) under fio
# verify for longer than the client's --io-timeout, so the client reconnects and reissues while
# the gateway's first copies of those requests still wait in librbd. Once the OSD runs again,
# fio ends with 0 errors and 0 mismatches. Then the gateway is stopped (SIGTERM) while the OSD
# is stopped: it waits --stop-timeout for the requests it holds in librbd, then exits with
# status 1 naming what it abandoned (none of it was acknowledged); started again once the OSD
# runs, it serves the device, which reissues and verifies clean.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rbd rados ceph-mon ceph-osd
setup_rxe

ceph_cluster
conf=$CEPH_CONF
osd=$(cat "$E2E_CEPH_DIR/run/osd.0.pid") || fail "no pid file for osd.0 under $E2E_CEPH_DIR/run"
pid_alive "$osd" || fail "osd.0 (pid $osd) is not running"
defer kill -CONT "$osd"
rbd -c "$conf" rm --no-progress rbd/stalls >/dev/null 2>&1  # a rerun's
must rbd -c "$conf" create --size 64M rbd/stalls
serve_args=(--ceph-conf "$conf" --ceph-id gw --export vol=rbd:rbd/stalls --stop-timeout 5)
serve_start "${serve_args[@]}"

rdma_add 0 vol -q 2 -d 32 --reconnect-delay 1 --io-timeout 5000
defer cp "$(ublk_json 0 | jq -r .log)" "$E2E_LOG_DIR/daemon-0.log"

log "the OSD stops for 8 s under fio verify (the client's --io-timeout is 5 s)"
verify_fio_start 0 osd-stalls 2m
log "+ kill -STOP $osd (osd.0)"
kill -STOP "$osd"
nap 8
log "  during the stall: $(ublk_json 0 | jq -c '{state, io_state, reissued: ([.queues[].stats.target.reissued] | add)}')"
log "+ kill -CONT $osd (osd.0)"
kill -CONT "$osd"
verify_fio_finish 0 240 "the stalled OSD"
log "  after: $(ublk_json 0 | jq -c '{state, reissued: ([.queues[].stats.target.reissued] | add)}')"

log "the gateway stopped while the OSD is stopped: it gives up on librbd after --stop-timeout"
verify_fio_start 0 osd-stalls-stop 2m
log "+ kill -STOP $osd (osd.0)"
kill -STOP "$osd"
nap 2
gw=$E2E_SERVE_PID
log "+ kill -TERM $gw (serve)"
t0=$EPOCHREALTIME
kill -TERM "$gw"
wait_until 30 "serve to exit" eval "! kill -0 $gw"
wait "$gw"
rc=$?
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
log "  serve exited with status $rc after $secs s: $(grep -m1 'abandon' "$E2E_SERVE_LOG" | cut -c1-240)"
((rc == 1)) || fail "serve exited with status $rc, expected 1 (it abandoned requests in librbd)"
grep -q 'abandon' "$E2E_SERVE_LOG" || fail "serve's log does not say what it abandoned"
log "+ kill -CONT $osd (osd.0)"
kill -CONT "$osd"
serve_start "${serve_args[@]}"
wait_until 60 "the device to be live again" eval "ublk_json 0 | jq -e '.state == \"LIVE\"'"
verify_fio_finish 0 240 "the gateway stopped during the stall"
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0 10
serve_stop
