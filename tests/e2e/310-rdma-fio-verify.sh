#!/usr/bin/env bash
# rdma target on a ram export over rxe: add -t rdma returns with /dev/ublkbN of the server's
# size; fio write-then-verify (crc32c, bs 4k..1M, QD 1/16/64, 2 queues, 264 MiB) with 0 errors;
# the zero-copy counters: bytes moved by RDMA > 0, bytes copied in userspace == 0 on both
# sides; each completion mode (busy, event, hybrid) serves IO; SIGTERM stops the server cleanly.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rdma_lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
start_server --export vol0=ram:264M

id=0
ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export vol0 -q 2 -d 64
jq -e '.state == "LIVE" and .target.type == "rdma" and .nr_hw_queues == 2' <(ublk_json $id) >/dev/null ||
  fail "device is not a LIVE rdma device with 2 queues"
[[ $(blockdev --getsize64 /dev/ublkb$id) == $((264 << 20)) ]] || fail "/dev/ublkb$id is not 264 MiB"

fio_write_verify verify /dev/ublkb$id 264M
assert_zero_copy $id
must "$UBLK" list -n $id --json >"$E2E_WORK/list.json"
must "$UBLK" del -n $id
wait_gone /dev/ublkb$id

for mode in busy event hybrid; do
  ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export vol0 -q 2 -d 32 --poll $mode
  fio_write_verify "verify-$mode" /dev/ublkb$id 24M
  fio_run "randread-$mode" --filename=/dev/ublkb$id --rw=randread --bs=4k --iodepth=16 --numjobs=2 \
    --runtime=3 --time_based
  assert_zero_copy $id
  must "$UBLK" del -n $id
  wait_gone /dev/ublkb$id
done

stop_server
copied=$(server_stat vol0 copied_bytes)
moved=$(server_stat vol0 rdma_bytes)
log "server: rdma_bytes=$moved copied_bytes=$copied"
[[ $copied == 0 ]] || fail "server copied $copied bytes in userspace"
((moved > 0)) || fail "server moved no bytes by RDMA"
