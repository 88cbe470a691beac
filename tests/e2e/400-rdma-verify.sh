#!/usr/bin/env bash
# rdma target: fio write-then-verify (crc32c, randwrite, bs 4k..1M, QD 1, 8, 32 and 64) with 0
# errors, 256 MiB per export on 2 queues, on a ram and a file export of one server. Afterwards
# the data is still there: read back through a new connection (ram) and straight from the
# server's backing file (file). WRITEs of up to 16 KiB to the ram export go by the client's RDMA
# WRITE into the export (PUSH_WRITES, the default), larger ones the server fetches; to the file
# export the small ones go into the tag's slot of the server's buffer pool (PUSH_SLOTS). READs
# from the ram export are the client's own RDMA READs of the export (PULL_READS, the default),
# from the file export the server's RDMA WRITEs; the pushed WRITEs to the ram export send no
# command at all: an RDMA READ fence behind them completes them (add --write-ack fence, the
# default). Another ram export is verified with the server answering pushed WRITEs and pulls
# only up to 16 KiB (add --write-ack server --pull-max 16K: larger READs' data the server sends),
# and one more on a second server that refuses pushes and pulls (serve --no-push-writes
# --no-pull-reads: the server RDMA READs every WRITE into the export and answers with a fenced
# SEND, and sends every READ's data). Each queue spreads its tags over 4 connections (the
# default), 3 (device 2: tags spread unevenly) or 1 (device 3); the server sees every one, each
# with the depth it carries (queue depth / connections, rounded up), not the queue's.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe

M=$((1 << 20))
img=$E2E_WORK/export.img
truncate -s 256M "$img"
serve_start --export vol0=ram:256M --export f=file:"$img" --export vol1=ram:64M

# verify_quarters MIB TAG DEV [ARGS...]: four jobs on disjoint MIB-MiB quarters of the first
# 4 x MIB MiB, QD 1, 8, 32 and 64.
verify_quarters() {
  local q=$1 tag=$2 dev=$3
  shift 3
  fio_run "$tag" --filename="$dev" --rw=randwrite --bsrange=4k-1m --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --size=${q}M "$@" \
    --name=qd1 --offset=0 --iodepth=1 \
    --name=qd8 --offset=${q}M --iodepth=8 \
    --name=qd32 --offset=$((2 * q))M --iodepth=32 \
    --name=qd64 --offset=$((3 * q))M --iodepth=64
}
verify_256() { verify_quarters 64 "$@"; }
verify_64() { verify_quarters 16 "$@"; }

for export in vol0 f; do
  id=$([[ $export == vol0 ]] && echo 0 || echo 1)
  rdma_add $id $export -q 2 -d 64
  jq -e '.state == "LIVE" and .target_args.type == "rdma" and .nr_hw_queues == 2' <(ublk_json $id) >/dev/null ||
    fail "device $id is not a LIVE rdma device with 2 queues: $(ublk_json $id)"
  [[ $(blockdev --getsize64 /dev/ublkb$id) == $((256 * M)) ]] || fail "/dev/ublkb$id is not 256 MiB"
  verify_256 verify-$export /dev/ublkb$id
  errs=$(ublk_json $id | jq '[.queues[].stats.target.errors // 0] | add')
  [[ $errs == 0 ]] || fail "device $id counted $errs IO errors"
done

jq -e 'all(.queues[].stats.target; .push_writes and .push_slots == false and .pushed_writes > 0
    and .fence_writes and .fenced_writes == .pushed_writes and .fences > 0
    and .pull_reads and .pulled_reads > 0 and .read_done_imm == 0)' <(ublk_json 0) >/dev/null ||
  fail "device 0 (ram export, defaults) did not push and fence its WRITEs and pull its READs: $(
    ublk_json 0 | jq -c '[.queues[].stats.target | {push_writes, pushed_writes, fenced_writes, fences, pull_reads, pulled_reads}]')"
jq -e 'all(.queues[].stats.target; .push_writes and .push_slots and .pushed_writes > 0 and .errors == 0
    and .pull_reads == false and .pulled_reads == 0 and .fence_writes == false)' <(ublk_json 1) >/dev/null ||
  fail "device 1 (file export, defaults) did not push its WRITEs into slots (or pulled READs): $(
    ublk_json 1 | jq -c '[.queues[].stats.target | {push_writes, push_slots, pushed_writes, pull_reads, errors}]')"
