#!/usr/bin/env bash
# loop target: mkfs.ext4, mount, write files, unmount, e2fsck -fn clean; the files' checksums
# match after a re-mount, and again after the device is deleted and added anew on the same file.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd mkfs.ext4 e2fsck sha256sum

id=0
img=$E2E_WORK/backing.img
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"
truncate -s 128M "$img"
ublk_add $id -t loop -f "$img" -q 2
dev=/dev/ublkb$id

must mkfs.ext4 -q -F "$dev"
must mount "$dev" "$mnt"
defer umount -l "$mnt"
mkdir -p "$mnt/a/b" "$mnt/c"
for i in 1 2 3 4 5 6; do
  head -c $((i * 1024 * 1024 + i * 777)) /dev/urandom >"$mnt/a/file$i"
done
for i in $(seq 1 200); do echo "small file $i $RANDOM" >"$mnt/a/b/s$i"; done
head -c 8M /dev/urandom >"$mnt/c/big"
dd if="$mnt/c/big" of="$mnt/c/copy" bs=64k oflag=direct status=none || fail "O_DIRECT copy failed"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$E2E_WORK/sums"
log "$(wc -l <"$E2E_WORK/sums") files written"
must sync
must umount "$mnt"
must e2fsck -fn "$dev"

echo 3 >/proc/sys/vm/drop_caches
must mount "$dev" "$mnt"
(cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "checksums differ after re-mount"
must umount "$mnt"

log "delete the device, add it again on the same file"
must "$UBLK" del -n $id
wait_gone "$dev"
ublk_add $id -t loop -f "$img"
must e2fsck -fn "$dev"
must mount -o ro "$dev" "$mnt"
(cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "checksums differ on the re-added device"
must umount "$mnt"
