#!/usr/bin/env bash
# rdma target, file export: the device announces a volatile cache and FUA; O_DIRECT|O_SYNC
# writes (FUA) and writes followed by fdatasync (FLUSH) are in the server's backing file once
# acknowledged: the server is killed (SIGKILL, no chance to write anything back) and the file
# holds all of it. The server counts the FLUSH commands.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe

M=$((1 << 20))
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img"
dev=/dev/ublkb0
rdma_add 0 f -q 2
sysq=/sys/block/ublkb0/queue
log "write_cache=$(cat $sysq/write_cache) fua=$(cat $sysq/fua)"
[[ $(cat $sysq/write_cache) == "write back" ]] || fail "$dev does not announce a volatile write cache (FLUSH)"
[[ $(cat $sysq/fua) == 1 ]] || fail "$dev does not announce FUA"
jq -e '.target.flush and .target.fua' <(ublk_json 0) >/dev/null || fail "the target does not report flush and fua"

flushes0=$(serve_counter f flushes)
log "FUA: 16 MiB of O_DIRECT|O_SYNC writes of 64 KiB"
head -c 16M /dev/urandom >"$E2E_WORK/data"
must dd if="$E2E_WORK/data" of="$dev" bs=64k oflag=direct,sync status=none

log "FLUSH: 1024 writes of 4 KiB, each followed by fdatasync (QD 1), and 16 MiB with fsync every 16 writes (QD 16)"
fio_run fdatasync --filename="$dev" --ioengine=psync --rw=randwrite --bs=4k --offset=16M --size=4M \
  --fdatasync=1 --verify=crc32c --do_verify=0
fio_run fsync --filename="$dev" --ioengine=io_uring --iodepth=16 --rw=write --bs=64k --offset=32M \
  --size=16M --fsync=16 --verify=crc32c --do_verify=0
flushes=$(($(serve_counter f flushes) - flushes0))
log "the server counted $flushes FLUSH commands"
((flushes >= 1024)) || fail "expected at least 1024 FLUSH commands at the server (one per fdatasync), got $flushes"

log "kill the server (SIGKILL): what was acknowledged must be in the file"
must kill -KILL "$E2E_SERVE_PID"
wait "$E2E_SERVE_PID" 2>/dev/null
cmp -n $((16 * M)) "$img" "$E2E_WORK/data" || fail "the FUA writes are not in the backing file"
fio_run fdatasync-file --filename="$img" --direct=0 --ioengine=psync --rw=randwrite --bs=4k --offset=16M \
  --size=4M --verify=crc32c --verify_only
fio_run fsync-file --filename="$img" --direct=0 --ioengine=psync --rw=write --bs=64k --offset=32M \
  --size=16M --verify=crc32c --verify_only
log "the backing file holds every acknowledged write"
bounded 60 "$UBLK" del -n 0 || fail "del after the server died failed or hung"
wait_gone "$dev"
