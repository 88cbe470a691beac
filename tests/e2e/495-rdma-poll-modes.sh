#!/usr/bin/env bash
# rdma target: fio write-then-verify (crc32c, bs 4k..1M, QD 1, 16, 64) on 2 queues in each
# completion mode: busy, event, hybrid; the device reports the mode it runs in.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
serve_start --export vol0=ram:64M

for mode in busy event hybrid; do
  log "=== --poll $mode"
  rdma_add 0 vol0 -q 2 -d 64 --poll $mode
  jq -e --arg m $mode '.target.poll == $m' <(ublk_json 0) >/dev/null ||
    fail "the device does not report poll mode $mode: $(ublk_json 0 | jq -c .target)"
  fio_write_verify verify-$mode /dev/ublkb0 12M
  ublk_json 0 | jq -e 'all(.queues[]; .stats.target.errors == 0 and .stats.target.copied_bytes == 0)' >/dev/null ||
    fail "--poll $mode: errors or copies counted: $(ublk_json 0 | jq -c '[.queues[].stats.target]')"
  log "  $(ublk_json 0 | jq -c '[.queues[].stats.target | {polls, idle_polls, cq_arms, cq_events}]')"
  must "$UBLK" del -n 0
  wait_gone /dev/ublkb0
done
serve_stop
