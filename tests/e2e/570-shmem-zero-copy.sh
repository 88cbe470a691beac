#!/usr/bin/env bash
# add --shmem-buf: zero copy with UBLK_F_SHMEM_ZC. On a kernel without it (6.12) `add` refuses
# the option with a clear error and leaves nothing behind. On 7.1+, with fio's buffers in the
# shared files (--mem=mmaphuge:FILE; fio maps a tmpfs file without resizing it) and request
# merging off (a merged request's pages are not contiguous in any buffer):
# - rdma, file export, both queues: fio verify (crc32c); every byte fio moved counts as zero
#   copy and the driver copied (next to) nothing; fio without the buffers: all by copy; both in
#   one run: each path exactly its own job's bytes, and both verify clean;
# - a read-only buffer (--shmem-buf-ro): WRITEs from it are zero copy, READs into it are copied
#   (the driver never writes a read-only buffer);
# - rdma, ram export with --mr-per-io on: pushed WRITEs, pulled READs and memory windows over the
#   application's pages verify clean;
# - null and loop (hugetlbfs buffer), loop also with --batch-io on: zero copy counted, loop
#   verifies clean; the buffer file
#   removed while the device lives keeps its huge pages, and after `del` they are free again
#   (nothing maps or pins them any more); the daemon logs each buffer unregistered;
# - -r 1: the daemon SIGKILLed under fio verify and `recover`ed: the new daemon maps the same
#   files under the registrations the device kept, serves zero copy again, fio verifies clean;
# - bad files (missing, not tmpfs/hugetlbfs, empty, not whole pages, given twice) are usage errors
#   (exit 2).
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

shm=/dev/shm/e2e-zc
mkdir -p "$shm"
defer rm -rf "$shm"
truncate -s 16M "$shm/a" "$shm/b" "$shm/ro"

log "=== bad files: usage errors"
truncate -s 0 "$shm/empty"
truncate -s 10000 "$shm/odd"
expect_status 2 "$UBLK" add -t null --shmem-buf "$shm/missing"
expect_status 2 "$UBLK" add -t null --shmem-buf-ro /etc/os-release
expect_status 2 "$UBLK" add -t null --shmem-buf "$shm/empty"
expect_status 2 "$UBLK" add -t null --shmem-buf "$shm/odd"
expect_status 2 "$UBLK" add -t null --shmem-buf "$shm/a" --shmem-buf-ro "$shm/a"
no_ublk_devices

if ! "$UBLK" features --json | jq -e '.names | index("SHMEM_ZC")' >/dev/null; then
  IFS=. read -r major minor _ <<<"$(uname -r)"
  ((major > 7 || (major == 7 && minor >= 1))) && fail "kernel $(uname -r) should offer SHMEM_ZC (7.1+)"
  log "=== kernel $(uname -r): no SHMEM_ZC: --shmem-buf must be refused"
  add_refused "no SHMEM_ZC" "lacks SHMEM_ZC \\(Linux 7.1\\+\\)" -n 0 -t null --shmem-buf "$shm/a"
  log "the refusal is what this kernel supports; nothing else of this test applies before 7.1"
  exit 0
fi

setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img" --export vol0=ram:64M

M=$((1 << 20))
# counter ID FIELD: FIELD summed over the device's queues.
counter() { ublk_json "$1" | jq "[.queues[].stats.$2] | add"; }
snapshot() { zc0=$(counter "$1" zero_copy_bytes); cp0=$(counter "$1" driver_copy_bytes); }
deltas() {
  zc=$(($(counter "$1" zero_copy_bytes) - zc0))
  cp=$(($(counter "$1" driver_copy_bytes) - cp0))
  log "  device $1: zero copy $zc bytes, driver copy $cp bytes"
}
no_merges() { echo 2 >/sys/block/ublkb"$1"/queue/nomerges || fail "cannot turn merging off on ublkb$1"; }

