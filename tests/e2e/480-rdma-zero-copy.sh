#!/usr/bin/env bash
# rdma target, zero copy shown: after fio (writes and reads pinned to both CPUs, so both queues
# work), every queue of the client counts copied_bytes == 0 and rdma_bytes > 0, rdma_bytes equals
# what the ublk queue moved (bytes_read + bytes_written) and, summed, covers what fio moved; the
# server's stats (per connection, and per export after it stopped) say copied_bytes == 0 and
# rdma_bytes equal to the client's except what the client moved without it (pulled READs, fenced
# WRITEs). READs from the ram
# export are the client's own RDMA READs of the export (protocol v6's PULL_READS): both queues
# negotiated and used it, for every READ, and the server moved none of their bytes. Successful
# READs from the file export complete by RDMA WRITE WITH IMMEDIATE (protocol v2's ReadDone):
# both queues negotiated it and used it, as many times as the server sent one. Commands and Responses travel batched (protocol v3's BATCH): both sides negotiated it,
# fewer SENDs than messages went each way, and every command got exactly one answer. WRITEs to
# the ram export of up to 16 KiB travel as the client's RDMA WRITE into the export (protocol v4's
# PUSH_WRITES), larger ones as the server's RDMA READ: both queues negotiated it and used both
# ways; to the ram export the pushed WRITEs send no command (an RDMA READ fence completes
# them), to the file export the server answers as many as were pushed. The file export offers the same into
# its buffer pool's per-tag slots (protocol v5's PUSH_SLOTS), the ram export never does. On a ram
# and a file export.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe

M=$((1 << 20))
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export vol0=ram:64M --export f=file:"$img"

