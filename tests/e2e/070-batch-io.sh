#!/usr/bin/env bash
# add --batch-io (UBLK_F_BATCH_IO, kernel 7.0+: one multishot FETCH_IO_CMDS delivers requests
# in arrays of tags, one COMMIT_IO_CMDS per pass returns their results). Where the driver has it:
# the device gets the flag; loop and rdma devices pass fio's crc32c write-verify at QD 1..64;
# at QD 32 each fetch completion and each commit carries several requests; with a single fetch
# buffer of two tags (a test hook) the fetch command runs dry, is armed again and the data still
# verifies; del under IO and a
# killed daemon (then del) leave nothing behind. Where the driver lacks it (6.12): --batch-io on
# is refused with a clear error and leaves no device, auto falls back to per-request commands.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

has_batch=$("$UBLK" features --json | jq '.names | index("BATCH_IO") != null')
log "driver offers BATCH_IO: $has_batch"

# batched ID: fails unless device ID has BATCH_IO and its queues took several requests per
# fetch completion and per commit (over the whole run, QD 32 included).
batched() {
  local j
  j=$(ublk_json "$1")
  jq -e '.flag_names | index("BATCH_IO") != null' <<<"$j" >/dev/null || fail "device $1 lacks BATCH_IO: $(jq -c .flag_names <<<"$j")"
  log "  queues: $(jq -c '[.queues[].stats | {ios, fetch_cqes, commit_cmds, fetch_rearms}]' <<<"$j")"
  jq -e '([.queues[].stats.ios] | add) as $ios | ([.queues[].stats.commit_cmds] | add) as $c
      | ([.queues[].stats.fetch_cqes] | add) as $f | $ios > 1000 and $c > 0 and $f > 0
      and $ios > 1.5 * $c and $ios > 1.5 * $f' <<<"$j" >/dev/null ||
    fail "device $1 did not batch its requests and results"
}

if [[ $has_batch != true ]]; then
  expect_status 1 "$UBLK" add -n 0 -t null --size 64M --batch-io on
  [[ ! -e /dev/ublkb0 && ! -e /dev/ublkc0 ]] || fail "a refused add left device 0 behind"
  grep -q "lacks BATCH_IO" <("$UBLK" add -n 0 -t null --size 64M --batch-io on 2>&1) ||
    fail "the refusal does not say that the driver lacks BATCH_IO"
  ublk_add 0 -t null --size 64M --batch-io auto
  jq -e '(.flag_names | index("BATCH_IO")) == null' <(ublk_json 0) >/dev/null || fail "device 0 claims BATCH_IO"
  fio_run auto-null --filename=/dev/ublkb0 --rw=randread --bs=4k --iodepth=32 --runtime=2 --time_based
  must "$UBLK" del -n 0
  no_ublk_devices
  log "BATCH_IO is not offered by this kernel: refusal and fallback checked"
  exit 0
fi

log "-r 1 and --batch-io on do not go together"
expect_status 1 "$UBLK" add -n 0 -t null --size 64M -r 1 --batch-io on
no_ublk_devices

log "loop: write-verify, then reads at QD 32"
img=$E2E_WORK/backing.img
truncate -s 192M "$img"
ublk_add 0 -t loop -f "$img" -q 2 -d 64 --batch-io on
fio_write_verify loop-verify /dev/ublkb0 192M
fio_run loop-qd32 --filename=/dev/ublkb0 --rw=randread --bs=4k --iodepth=32 --numjobs=2 --runtime=3 --time_based
batched 0
must "$UBLK" del -n 0
wait_gone /dev/ublkb0

log "loop with one fetch buffer of two tags (test hook): the fetch command keeps running dry and is armed again"
UBLK_RDMA_TEST_SMALL_FETCH=1 ublk_add 4 -t loop -f "$img" -q 2 -d 64 --batch-io on
fio_write_verify small-fetch /dev/ublkb4 96M
log "  queues: $(ublk_json 4 | jq -c '[.queues[].stats | {ios, fetch_cqes, commit_cmds, fetch_rearms}]')"
jq -e '[.queues[].stats.fetch_rearms] | add > 0' <(ublk_json 4) >/dev/null ||
  fail "device 4's fetch command never ran out of buffers"
must "$UBLK" del -n 4
wait_gone /dev/ublkb4

log "rdma (ram export): write-verify"
setup_rxe
serve_start --export vol0=ram:192M
rdma_add 1 vol0 -q 2 -d 64 --batch-io on
fio_write_verify rdma-verify /dev/ublkb1 192M
fio_run rdma-qd32 --filename=/dev/ublkb1 --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --runtime=3 --time_based
batched 1
[[ $(ublk_json 1 | jq '[.queues[].stats.target.errors // 0] | add') == 0 ]] || fail "device 1 counted IO errors"
must "$UBLK" del -n 1
wait_gone /dev/ublkb1

log "del under IO (null)"
ublk_add 2 -t null -q 2 --size 1G --batch-io on
pid=$(ublk_daemon_pid 2)
fio_background del /dev/ublkb2 --bs=4k
out=$E2E_BG_FIO_OUT fio_pid=$E2E_BG_FIO_PID
nap 3
kill -0 $fio_pid 2>/dev/null || fail "fio ended early: $(tail -n 5 "$out")"
bounded 60 "$UBLK" del -n 2 || fail "del under IO failed or hung"
wait_until 30 "fio to end after del" eval "! kill -0 $fio_pid"
wait_gone /dev/ublkb2 10
wait_pid_gone "$pid" 10

log "daemon killed under IO (loop), then del"
ublk_add 3 -t loop -f "$img" -q 2 -d 64 --batch-io on
pid=$(ublk_daemon_pid 3)
fio_background kill /dev/ublkb3 --bs=4k
fio_pid=$E2E_BG_FIO_PID
nap 3
must kill -9 "$pid"
wait_pid_gone "$pid" 10
wait_until 30 "fio to end after the daemon died" eval "! kill -0 $fio_pid"
bounded 60 "$UBLK" del -n 3 || fail "del after the daemon died failed or hung"
wait_gone /dev/ublkb3 10
no_ublk_devices
