#!/usr/bin/env bash
# rdma target: fio write-then-verify (crc32c, bs 4k..1M, QD 1, 16, 64) on 2 queues in each
# completion mode: busy, event, hybrid (with its default spin after the last work, and with
# --spin-us 0: sleep at once); the device reports the mode it runs in and its spin time. Hybrid
# sleeps rather than spins while more than a few requests are out (busy_sleeps > 0 after the
# QD 64 runs); busy mode never sleeps.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
serve_start --export vol0=ram:64M

for variant in busy event hybrid hybrid:0; do
  mode=${variant%%:*} spin=100 extra=()
  [[ $variant == *:* ]] && spin=${variant#*:} extra=(--spin-us "$spin")
  log "=== --poll $mode ${extra[*]}"
  rdma_add 0 vol0 -q 2 -d 64 --poll $mode "${extra[@]}"
  jq -e --arg m $mode '.target.poll == $m and .poll_mode == $m' <(ublk_json 0) >/dev/null ||
    fail "the device does not report poll mode $mode: $(ublk_json 0 | jq -c '{poll_mode, target}')"
  jq -e --argjson s "$spin" '.hybrid_spin_us == $s' <(ublk_json 0) >/dev/null ||
    fail "the device does not report a spin of $spin us: $(ublk_json 0 | jq -c '{hybrid_spin_us}')"
  fio_write_verify "verify-${variant/:/-}" /dev/ublkb0 12M
  ublk_json 0 | jq -e 'all(.queues[]; .stats.target.errors == 0 and .stats.target.copied_bytes == 0)' >/dev/null ||
    fail "--poll $mode: errors or copies counted: $(ublk_json 0 | jq -c '[.queues[].stats.target]')"
  log "  $(ublk_json 0 | jq -c '[.queues[].stats | {busy_sleeps, idle_sleeps} + (.target | {polls, idle_polls, cq_arms, cq_events})]')"
  case $mode in
    hybrid) want='([.queues[].stats.busy_sleeps] | add) > 0' ;;
    busy) want='all(.queues[]; .stats.idle_sleeps == 0 and .stats.busy_sleeps == 0)' ;;
    *) want='all(.queues[]; .stats.busy_sleeps == 0)' ;;
  esac
  ublk_json 0 | jq -e "$want" >/dev/null ||
    fail "--poll $mode: sleeps not as expected ($want): $(ublk_json 0 | jq -c '[.queues[].stats | {busy_sleeps, idle_sleeps}]')"
  must "$UBLK" del -n 0
  wait_gone /dev/ublkb0
done
serve_stop
