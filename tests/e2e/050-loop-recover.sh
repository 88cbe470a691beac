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

log "+ kill -9 $pid (the daemon)"
kill -9 "$pid"
wait_pid_gone "$pid" 10
wait_state $id QUIESCED 20
kill -0 $fio_pid 2>/dev/null || fail "fio ended while the device was quiesced: $(tail -n 5 "$out")"

must "$UBLK" recover -n $id
wait_state $id LIVE 20
newpid=$(ublk_daemon_pid $id)
[[ $newpid != "$pid" ]] && pid_alive "$newpid" || fail "no new daemon after recover (pid '$newpid')"
log "new daemon: $newpid"

log "waiting for fio"
for ((i = 0; i < 300; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 1; done
kill -0 $fio_pid 2>/dev/null && fail "fio did not finish within 300 s after recovery"
wait $fio_pid
rc=$?
fio_check "$out" $rc || fail "fio failed across the daemon kill and recovery (exit status $rc)"
log "  fio: $(fio_summary "$out")"
jq -e '.state == "LIVE"' <(ublk_json $id) >/dev/null || fail "device is not LIVE at the end"
must "$UBLK" del -n $id
wait_gone "$dev"
wait_pid_gone "$newpid" 10
