#!/usr/bin/env bash
# null target: fio randread at QD 32 over 2 queues without errors; list --json shows the device
# LIVE with its parameters; del removes /dev/ublkbN and stops the daemon.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

id=0
ublk_add $id -t null -q 2 -d 64 --size 1G
must ublk_json $id >"$E2E_WORK/dev.json"
cat "$E2E_WORK/dev.json"
jq -e '.state == "LIVE"' "$E2E_WORK/dev.json" >/dev/null || fail "state is not LIVE"
jq -e '.dev_id == 0 and .nr_hw_queues == 2 and .queue_depth == 64' "$E2E_WORK/dev.json" >/dev/null ||
  fail "dev_id/nr_hw_queues/queue_depth do not match what add was asked for"
jq -e '.target.type == "null"' "$E2E_WORK/dev.json" >/dev/null || fail "target.type is not null"
pid=$(jq -r .daemon_pid "$E2E_WORK/dev.json")
pid_alive "$pid" || fail "daemon pid '$pid' is not running"
[[ $(blockdev --getsize64 /dev/ublkb$id) == $((1 << 30)) ]] || fail "/dev/ublkb$id is not 1 GiB"

fio_run randread --filename=/dev/ublkb$id --rw=randread --bs=4k --iodepth=32 --numjobs=2 \
  --runtime=5 --time_based
fio_run randwrite --filename=/dev/ublkb$id --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 \
  --runtime=3 --time_based

# A second device without -n takes the first free id.
log "+ ublk-rdma add -t null (no -n)"
out=$(bounded 60 "$UBLK" add -t null --size 64M) || fail "add without -n failed"
echo "$out"
id2=$(sed -n 's/^dev id \([0-9]*\):.*/\1/p' <<<"$out" | head -n1)
[[ -n $id2 ]] && defer ublk_del_quiet "$id2"
[[ $id2 == 1 ]] || fail "add without -n chose id '$id2', expected 1"
[[ $("$UBLK" list --json | jq length) == 2 ]] || fail "list --json does not show 2 devices"
must "$UBLK" list

must "$UBLK" del -n $id
wait_gone /dev/ublkb$id 10
[[ ! -e /dev/ublkc$id ]] || fail "/dev/ublkc$id still exists after del"
wait_pid_gone "$pid" 10
expect_status 1 "$UBLK" list -n $id
must "$UBLK" del -a
wait_gone /dev/ublkb$id2 10
no_ublk_devices
