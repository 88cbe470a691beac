#!/usr/bin/env bash
# rdma target: mkfs.ext4, mount, write files, umount, e2fsck -fn clean; the files' checksums
# match after a remount and again on a new connection to the same export; on a ram and a file
# export; the file export's backing file is itself a clean ext4 holding the data once the server
# stopped.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd mkfs.ext4 e2fsck debugfs sha256sum
setup_rxe
img=$E2E_WORK/export.img
truncate -s 128M "$img"
serve_start --export vol0=ram:128M --export f=file:"$img"
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"

ext4_on() {
  local export=$1 dev=/dev/ublkb0
  log "=== $export export"
  rdma_add 0 "$export" -q 2 -d 64
  must mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
  must mount "$dev" "$mnt"
  defer umount -l "$mnt"

  log "write files: 24 of 4 KiB .. 4 MiB, a directory tree of small ones"
  for ((i = 0; i < 24; i++)); do
    head -c $((4096 << (i % 11))) /dev/urandom >"$mnt/file$i" || fail "writing file$i failed"
  done
  mkdir -p "$mnt/tree/a/b/c"
  for ((i = 0; i < 200; i++)); do echo "small file $i $RANDOM" >"$mnt/tree/a/b/c/s$i"; done
  must dd if=/dev/urandom of="$mnt/big" bs=1M count=32 status=none conv=fsync
  (cd "$mnt" && find . -type f ! -name sums -print0 | sort -z | xargs -0 sha256sum) >"$E2E_WORK/sums" ||
    fail "checksumming failed"
  log "$(wc -l <"$E2E_WORK/sums") files, $(du -sh "$mnt" | cut -f1)"

  must umount "$mnt"
  must e2fsck -fn "$dev"
  must mount "$dev" "$mnt"
  check_files "after remount"
  must umount "$mnt"

  log "a new connection to the same export"
  must "$UBLK" del -n 0
  wait_gone "$dev"
  rdma_add 0 "$export" -q 2
  must e2fsck -fn "$dev"
  must mount -o ro "$dev" "$mnt"
  check_files "on a new connection"
  must umount "$mnt"
  must "$UBLK" del -n 0
  wait_gone "$dev"
}

check_files() {
  (cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "checksums differ ($1)"
  log "  all checksums match ($1)"
}

ext4_on vol0
ext4_on f
serve_stop
log "the file export's backing file"
must e2fsck -fn "$img"
want=$(awk '$2 == "./big" {print $1}' "$E2E_WORK/sums")
got=$(debugfs -R "cat /big" "$img" 2>/dev/null | sha256sum | cut -d' ' -f1)
[[ -n $want && $got == "$want" ]] || fail "/big read from the backing file with debugfs: $got, want $want"
log "  /big in the backing file matches"
