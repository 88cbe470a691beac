#!/usr/bin/env bash
# rdma target: fio write-then-verify (crc32c, bs 4k..1M, QD 1, 16, 64) on 2 queues in each
# completion mode: busy, event, hybrid (with its default spin after the last work, and with
# --spin-us 0: sleep at once); the device reports the mode it runs in and its spin time. Hybrid
# sleeps rather than spins while more than a few requests are out (busy_sleeps > 0 after the
# QD 64 runs); busy mode never sleeps. The server tells a serial client (QD1: one command at a
# time, each after the last answer) from one that batches (QD32), and keeps polling for the former
# (serial_commands counts what it took that way); random writes, as the ram export's READs are
# the client's own RDMA READs that the server never sees (PULL_READS), answered by the server
# (add --write-ack server; a fenced WRITE sends no command either). Hybrid polls for the answer
# to a request that is out for at most --inflight-spin-us: with 0, a QD1 stream sleeps for nearly
# every answer; with the default (1 ms), for few of them.
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

log "=== hybrid's bound on polling for an answer: QD1 with --inflight-spin-us 0, then the default"
for inflight in 0 1000; do
  extra=()
  ((inflight == 1000)) || extra=(--inflight-spin-us "$inflight")
  rdma_add 0 vol0 -q 1 -d 64 --write-ack server "${extra[@]}"
  jq -e --argjson i "$inflight" '.inflight_spin_us == $i' <(ublk_json 0) >/dev/null ||
    fail "the device does not report an in-flight spin of $inflight us: $(ublk_json 0 | jq -c '{inflight_spin_us}')"
  fio_run "inflight-$inflight" --filename=/dev/ublkb0 --rw=randwrite --bs=4k --iodepth=1 --size=16M --io_size=2M
  ios=$(ublk_json 0 | jq '[.queues[].stats.ios] | add') sleeps=$(ublk_json 0 | jq '[.queues[].stats.busy_sleeps] | add')
  log "  --inflight-spin-us $inflight: $sleeps sleeps with a request out, $ios requests"
  if ((inflight == 0)); then
    ((ios >= 512 && sleeps * 10 >= ios * 9)) ||
      fail "--inflight-spin-us 0: $sleeps sleeps with a request out for $ios requests (want one for nearly each)"
  else
    ((ios >= 512 && sleeps * 2 < ios)) ||
      fail "--inflight-spin-us $inflight: $sleeps sleeps with a request out for $ios requests (want the answer polled for mostly)"
  fi
  must "$UBLK" del -n 0
  wait_gone /dev/ublkb0
done

log "=== the server's serial spin: QD1, then QD32"
rdma_add 0 vol0 -q 1 -d 64 --write-ack server
fio_run serial-qd1 --filename=/dev/ublkb0 --rw=randwrite --bs=4k --iodepth=1 --size=16M --io_size=4M
cmds1=$(serve_counter vol0 commands) serial1=$(serve_counter vol0 serial_commands)
log "  after QD1: $serial1 of $cmds1 commands came serially"
((cmds1 >= 1000 && serial1 * 2 > cmds1)) ||
  fail "QD1: the server took $serial1 of $cmds1 commands as a serial stream (want more than half)"
fio_run serial-qd32 --filename=/dev/ublkb0 --rw=randwrite --bs=4k --iodepth=32 --size=16M --io_size=16M
cmds2=$(serve_counter vol0 commands) serial2=$(serve_counter vol0 serial_commands)
log "  after QD32: $((serial2 - serial1)) of $((cmds2 - cmds1)) commands came serially"
((cmds2 - cmds1 >= 4000 && (serial2 - serial1) * 2 < cmds2 - cmds1)) ||
  fail "QD32: the server took $((serial2 - serial1)) of $((cmds2 - cmds1)) commands as a serial stream (want under half)"
must "$UBLK" del -n 0
wait_gone /dev/ublkb0
serve_stop
