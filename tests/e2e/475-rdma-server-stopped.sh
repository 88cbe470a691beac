#!/usr/bin/env bash
# rdma target: the server is stopped (SIGTERM) while fio runs at QD 32 on two devices. The
# server finishes what it holds, answers new commands with EIO, drains each connection's send
# queue by counting (a zero-length RDMA WRITE behind an unsignaled tail) and exits 0 within the
# bound; the client's IO fails promptly (--ctrl-loss-tmo 0: no reconnect), nothing hangs, and
# `del` removes the devices. A file export's data acknowledged before the stop is on the
# server's file.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export vol0=ram:64M --export f=file:"$img"

rdma_add 0 vol0 -q 2 -d 64 --io-timeout 5000 --ctrl-loss-tmo 0
rdma_add 1 f -q 2 -d 64 --io-timeout 5000 --ctrl-loss-tmo 0
# A pattern the file keeps: written and acknowledged before the stop.
must bounded 120 dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must bounded 120 dd if="$E2E_WORK/pattern" of=/dev/ublkb1 bs=1M count=4 oflag=direct status=none

pids=()
outs=()
for id in 0 1; do
  out=$E2E_LOG_DIR/stopped-$id.fio
  log "+ fio (background) on /dev/ublkb$id, randrw QD 32 x 2 jobs, beyond the pattern"
  fio "${E2E_FIO_COMMON[@]}" --filename=/dev/ublkb$id --rw=randrw --bsrange=4k-256k --iodepth=32 --numjobs=2 \
    --offset=8M --runtime=300 --time_based --name=server-stopped >"$out" 2>&1 &
  pids+=($!)
  outs+=("$out")
  defer kill -9 "$!"
done
sleep 5
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || fail "fio ended early"; done

t0=$SECONDS
serve_stop  # SIGTERM; fails unless serve exits 0 within 30 s
log "  serve stopped $((SECONDS - t0)) s after SIGTERM with fio running"
grep -q "draining the QP .* timed out" "$E2E_SERVE_LOG" && fail "a connection's drain timed out: $(grep -m1 'timed out' "$E2E_SERVE_LOG")"
closed=$(grep -c "closed (" "$E2E_SERVE_LOG")
((closed >= 16)) || fail "the server closed $closed connections, expected 16 (2 devices x 2 queues x 4)"

for i in 0 1; do
  for ((j = 0; j < 600; j++)); do kill -0 "${pids[$i]}" 2>/dev/null || break; nap 0.1; done
  kill -0 "${pids[$i]}" 2>/dev/null && fail "fio on device $i still runs 60 s after the server stopped"
  wait "${pids[$i]}"
  rc=$?
  log "  fio on device $i ended with status $rc"
  ((rc != 0)) || grep -qE 'err= *[1-9]' "${outs[$i]}" || fail "fio on device $i reported no error although the server is gone"
done

for id in 0 1; do
  bounded 60 "$UBLK" del -n $id || fail "del of device $id after the server stopped failed or hung"
  wait_gone /dev/ublkb$id 10
done
no_ublk_devices
cmp -n $((4 << 20)) "$E2E_WORK/pattern" "$img" || fail "the file export lost data acknowledged before the stop"
log "  the acknowledged pattern is on the server's file"
