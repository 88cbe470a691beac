#!/usr/bin/env bash
# Failures never hang: `del` while fio runs on an rdma device (fio gets errors, the device goes,
# the server stays up and serves the next client); killing the server (SIGKILL) mid-IO fails
# the client's IO within a bounded time, and `del` then works.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rdma_lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
start_server --export vol0=ram:64M

id=0
dev=/dev/ublkb$id
ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export vol0 -q 2 -d 32
log "+ fio in the background, then del"
fio --name=bg --filename=$dev --ioengine=io_uring --direct=1 --rw=randrw --bs=64k --iodepth=32 --numjobs=2 \
  --runtime=60 --time_based >"$E2E_LOG_DIR/del-fio.log" 2>&1 &
fio_pid=$!
sleep 3
must bounded 60 "$UBLK" del -n $id
wait_gone $dev 30
wait_child 60 $fio_pid
log "fio ended with status $? (errors expected)"
kill -0 "$RDMA_SERVER_PID" || fail "the server died when the client went away"

# The server still serves.
ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export vol0 -q 2 -d 32
must dd if=$dev of=/dev/null bs=1M count=8 iflag=direct status=none

# Kill the server mid-IO: the client's IO fails promptly, nothing hangs.
fio --name=kill --filename=$dev --ioengine=io_uring --direct=1 --rw=randread --bs=4k --iodepth=16 \
  --runtime=120 --time_based >"$E2E_LOG_DIR/kill-fio.log" 2>&1 &
fio_pid=$!
sleep 3
log "+ kill -KILL server (pid $RDMA_SERVER_PID)"
kill -KILL "$RDMA_SERVER_PID"
wait "$RDMA_SERVER_PID" 2>/dev/null
RDMA_SERVER_PID=
start=$SECONDS
wait_child 60 $fio_pid
rc=$?
((rc != 124)) || fail "fio still running 60 s after the server died"
log "fio ended $((SECONDS - start)) s after the server died, status $rc"
((rc != 0)) || fail "fio reported success although the server died"
if dd if=$dev of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null; then
  fail "a read succeeded with the server gone"
fi
lost=$(client_stat $id connection_lost)
((lost >= 1)) || fail "the client's counters do not show the lost connection"
must bounded 60 "$UBLK" del -n $id
wait_gone $dev 30
