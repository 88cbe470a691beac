#!/usr/bin/env bash
# rdma target: a server that stops without a disconnect (SIGSTOP: its kernel still acknowledges
# our RDMA, so only an answer from the process proves it alive) is detected by keepalive
# (protocol v8 KEEP_ALIVE, --keepalive-tmo 5) within 5 s, on a device under fio verify and on
# an idle one whose READs and WRITEs never reach the server process (ram export: pulled READs,
# fenced WRITEs). Both go RECONNECTING; after SIGCONT 10 s later they reconnect and reissue: fio
# sees 0 errors and 0 mismatches and a full verify pass finds every block. With --keepalive-tmo
# 0 an idle device does not notice the stop. The server's side: a client that stays silent is
# probed, and a live one answers (the probe counter moves, no connection is dropped).
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img" --export vol0=ram:16M

rdma_add 0 f -q 2 -d 64 --reconnect-delay 1
rdma_add 1 vol0 -q 1 -d 16 --conns-per-queue 2 --reconnect-delay 1
rdma_add 2 vol0 -q 1 -d 16 --conns-per-queue 1 --keepalive-tmo 0
for id in 0 1 2; do defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"; done
must bounded 60 dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must bounded 60 dd if="$E2E_WORK/pattern" of=/dev/ublkb1 bs=1M count=4 oflag=direct status=none

# The server probes a client that sends nothing for 5 s: device 2 (no keepalive) is idle now.
probes0=$(serve_counter vol0 peer_probes)
nap 7
probes=$(serve_counter vol0 peer_probes)
log "  server probes of silent vol0 clients: $probes0 -> $probes"
((probes > probes0)) || fail "the server did not probe the silent client of device 2"
((probes - probes0 <= 4)) || fail "the server probed $((probes - probes0)) times in 7 s: clients with keepalive are not silent"
[[ $(serve_connections vol0) == 3 ]] || fail "the server dropped a live client's connection after probing it"

verify_fio_start 0 keepalive 3m

log "+ kill -STOP $E2E_SERVE_PID (serve, fio running on device 0, devices 1 and 2 idle)"
t0=$EPOCHREALTIME
kill -STOP "$E2E_SERVE_PID"
defer kill -CONT "$E2E_SERVE_PID"
wait_until 20 "both devices to leave live" \
  eval '[[ $(ublk_json 0 | jq -r .io_state) != live && $(ublk_json 1 | jq -r .io_state) != live ]]'
# When, by the daemons' own clocks: the last connection of the two devices to count as lost.
last=$(cat "$(ublk_json 0 | jq -r .log)" "$(ublk_json 1 | jq -r .log)" | grep "no answer to a keepalive" |
  sed -E 's/^\[([0-9-]+ [0-9:.]+)\].*/\1/' | sort | tail -n 1)
detected=$(awk -v a="$t0" -v b="$(date -d "$last" +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "  every connection of devices 0 and 1 lost by keepalive $detected s after SIGSTOP"
# Within --keepalive-tmo, give or take the emulated guest's timer latency.
awk -v s="$detected" 'BEGIN { exit !(s > 0 && s <= 5.5) }' || fail "detection took $detected s, more than --keepalive-tmo 5"
nap "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { r = 10 - (b - a); printf "%.1f", r > 0 ? r : 0 }')"
[[ $(ublk_json 2 | jq -r .io_state) == live ]] ||
  fail "device 2 (--keepalive-tmo 0, idle) left live: $(ublk_json 2 | jq -c .io_state)"
log "+ kill -CONT $E2E_SERVE_PID (after 10 s)"
kill -CONT "$E2E_SERVE_PID"

for id in 0 1; do
  wait_until 90 "device $id to be live again" eval "ublk_json $id | jq -e '.state == \"LIVE\" and .io_state == \"live\"'"
  log "  device $id: $(ublk_json $id | jq -c '[.queues[].stats.target | {keep_alives, keep_alive_timeouts, reissued,
      reconnects: ([.connection_states[].reconnects] | add)}]')"
  jq -e '[.queues[].stats.target.keep_alive_timeouts] | add >= 1' <(ublk_json $id) >/dev/null ||
    fail "device $id counted no keepalive timeout"
  grep -q "no answer to a keepalive within 5000 ms" "$(ublk_json $id | jq -r .log)" ||
    fail "device $id's log does not say that a keepalive went unanswered"
done

verify_fio_finish 0 180 "the server's stop"
no_io_errors 1 2
must bounded 60 cmp -n $((4 << 20)) "$E2E_WORK/pattern" /dev/ublkb1
log "  device 1 (ram) reads back its pattern"
for id in 0 1 2; do
  must bounded 60 "$UBLK" del -n $id
  wait_gone /dev/ublkb$id 10
done
no_ublk_devices
