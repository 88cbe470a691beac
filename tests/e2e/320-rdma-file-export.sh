#!/usr/bin/env bash
# rdma target on a file export: mkfs.ext4, mount, files, unmount, e2fsck clean, checksums match
# after a re-mount; data reaches the file after FLUSH (fsync on the client); discard and
# write-zeroes read back zeros; the server's buffer-pool path copies nothing either.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rdma_lib.sh"
require_ublk
require_cmd fio jq mkfs.ext4 e2fsck blkdiscard
setup_rxe
img=$E2E_WORK/export.img
truncate -s 128M "$img"
start_server --export disk=file:"$img"

id=0
ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export disk -q 2 -d 32
dev=/dev/ublkb$id
[[ $(blockdev --getsize64 $dev) == $((128 << 20)) ]] || fail "$dev is not 128 MiB"

# A file system on it.
must mkfs.ext4 -q -F $dev
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"
must mount $dev "$mnt"
defer umount "$mnt"
for i in 1 2 3 4; do
  must dd if=/dev/urandom of="$mnt/file$i" bs=1M count=$((i * 3)) status=none
done
(cd "$mnt" && sha256sum file*) >"$E2E_WORK/sums"
must umount "$mnt"
must e2fsck -fn $dev
must mount $dev "$mnt"
(cd "$mnt" && sha256sum -c --quiet "$E2E_WORK/sums") || fail "checksums differ after re-mount"
must umount "$mnt"

# FLUSH reaches the file: what the client wrote and fsynced is in the backing file.
must dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must dd if="$E2E_WORK/pattern" of=$dev bs=1M seek=100 conv=fsync oflag=direct status=none
cmp <(dd if="$img" bs=1M skip=100 count=4 status=none) "$E2E_WORK/pattern" || fail "the file does not hold the flushed data"
# FUA writes (O_DSYNC on a block device sets FUA) land as well.
must dd if="$E2E_WORK/pattern" of=$dev bs=1M seek=90 count=1 oflag=direct,dsync status=none
cmp <(dd if="$img" bs=1M skip=90 count=1 status=none) <(head -c 1M "$E2E_WORK/pattern") || fail "FUA write not in the file"

# Discard and write-zeroes read back zeros.
must blkdiscard -o $((100 << 20)) -l $((2 << 20)) $dev
cmp <(dd if=$dev bs=1M skip=100 count=2 iflag=direct status=none) <(head -c 2M /dev/zero) || fail "discarded range does not read zeros"
must blkdiscard -z -o $((102 << 20)) -l $((2 << 20)) $dev
cmp <(dd if=$dev bs=1M skip=102 count=2 iflag=direct status=none) <(head -c 2M /dev/zero) || fail "zeroed range does not read zeros"

assert_zero_copy $id
must "$UBLK" del -n $id
wait_gone $dev
stop_server
[[ $(server_stat disk copied_bytes) == 0 ]] || fail "server copied bytes in userspace"
