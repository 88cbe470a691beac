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

verify_job=(--filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-64k --size=48M --iodepth=32
            --verify=crc32c --verify_fatal=1 --name=keepalive)
out=$E2E_LOG_DIR/keepalive.fio
log "+ fio (background) ${verify_job[*]} --verify_backlog=64 --rate=3m"
fio "${E2E_FIO_COMMON[@]}" "${verify_job[@]}" --verify_backlog=64 --rate=3m >"$out" 2>&1 &
fio_pid=$!
defer kill -9 "$fio_pid"
nap 4
kill -0 $fio_pid 2>/dev/null || fail "fio ended before the server was stopped: $(tail -n 5 "$out")"

log "+ kill -STOP $E2E_SERVE_PID (serve, fio running on device 0, devices 1 and 2 idle)"
kill -STOP "$E2E_SERVE_PID"
defer kill -CONT "$E2E_SERVE_PID"
t0=$EPOCHREALTIME
detected=
for ((i = 0; i < 90; i++)); do
  s0=$(ublk_json 0 | jq -r .io_state)
  s1=$(ublk_json 1 | jq -r .io_state)
  if [[ $s0 != live && $s1 != live ]]; then
    detected=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    break
  fi
  nap 0.1
done
[[ -n $detected ]] || fail "the stopped server was not detected within 9 s (device 0: $s0, device 1: $s1)"
log "  both devices left live $detected s after SIGSTOP (device 0: $s0, device 1: $s1)"
awk -v s="$detected" 'BEGIN { exit !(s <= 6.5) }' || fail "detection took $detected s, more than --keepalive-tmo 5 (+ polling)"
nap $((10 - ${detected%.*}))
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

for ((i = 0; i < 1800; i++)); do kill -0 $fio_pid 2>/dev/null || break; nap 0.1; done
kill -0 $fio_pid 2>/dev/null && fail "fio still runs 180 s after it started"
wait $fio_pid
rc=$?
fio_check "$out" "$rc" || fail "fio saw errors or mismatches across the server's stop (exit status $rc)"
log "  fio: $(fio_summary "$out")"
for id in 0 1 2; do
  jq -e '[.queues[].stats.target.errors] | add == 0' <(ublk_json $id) >/dev/null ||
    fail "device $id counted IO errors: $(ublk_json $id | jq -c '[.queues[].stats.target.errors]')"
done
read0=$(ublk_json 0 | jq '[.queues[].stats.bytes_read] | add')
fio_run keepalive-verify-all "${verify_job[@]}" --verify_only
read=$(($(ublk_json 0 | jq '[.queues[].stats.bytes_read] | add') - read0))
((read >= 48 << 20)) || fail "the verify pass read $read bytes of the device, not all 48 MiB"
must bounded 60 cmp -n $((4 << 20)) "$E2E_WORK/pattern" /dev/ublkb1
log "  device 1 (ram) reads back its pattern"
for id in 0 1 2; do
  must bounded 60 "$UBLK" del -n $id
  wait_gone /dev/ublkb$id 10
done
no_ublk_devices
