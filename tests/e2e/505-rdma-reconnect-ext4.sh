#!/usr/bin/env bash
# rdma target: an ext4 file system on a file export stays mounted and writable across a server
# restart (SIGKILL, started again 3 s later): a writer that creates and fsyncs files goes on
# without an error, the journal never aborts (no read-only remount), and after umount e2fsck -fn
# is clean and every file written, before, during and after the outage, has its checksum.
# e2e-timeout: 400
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd mkfs.ext4 e2fsck sha256sum
setup_rxe
img=$E2E_WORK/export.img
truncate -s 128M "$img"
serve_start --export f=file:"$img"
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"
dev=/dev/ublkb0

rdma_add 0 f -q 2 -d 64 --reconnect-delay 1
dmesg_lines=$(dmesg | wc -l)
must mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
must mount "$dev" "$mnt"
defer umount -l "$mnt"

# The writer: files of 64 KiB .. 512 KiB, each fsynced, until told to stop (or 150 files); it
# exits 1 on the first error and records each file's checksum once it is on the device.
writer() {
  local i=0
  while [[ ! -e $E2E_WORK/stop ]] && ((i < 150)); do
    head -c $((65536 << (i % 4))) /dev/urandom >"$E2E_WORK/cur" || exit 1
    cp "$E2E_WORK/cur" "$mnt/w$i" && sync "$mnt/w$i" || exit 1
    echo "$(sha256sum <"$E2E_WORK/cur" | cut -d' ' -f1)  w$i" >>"$E2E_WORK/sums"
    i=$((i + 1))
  done
}
writer &
writer_pid=$!
defer kill -9 "$writer_pid"
nap 3
kill -0 "$writer_pid" 2>/dev/null || fail "the writer failed before the outage"

log "+ kill -KILL $E2E_SERVE_PID (serve, the writer running)"
kill -KILL "$E2E_SERVE_PID"
wait "$E2E_SERVE_PID" 2>/dev/null
before=$(wc -l <"$E2E_WORK/sums")
nap 3
serve_start --export f=file:"$img"
wait_until 30 "the device to be live again" eval "ublk_json 0 | jq -e '.io_state == \"live\"'"
nap 3
touch "$E2E_WORK/stop"
wait "$writer_pid" || fail "the writer failed across the server restart (after $(wc -l <"$E2E_WORK/sums") files)"
after=$(wc -l <"$E2E_WORK/sums")
((after > before)) || fail "no file was written after the server came back ($before before, $after after)"
log "  the writer wrote $before files before the kill and $after in all"
grep -q " ro[ ,]" <(grep " $mnt " /proc/mounts) && fail "the file system went read-only"
# The kernel's view since the device was added: no IO error, no ext4 error, no journal abort.
errors=$(dmesg | tail -n +$((dmesg_lines + 1)) | grep -iE "I/O error, dev ublkb0|EXT4-fs error|Aborting journal")
[[ -z $errors ]] || fail "the kernel reported errors on $dev: $(head -n 3 <<<"$errors")"

(cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "a file written across the outage differs"
must umount "$mnt"
must e2fsck -fn "$dev"
must mount -o ro "$dev" "$mnt"
(cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "checksums differ after a remount"
log "  all $after files match, before and after a remount; e2fsck clean"
must umount "$mnt"
jq -e '[.queues[].stats.target.errors] | add == 0' <(ublk_json 0) >/dev/null || fail "the device counted IO errors"
must bounded 60 "$UBLK" del -n 0
wait_gone "$dev" 10
no_ublk_devices
