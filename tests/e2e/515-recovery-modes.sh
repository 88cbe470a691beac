#!/usr/bin/env bash
# The -r 1 recovery modes, as ublksrv and kublk offer them, on a null device: --recovery-reissue
# 0 creates the device without RECOVERY_REISSUE and recovers; --recovery-fail-io (6.13+, the
# driver's RECOVERY_FAIL_IO) fails a read at once with EIO while no daemon runs and reads again
# once `recover` started a new one; where the driver lacks it, add refuses with a clear error.
# Bad combinations are usage errors.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq

expect_status 2 "$UBLK" add -t null -n 0 --recovery-fail-io
expect_status 2 "$UBLK" add -t null -n 0 -r 1 --recovery-fail-io --recovery-reissue 1
expect_status 2 "$UBLK" add -t null -n 0 --recovery-reissue 0
no_ublk_devices

# kill_daemon ID STATE: SIGKILLs the device's daemon and waits for the device to be in STATE
# (QUIESCED, or FAIL_IO with --recovery-fail-io).
kill_daemon() {
  local pid
  pid=$(ublk_daemon_pid "$1")
  log "+ kill -9 $pid (the daemon of device $1)"
  kill -9 "$pid"
  wait_pid_gone "$pid" 10
  wait_state "$1" "$2" 20
}

log "--recovery-reissue 0"
ublk_add 0 -t null --size 64M -r 1 --recovery-reissue 0
flags=$(ublk_json 0 | jq -c .flag_names)
jq -e 'index("USER_RECOVERY") and (index("RECOVERY_REISSUE") | not)' <<<"$flags" >/dev/null ||
  fail "device 0 has flags $flags, expected USER_RECOVERY without RECOVERY_REISSUE"
kill_daemon 0 QUIESCED
must "$UBLK" recover -n 0
wait_state 0 LIVE 20
must bounded 30 dd if=/dev/ublkb0 of=/dev/null bs=4k count=16 iflag=direct status=none
must "$UBLK" del -n 0
wait_gone /dev/ublkb0

log "--recovery-fail-io"
if ! "$UBLK" features --json | jq -e '.names | index("RECOVERY_FAIL_IO")' >/dev/null 2>&1; then
  out=$("$UBLK" add -t null -n 1 --size 64M -r 1 --recovery-fail-io 2>&1)
  rc=$?
  log "  without the driver's RECOVERY_FAIL_IO: exit $rc: $out"
  ((rc == 1)) && grep -q "RECOVERY_FAIL_IO" <<<"$out" || fail "add --recovery-fail-io did not refuse clearly"
  no_ublk_devices
  exit 0
fi
ublk_add 1 -t null --size 64M -r 1 --recovery-fail-io
ublk_json 1 | jq -e '.flag_names | index("RECOVERY_FAIL_IO")' >/dev/null || fail "device 1 lacks RECOVERY_FAIL_IO"
kill_daemon 1 FAIL_IO
t0=$SECONDS
bounded 30 dd if=/dev/ublkb1 of=/dev/null bs=4k count=1 iflag=direct status=none
rc=$?
log "  a read with no daemon: exit $rc after $((SECONDS - t0)) s"
((rc != 0 && rc != 124)) || fail "a read with no daemon did not fail (exit $rc)"
must "$UBLK" recover -n 1
wait_state 1 LIVE 20
must bounded 30 dd if=/dev/ublkb1 of=/dev/null bs=4k count=16 iflag=direct status=none
must "$UBLK" del -n 1
wait_gone /dev/ublkb1
no_ublk_devices
