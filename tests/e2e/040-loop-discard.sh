#!/usr/bin/env bash
# loop target: discard (fio trim, blkdiscard) and write-zeroes (blkdiscard -z) read back as zeros;
# the data around them is untouched.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio blkdiscard

id=0
img=$E2E_WORK/backing.img
truncate -s 64M "$img"
ublk_add $id -t loop -f "$img" -q 2
dev=/dev/ublkb$id
M=$((1 << 20))


log "fill the device with random data"
head -c 64M /dev/urandom >"$E2E_WORK/data"
must dd if="$E2E_WORK/data" of="$dev" bs=1M oflag=direct status=none
is_zero "$dev" 8 8 && fail "random data reads back as zeros"
before=$(region_sum "$dev" 0 8)

discard=$(cat /sys/block/ublkb$id/queue/discard_max_bytes)
log "discard_max_bytes=$discard write_zeroes_max_bytes=$(cat /sys/block/ublkb$id/queue/write_zeroes_max_bytes)"
((discard > 0)) || fail "the loop device does not advertise discard"

# psync: fio's trim goes through BLKDISCARD there, whatever the kernel's io_uring can do.
fio_run trim --filename="$dev" --ioengine=psync --rw=trim --bs=1M --offset=8M --size=8M
is_zero "$dev" 8 8 || fail "8-16 MiB is not zero after fio trim"

must blkdiscard -o $((16 * M)) -l $((8 * M)) "$dev"
is_zero "$dev" 16 8 || fail "16-24 MiB is not zero after blkdiscard"

must blkdiscard -z -o $((24 * M)) -l $((8 * M)) "$dev"
is_zero "$dev" 24 8 || fail "24-32 MiB is not zero after blkdiscard -z (write zeroes)"

# Unaligned to 1 MiB but aligned to the block size.
must blkdiscard -z -o $((40 * M + 4096)) -l $((64 * 1024)) "$dev"
cmp -s -n 65536 <(dd if="$dev" iflag=direct,skip_bytes bs=64k skip=$((40 * M + 4096)) count=1 status=none) /dev/zero ||
  fail "the 64 KiB write-zeroes at 40 MiB + 4 KiB is not zero"

[[ $(region_sum "$dev" 0 8) == "$before" ]] || fail "0-8 MiB changed"
[[ $(region_sum "$dev" 32 8) == "$(head -c 40M "$E2E_WORK/data" | tail -c 8M | sha256sum | cut -d' ' -f1)" ]] ||
  fail "32-40 MiB changed"
[[ $(region_sum "$dev" 48 16) == "$(tail -c 16M "$E2E_WORK/data" | sha256sum | cut -d' ' -f1)" ]] ||
  fail "48-64 MiB changed"

must "$UBLK" del -n $id
wait_gone "$dev"
log "the backing file holds the zeros too"
cmp -s -n $((24 * M)) <(tail -c +$((8 * M + 1)) "$img") /dev/zero || fail "the backing file's 8-32 MiB are not zero"
