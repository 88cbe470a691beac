#!/usr/bin/env bash
# loop target with -r 1: the daemon is killed with SIGKILL while fio writes; the device goes
# QUIESCED, `recover -n ID` starts a new daemon, fio finishes and its crc32c verify passes.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

id=0
img=$E2E_WORK/backing.img
truncate -s 64M "$img"
ublk_add $id -t loop -f "$img" -q 2 -d 32 -r 1
dev=/dev/ublkb$id
pid=$(ublk_daemon_pid $id)
pid_alive "$pid" || fail "no daemon running for device $id (pid '$pid')"

out=$E2E_LOG_DIR/recover.fio
log "+ fio (background): randwrite + crc32c verify on $dev"
fio "${E2E_FIO_COMMON[@]}" --filename="$dev" --rw=randwrite --bsrange=4k-256k --iodepth=16 \
  --numjobs=1 --size=48M --rate=,8m --verify=crc32c --verify_fatal=1 --name=recover >"$out" 2>&1 &
fio_pid=$!
defer kill -9 "$fio_pid"
sleep 3
kill -0 $fio_pid 2>/dev/null || fail "fio finished before the daemon could be killed; make it longer"

crash_and_recover $id $fio_pid "$out"
newpid=$E2E_RECOVERED_PID
jq -e '.state == "LIVE"' <(ublk_json $id) >/dev/null || fail "device is not LIVE at the end"
must "$UBLK" del -n $id
wait_gone "$dev"
wait_pid_gone "$newpid" 10
