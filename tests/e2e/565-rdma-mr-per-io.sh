#!/usr/bin/env bash
# add --mr-per-io on through the CLI: the client's IO buffers are open to the server only
# through a memory window bound per request and invalidated before the request completes.
# fio verify (crc32c, 4k..1M, QD 1/16/64) on a file export (the server's RDMA for every READ and
# WRITE) and on a ram export with our own RDMA turned off (--push-max 0 --pull-max 0): every
# request windowed, as many invalidations as bindings, no error. ext4 + e2fsck clean with
# checksums on the file export. The server is SIGKILLed and restarted under fio verify: held
# and answered requests complete or are reissued through fresh windows, 0 errors, 0
# mismatches. Windows on the wire: the stale-key and out-of-buffer accesses of a hostile server
# are in tests/rdma/rdma_windows_test.cc (run by 300).
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq mkfs.ext4 e2fsck sha256sum
setup_rxe
img=$E2E_WORK/export.img
truncate -s 96M "$img"
serve_args=(--export f=file:"$img" --export vol0=ram:64M)
serve_start "${serve_args[@]}"

# windows_balanced ID [LOST]: requests were windowed, each window was invalidated (with LOST, a
# connection was lost: the windows bound on it died with its QP, uninvalidated, and their
# requests were bound again on the new one), and nothing failed.
windows_balanced() {
  local j
  j=$(ublk_json "$1" | jq -c '[.queues[].stats.target] |
       {binds: (map(.window_binds) | add), invalidations: (map(.window_invalidations) | add),
        commands: (map(.commands) | add), errors: (map(.errors) | add), mr_per_io: (map(.mr_per_io) | all)}')
  log "  device $1 windows: $j"
  jq -e --arg lost "${2:-}" '.mr_per_io and .binds > 0 and .errors == 0 and
       (if $lost == "" then .binds == .invalidations else .binds > .invalidations and .invalidations > 0 end)' \
    <<<"$j" >/dev/null ||
    fail "device $1: windows not balanced or errors: $j"
}

log "file export: every READ and WRITE through a window"
rdma_add 0 f -q 2 -d 64 --mr-per-io on
fio_write_verify mrio-file /dev/ublkb0 48M
windows_balanced 0

log "ext4 on it: files, e2fsck, checksums after a remount"
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"
must mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/ublkb0
must mount /dev/ublkb0 "$mnt"
defer umount -l "$mnt"
for ((i = 0; i < 16; i++)); do head -c $((4096 << (i % 10))) /dev/urandom >"$mnt/file$i" || fail "writing file$i"; done
must dd if=/dev/urandom of="$mnt/big" bs=1M count=16 status=none conv=fsync
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$E2E_WORK/sums" || fail "checksumming failed"
must umount "$mnt"
must e2fsck -fn /dev/ublkb0
must mount -o ro /dev/ublkb0 "$mnt"
(cd "$mnt" && sha256sum --quiet -c "$E2E_WORK/sums") || fail "checksums differ after a remount"
must umount "$mnt"
windows_balanced 0
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0

log "ram export without our own RDMA into it: the server's RDMA through windows, READs by ReadDone"
rdma_add 1 vol0 -q 2 -d 32 --mr-per-io on --push-max 0 --pull-max 0
fio_write_verify mrio-ram /dev/ublkb1 24M
windows_balanced 1
jq -e '[.queues[].stats.target.read_done_imm] | add > 0' <(ublk_json 1) >/dev/null ||
  fail "no READ completed by the server's WRITE WITH IMMEDIATE into a window"
must bounded 60 "$UBLK" del -n 1
wait_gone /dev/ublkb1

log "the server is SIGKILLed and restarted under fio verify"
rdma_add 2 f -q 2 -d 64 --mr-per-io on --reconnect-delay 1
defer cp "$(ublk_json 2 | jq -r .log)" "$E2E_LOG_DIR/daemon-2.log"
serve_restart_under_verify 2 mrio-reconnect "${serve_args[@]}"
windows_balanced 2 lost
must bounded 60 "$UBLK" del -n 2
wait_gone /dev/ublkb2
log "PASS"
