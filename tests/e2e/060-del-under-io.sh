#!/usr/bin/env bash
# `del` while fio runs: del returns, fio gets errors and exits, nothing hangs, the device and
# its daemon are gone. Once on a null and once on a loop device.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio

del_under_io() {
  local id=$1 what=$2 out pid fio_pid i rc
  shift 2
  ublk_add "$id" "$@"
  pid=$(ublk_daemon_pid "$id")
  fio_background del-"$what" /dev/ublkb"$id" --bs=4k
  out=$E2E_BG_FIO_OUT fio_pid=$E2E_BG_FIO_PID
  sleep 3
  kill -0 $fio_pid 2>/dev/null || fail "fio ended early: $(tail -n 5 "$out")"
  log "+ ublk-rdma del -n $id (fio running)"
  bounded 60 "$UBLK" del -n "$id" || fail "del under IO failed or hung"
  for ((i = 0; i < 300; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 0.1; done
  kill -0 $fio_pid 2>/dev/null && fail "fio still runs 30 s after del"
  wait $fio_pid
  rc=$?
  grep -E 'err=|error' "$out" | head -n 5 | sed 's/^/    /'
  ((rc != 0)) || grep -qE 'err= *[1-9]' "$out" || fail "fio reported no error although the device was deleted"
  log "  fio ended with status $rc and errors, as expected"
  wait_gone /dev/ublkb"$id" 10
  [[ ! -e /dev/ublkc$id ]] || fail "/dev/ublkc$id still exists"
  wait_pid_gone "$pid" 10
}

del_under_io 0 null -t null -q 2 --size 1G
truncate -s 64M "$E2E_WORK/backing.img"
del_under_io 1 loop -t loop -q 2 -f "$E2E_WORK/backing.img"
no_ublk_devices