log "=== rdma, file export, two queues"
rdma_add 0 f -q 2 -d 32 --shmem-buf "$shm/a" --shmem-buf "$shm/b" --shmem-buf-ro "$shm/ro"
no_merges 0
jq -e '.shmem_bufs | length == 3 and (map(.index) | sort) == [0, 1, 2] and .[2].read_only' \
  "${UBLK_RDMA_RUN_DIR:-/run/ublk-rdma}/ublk0.json" >/dev/null || fail "the state file does not record the buffers"
nap 1  # udev's probing of the new disk
snapshot 0
# Two jobs, one per CPU (so both queues work), each with its own buffer: 2 x (16 MiB written + 16 MiB verified).
fio_run zc --filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M \
  --verify=crc32c --verify_fatal=1 \
  --name=a --cpus_allowed=0 --offset=0 --mem=mmaphuge:"$shm/a" \
  --name=b --cpus_allowed=1 --offset=16M --mem=mmaphuge:"$shm/b"
deltas 0
((zc == 64 * M)) || fail "zero copy moved $zc bytes, fio moved $((64 * M))"
((cp < M)) || fail "the driver copied $cp bytes with every buffer in a shared file"
ublk_json 0 | jq -e 'all(.queues[].stats; .zero_copy_ios > 0)' >/dev/null || fail "a queue served nothing zero copy"

snapshot 0
fio_run copy --filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M --offset=32M \
  --verify=crc32c --verify_fatal=1
deltas 0
((zc == 0)) || fail "zero copy counted $zc bytes for buffers outside the shared files"
((cp >= 32 * M)) || fail "the driver copied $cp bytes, fio moved $((32 * M))"

snapshot 0
fio_run mixed --filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M \
  --verify=crc32c --verify_fatal=1 \
  --name=shared --offset=0 --mem=mmaphuge:"$shm/a" \
  --name=private --offset=32M
deltas 0
((zc == 32 * M)) || fail "mixed: zero copy moved $zc bytes, the shared job $((32 * M))"
((cp >= 32 * M && cp < 33 * M)) || fail "mixed: the driver copied $cp bytes, the private job moved $((32 * M))"

log "=== a read-only buffer: WRITEs from it zero copy, READs into it copied"
snapshot 0
fio_run read-only --filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M --offset=48M \
  --verify=crc32c --verify_fatal=1 --mem=mmaphuge:"$shm/ro"
deltas 0
((zc == 16 * M)) || fail "read-only buffer: zero copy moved $zc bytes, the WRITEs $((16 * M))"
((cp >= 16 * M && cp < 17 * M)) || fail "read-only buffer: the driver copied $cp bytes, the READs $((16 * M))"
no_io_errors 0
must "$UBLK" del -n 0
grep -q "device 0: 3 of 3 shared buffers unregistered" "${UBLK_RDMA_RUN_DIR:-/run/ublk-rdma}"/daemon-*.log ||
  fail "the daemon did not unregister its 3 buffers"

log "=== rdma, ram export, --mr-per-io on (pushed WRITEs, pulled READs, windows)"
rdma_add 1 vol0 -q 1 -d 16 --mr-per-io on --shmem-buf "$shm/a"
no_merges 1
nap 1
snapshot 1
fio_run ram-windows --filename=/dev/ublkb1 --rw=randwrite --bsrange=4k-128k --iodepth=16 --size=16M \
  --verify=crc32c --verify_fatal=1 --mem=mmaphuge:"$shm/a"
deltas 1
((zc == 32 * M)) || fail "ram export: zero copy moved $zc bytes, fio $((32 * M))"
ublk_json 1 | jq -e '.queues[0].stats.target | .pushed_writes > 0 and .pulled_reads > 0 and .window_binds > 0
    and .window_binds == .window_invalidations' >/dev/null ||
  fail "ram export: pushes, pulls or windows missing: $(ublk_json 1 | jq -c '.queues[0].stats.target |
    {pushed_writes, pulled_reads, window_binds, window_invalidations}')"
no_io_errors 1
must "$UBLK" del -n 1