for export in vol0 f; do
  [[ $(serve_connections $export) == 8 ]] ||
    fail "the server does not hold 2 queues x 4 connections for $export: $(serve_stats wait | jq -c '.connections')"
  [[ $(serve_counter $export depth) == 128 ]] ||
    fail "the server's connections to $export do not carry depth 16 each (2 x 64 in all): $(
      serve_stats wait | jq -c '[.connections[] | {export, depth}]')"
done
for id in 0 1; do
  jq -e '.target_args.conns_per_queue == 4 and
      all(.queues[].stats.target; .connections == 4 and .connection_depth == 16)' <(ublk_json $id) >/dev/null ||
    fail "device $id does not use 4 connections of depth 16 per queue: $(
      ublk_json $id | jq -c '[.queues[].stats.target | {connections, connection_depth}]')"
done

log "ram export, pushed WRITEs answered by the server, READs over 16K sent by it, 3 connections per queue"
log "(add --write-ack server --pull-max 16K --conns-per-queue 3)"
rdma_add 2 vol1 -q 2 -d 64 --write-ack server --pull-max 16K --conns-per-queue 3
[[ $(serve_connections vol1) == 6 && $(serve_counter vol1 depth) == $((6 * 22)) ]] ||
  fail "the server does not hold 2 queues x 3 connections of depth 22 for vol1: $(
    serve_stats wait | jq -c '[.connections[] | {export, depth}]')"
verify_64 verify-acked /dev/ublkb2
jq -e '.target_args.fence_writes == false and .target_args.pull_max_bytes == 16384 and all(.queues[].stats.target;
    .connections == 3 and .push_writes and .pushed_writes > 0 and .fence_writes == false and .fenced_writes == 0 and .errors == 0
    and .pull_reads and .pulled_reads > 0 and .read_done_imm > 0)' <(ublk_json 2) >/dev/null ||
  fail "device 2 fenced WRITEs, did not split its READs between pulls and the server, or counted errors: $(
    ublk_json 2 | jq -c '[.queues[].stats.target | {pushed_writes, fenced_writes, pulled_reads, read_done_imm, errors}]')"
[[ $(serve_counter vol1 pushed_writes) == $(ublk_json 2 | jq '[.queues[].stats.target.pushed_writes] | add') ]] ||
  fail "the server did not answer every pushed WRITE on vol1"
must "$UBLK" del -n 2
wait_gone /dev/ublkb2

log "ram export on a server that refuses PUSH_WRITES and PULL_READS (serve --no-push-writes --no-pull-reads)"
first_server=$E2E_SERVE_PID
E2E_SERVE_LISTEN=$E2E_RDMA_ADDR:18521 serve_start --export vol2=ram:64M --no-push-writes --no-pull-reads
rdma_add 3 vol2 --trsvcid 18521 -q 2 -d 64 --conns-per-queue 1
verify_64 verify-refused /dev/ublkb3
jq -e 'all(.queues[].stats.target; .connections == 1 and .connection_depth == 64 and .push_writes == false and .pushed_writes == 0 and .pull_reads == false
    and .pulled_reads == 0 and .fence_writes == false and .read_done_imm > 0 and .errors == 0)' <(ublk_json 3) >/dev/null ||
  fail "device 3 pushed WRITEs or pulled READs with a server that refuses them, or counted errors"
[[ $(serve_counter vol2 pushed_writes) == 0 ]] || fail "the second server counted pushed WRITEs"
must "$UBLK" del -n 3
wait_gone /dev/ublkb3
serve_stop
E2E_SERVE_PID=$first_server

log "ram export: the data survives a new connection"
must "$UBLK" del -n 0
wait_gone /dev/ublkb0
rdma_add 0 vol0 -q 2 -d 64
verify_256 reverify-vol0 /dev/ublkb0 --verify_only

log "file export: the server's backing file holds what was verified"
must "$UBLK" del -n 1
wait_gone /dev/ublkb1
verify_256 verify-file "$img" --verify_only --direct=0

serve_stop
