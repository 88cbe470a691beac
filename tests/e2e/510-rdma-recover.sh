#!/usr/bin/env bash
# rdma target with -r 1: the client daemon is SIGKILLed while fio writes a file export at QD 16
# with crc32c verify; the device goes QUIESCED (the kernel keeps the requests), `recover -n ID`
# starts a new daemon that connects to the server again (new connections, a new session) and
# serves what the kernel hands it again: the device is LIVE, fio finishes, and its verify of
# every block written, before and after the kill, passes.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img"

id=0
rdma_add $id f -q 2 -d 32 -r 1
dev=/dev/ublkb$id
pid=$(ublk_daemon_pid $id)
pid_alive "$pid" || fail "no daemon running for device $id (pid '$pid')"

out=$E2E_LOG_DIR/recover.fio
log "+ fio (background): randwrite + crc32c verify on $dev"
fio "${E2E_FIO_COMMON[@]}" --filename="$dev" --rw=randwrite --bsrange=4k-128k --iodepth=16 \
  --size=48M --rate=,6m --verify=crc32c --verify_fatal=1 --name=recover >"$out" 2>&1 &
fio_pid=$!
defer kill -9 "$fio_pid"
nap 3
kill -0 $fio_pid 2>/dev/null || fail "fio finished before the daemon could be killed; make it longer"

crash_and_recover $id $fio_pid "$out"
newpid=$E2E_RECOVERED_PID
jq -e '.state == "LIVE" and .io_state == "live"' <(ublk_json $id) >/dev/null ||
  fail "device is not LIVE at the end: $(ublk_json $id | jq -c '{state, io_state}')"
jq -e '[.queues[].stats.target.errors] | add == 0' <(ublk_json $id) >/dev/null || fail "the new daemon counted IO errors"
kill -0 "$E2E_SERVE_PID" || fail "the server died"
must "$UBLK" del -n $id
wait_gone "$dev"
wait_pid_gone "$newpid" 10
no_ublk_devices
