#!/usr/bin/env bash
# rdma target: discard (blkdiscard, fio trim) and write-zeroes (blkdiscard -z) read back as zeros
# and leave the data around them alone, on a ram and a file export; the commands reach the
# server as DISCARD / WRITE_ZEROES (its counters), and the file export's backing file holds the
# zeros.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio blkdiscard jq
setup_rxe

M=$((1 << 20))
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export vol0=ram:64M --export f=file:"$img"
head -c 64M /dev/urandom >"$E2E_WORK/data"

data_sum() { head -c $((($1 + $2) * M)) "$E2E_WORK/data" | tail -c $(($2 * M)) | sha256sum | cut -d' ' -f1; }

discard_zeroes() {
  local export=$1 id=$2 dev=/dev/ublkb$2 discards zeroes
  log "=== $export export"
  rdma_add "$id" "$export" -q 2
  must dd if="$E2E_WORK/data" of="$dev" bs=1M oflag=direct status=none
  is_zero "$dev" 8 8 && fail "random data reads back as zeros"
  log "discard_max_bytes=$(cat /sys/block/ublkb$id/queue/discard_max_bytes)" \
    "write_zeroes_max_bytes=$(cat /sys/block/ublkb$id/queue/write_zeroes_max_bytes)"
  (($(cat /sys/block/ublkb$id/queue/discard_max_bytes) > 0)) || fail "$dev does not advertise discard"
  (($(cat /sys/block/ublkb$id/queue/write_zeroes_max_bytes) > 0)) || fail "$dev does not advertise write zeroes"

  must blkdiscard -o $((8 * M)) -l $((8 * M)) "$dev"
  is_zero "$dev" 8 8 || fail "$export: 8-16 MiB is not zero after blkdiscard"
  # psync: fio's trim goes through BLKDISCARD there, whatever the kernel's io_uring can do.
  fio_run trim-$export --filename="$dev" --ioengine=psync --rw=trim --bs=1M --offset=16M --size=8M
  is_zero "$dev" 16 8 || fail "$export: 16-24 MiB is not zero after fio trim"
  must blkdiscard -z -o $((24 * M)) -l $((8 * M)) "$dev"
  is_zero "$dev" 24 8 || fail "$export: 24-32 MiB is not zero after blkdiscard -z (write zeroes)"
  # Aligned to the block size, not to 1 MiB.
  must blkdiscard -z -o $((40 * M + 4096)) -l $((64 * 1024)) "$dev"
  cmp -s -n 65536 <(dd if="$dev" iflag=direct,skip_bytes bs=64k skip=$((40 * M + 4096)) count=1 status=none) /dev/zero ||
    fail "$export: the 64 KiB write-zeroes at 40 MiB + 4 KiB is not zero"
  cmp -s -n 4096 <(dd if="$dev" iflag=direct,skip_bytes bs=4k skip=$((40 * M)) count=1 status=none) \
    <(tail -c +$((40 * M + 1)) "$E2E_WORK/data") || fail "$export: the 4 KiB before the write-zeroes changed"

  [[ $(region_sum "$dev" 0 8) == "$(data_sum 0 8)" ]] || fail "$export: 0-8 MiB changed"
  [[ $(region_sum "$dev" 32 8) == "$(data_sum 32 8)" ]] || fail "$export: 32-40 MiB changed"
  [[ $(region_sum "$dev" 48 16) == "$(data_sum 48 16)" ]] || fail "$export: 48-64 MiB changed"

  discards=$(serve_counter "$export" discards)
  zeroes=$(serve_counter "$export" write_zeroes)
  log "server counters for $export: discards=$discards write_zeroes=$zeroes"
  ((discards > 0)) || fail "$export: no DISCARD reached the server"
  ((zeroes > 0)) || fail "$export: no WRITE_ZEROES reached the server"
  must "$UBLK" del -n "$id"
  wait_gone "$dev"
}

discard_zeroes vol0 0
discard_zeroes f 1
log "the backing file holds the zeros"
cmp -s -n $((24 * M)) <(tail -c +$((8 * M + 1)) "$img") /dev/zero || fail "the backing file's 8-32 MiB are not zero"
cmp -s -n $((8 * M)) <(tail -c +$((48 * M + 1)) "$img") <(tail -c +$((48 * M + 1)) "$E2E_WORK/data") ||
  fail "the backing file's 48-56 MiB are not the data written"
serve_stop