zero_copy() {
  local export=$1 id=$2 dev=/dev/ublkb$2 before after moved srv
  log "=== $export export"
  rdma_add "$id" "$export" -q 2 -d 64
  sleep 1  # let udev's probing of the new disk finish
  before=$(ublk_json "$id" | jq '[.queues[].stats.target.rdma_bytes] | add')
  # 4 x 8 MiB written, then 4 x 8 MiB read: 64 MiB.
  fio_run zc-$export --filename="$dev" --bsrange=4k-512k --iodepth=16 --size=8M \
    --name=w0 --rw=randwrite --cpus_allowed=0 --offset=0 \
    --name=w1 --rw=randwrite --cpus_allowed=1 --offset=8M \
    --name=w2 --rw=write --cpus_allowed=0 --offset=16M \
    --name=w3 --rw=write --cpus_allowed=1 --offset=24M \
    --name=r0 --stonewall --rw=randread --cpus_allowed=0 --offset=0 \
    --name=r1 --rw=randread --cpus_allowed=1 --offset=8M \
    --name=r2 --rw=read --cpus_allowed=0 --offset=16M \
    --name=r3 --rw=read --cpus_allowed=1 --offset=24M
  ublk_json "$id" | jq -c '.queues[] | {queue, bytes_read: .stats.bytes_read, bytes_written: .stats.bytes_written,
      rdma_bytes: .stats.target.rdma_bytes, copied_bytes: .stats.target.copied_bytes}' |
    while read -r q; do log "  client $q"; done
  ublk_json "$id" | jq -e '.queues | length == 2 and all(.[]; .stats.target.copied_bytes == 0)' >/dev/null ||
    fail "$export: a queue copied bytes in userspace"
  ublk_json "$id" | jq -e 'all(.queues[]; .stats.target.rdma_bytes > 0)' >/dev/null ||
    fail "$export: a queue moved nothing by RDMA"
  ublk_json "$id" | jq -e 'all(.queues[]; .stats.target.rdma_bytes == .stats.bytes_read + .stats.bytes_written)' \
    >/dev/null || fail "$export: a queue's rdma_bytes differ from what its ublk queue moved"
  pull=$([[ $export == vol0 ]] && echo true || echo false)
  ublk_json "$id" | jq -e --argjson p "$pull" 'all(.queues[].stats.target; .read_imm == true
      and .pull_reads == $p and (if $p then .pulled_reads > 0 and .read_done_imm == 0 and .pulled_bytes > 0
                                  else .pulled_reads == 0 and .pulled_bytes == 0 and .read_done_imm > 0 end))' \
    >/dev/null || fail "$export: a queue did not negotiate or use ReadDone immediates / pulls as expected (PULL_READS $pull): $(
      ublk_json "$id" | jq -c '[.queues[].stats.target | {read_imm, read_done_imm, pull_reads, pulled_reads, pulled_bytes}]')"
  ublk_json "$id" | jq -e 'all(.queues[].stats.target; .batch == true and .command_sends < .commands
      and .answers + .read_done_imm == .commands)' >/dev/null ||
    fail "$export: a queue did not batch its commands, or a command did not get exactly one answer: $(
      ublk_json "$id" | jq -c '[.queues[].stats.target | {batch, commands, command_sends, answers, read_done_imm}]')"
  push=true
  slots=$([[ $export == f ]] && echo true || echo false)
  ublk_json "$id" | jq -e --argjson p "$push" --argjson s "$slots" 'all(.queues[].stats.target; .push_writes == $p
      and .push_slots == $s and (.pushed_writes > 0) == $p)' >/dev/null ||
    fail "$export: PUSH_WRITES should be $push (PUSH_SLOTS $slots) on both queues: $(
      ublk_json "$id" | jq -c '[.queues[].stats.target | {push_writes, push_slots, pushed_writes}]')"
  pushed=$(ublk_json "$id" | jq '[.queues[].stats.target.pushed_writes] | add')
  imm=$(ublk_json "$id" | jq '[.queues[].stats.target.read_done_imm] | add')
  after=$(ublk_json "$id" | jq '[.queues[].stats.target.rdma_bytes] | add')
  pulled=$(ublk_json "$id" | jq '[.queues[].stats.target | .pulled_bytes + .fenced_bytes] | add')
  fenced=$(ublk_json "$id" | jq '[.queues[].stats.target.fenced_writes] | add')
  ublk_json "$id" | jq -e --argjson p "$pull" 'all(.queues[].stats.target; .fence_writes == $p
      and (if $p then .fenced_writes == .pushed_writes and .fences > 0 and .fences <= .fenced_writes
           else .fenced_writes == 0 and .fences == 0 end))' >/dev/null ||
    fail "$export: a queue did not fence its pushed WRITEs as expected (fence $pull): $(
      ublk_json "$id" | jq -c '[.queues[].stats.target | {fence_writes, pushed_writes, fenced_writes, fences}]')"
  moved=$((after - before))
  log "  fio moved $((64 * M)) bytes, the queues' rdma_bytes grew by $moved"
  ((moved >= 64 * M && moved <= 68 * M)) || fail "$export: rdma_bytes grew by $moved, fio moved $((64 * M))"

  srv=$(serve_stats wait | jq -c --arg e "$export" '[.connections[] | select(.export == $e)]
      | {connections: length, rdma_bytes: (map(.rdma_bytes) | add), copied_bytes: (map(.copied_bytes) | add),
         read_imm: all(.read_imm), read_done_imm: (map(.read_done_imm) | add), batch: all(.batch),
         responses: (map(.commands - .read_done_imm) | add), answer_sends: (map(.answer_sends) | add),
         push_writes: all(.push_writes), push_slots: all(.push_slots), writes: (map(.writes) | add),
         pushed_writes: (map(.pushed_writes) | add), pull_reads: all(.pull_reads)}')
  log "  server: $srv"
  jq -e --argjson a "$((after - pulled))" --argjson i "$imm" --argjson p "$pull" '.connections == 8
      and .copied_bytes == 0 and .pull_reads == $p
      and .rdma_bytes == $a and .read_imm and .read_done_imm == $i and .batch and .answer_sends < .responses' \
      <<<"$srv" >/dev/null ||
    fail "$export: the server's counters do not match the client's (rdma_bytes $after less $pulled pulled or fenced, copied 0, 2 queues x 4 connections, read_done_imm $imm, batched answers)"
  jq -e --argjson p "$push" --argjson s "$slots" --argjson n "$((pushed - fenced))" '.push_writes == $p
      and .push_slots == $s and .pushed_writes == $n
      and (if $p then .pushed_writes < .writes else .pushed_writes == 0 end)' <<<"$srv" >/dev/null ||
    fail "$export: the server's PUSH_WRITES counters do not match the client's ($pushed pushed WRITEs, $fenced of them fenced, push $push)"
  must "$UBLK" del -n "$id"
  wait_gone "$dev"
  echo "$((after - pulled))" >"$E2E_WORK/rdma_bytes.$export"
}

zero_copy vol0 0
zero_copy f 1
serve_stop
log "the server's final stats per export: $(jq -c .exports "$E2E_SERVE_STATS")"
for e in vol0 f; do
  jq -e --arg e $e --argjson a "$(cat "$E2E_WORK/rdma_bytes.$e")" \
    '.exports[$e] | .copied_bytes == 0 and .rdma_bytes == $a' "$E2E_SERVE_STATS" >/dev/null ||
    fail "the server's final stats for $e do not show copied_bytes 0 and rdma_bytes $(cat "$E2E_WORK/rdma_bytes.$e")"
done