log "=== null and loop, a buffer on hugetlbfs"
grep -qw hugetlbfs /proc/filesystems || fail "this kernel has no hugetlbfs"
hp_old=$(cat /proc/sys/vm/nr_hugepages)
defer eval "echo $hp_old >/proc/sys/vm/nr_hugepages"
echo 8 >/proc/sys/vm/nr_hugepages
[[ $(awk '/^HugePages_Total/ { print $2 }' /proc/meminfo) -ge 8 ]] || fail "cannot reserve 8 huge pages"
htlb=$E2E_WORK/htlb
mkdir -p "$htlb"
must mount -t hugetlbfs none "$htlb"
defer umount "$htlb"
must fallocate -l 8M "$htlb/buf"
ublk_add 2 -t null --size 256M --shmem-buf "$htlb/buf"
no_merges 2
nap 1
snapshot 2
fio_run null --filename=/dev/ublkb2 --rw=randrw --bs=4k --iodepth=16 --size=16M --mem=mmaphuge:"$htlb/buf"
deltas 2
((zc == 16 * M)) || fail "null: zero copy moved $zc bytes, fio $((16 * M))"
must "$UBLK" del -n 2
backing=$E2E_WORK/loop.img
truncate -s 64M "$backing"
ublk_add 3 -t loop -f "$backing" --shmem-buf "$htlb/buf"
no_merges 3
nap 1
snapshot 3
fio_run loop --filename=/dev/ublkb3 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M \
  --verify=crc32c --verify_fatal=1 --mem=mmaphuge:"$htlb/buf"
deltas 3
((zc == 32 * M)) || fail "loop: zero copy moved $zc bytes, fio $((32 * M))"
(($(counter 3 errors) == 0)) || fail "loop: the device counted IO errors"
must "$UBLK" del -n 3
# The same with UBLK_F_BATCH_IO (7.0+): requests and results in per-queue arrays.
ublk_add 5 -t loop -f "$backing" --batch-io on --shmem-buf "$htlb/buf"
no_merges 5
nap 1
snapshot 5
fio_run loop-batch --filename=/dev/ublkb5 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M \
  --offset=16M --verify=crc32c --verify_fatal=1 --mem=mmaphuge:"$htlb/buf"
deltas 5
((zc == 32 * M)) || fail "loop, batch IO: zero copy moved $zc bytes, fio $((32 * M))"
(($(counter 5 errors) == 0)) || fail "loop, batch IO: the device counted IO errors"
free_hp() { awk '/^HugePages_Free/ { print $2 }' /proc/meminfo; }
must rm "$htlb/buf"
total=$(awk '/^HugePages_Total/ { print $2 }' /proc/meminfo)
(($(free_hp) < total)) || fail "the removed file's huge pages are free while the device still pins them"
must "$UBLK" del -n 5
wait_until 10 "the huge pages to be free again after del" eval "(( \$(free_hp) == $total ))"

log "=== -r 1: daemon killed under fio verify, recovered with its buffers"
rdma_add 4 f -q 2 -d 16 -r 1 --shmem-buf "$shm/a"
no_merges 4
out=$E2E_LOG_DIR/recover.fio
log "+ fio (background): randwrite + crc32c verify on /dev/ublkb4, buffers in $shm/a"
fio "${E2E_FIO_COMMON[@]}" --filename=/dev/ublkb4 --rw=randwrite --bsrange=4k-128k --iodepth=16 --size=32M \
  --rate=,4m --verify=crc32c --verify_fatal=1 --mem=mmaphuge:"$shm/a" --name=recover >"$out" 2>&1 &
fio_pid=$!
defer kill -9 "$fio_pid"
nap 3
kill -0 $fio_pid 2>/dev/null || fail "fio finished before the daemon could be killed"
crash_and_recover 4 $fio_pid "$out"
(($(counter 4 zero_copy_bytes) > 0)) || fail "the recovered daemon served nothing zero copy"
no_io_errors 4
must "$UBLK" del -n 4
wait_gone /dev/ublkb4
no_ublk_devices
