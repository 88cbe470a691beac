#!/usr/bin/env bash
# rdma target survives a NIC reset: the rxe device is deleted (`rdma link delete rxe0`, which
# rdma_cm reports to every id on it as DEVICE_REMOVAL) and added again 10 s later, while fio
# writes and verifies a file export at QD 32 and an idle ram device sits beside it. The removal
# waits until every process has let go of the device: the client releases each connection
# (QP, CQ, PD, MRs, rdma_cm id) and the server its connections and its listener, so the delete
# completes within seconds instead of hanging; reconnect attempts fail while no device has the
# address; once the device is back the server listens again, the clients reconnect and reissue:
# 0 fio errors, 0 mismatches, a full verify pass, the ram device's pattern intact. (The ram
# export is the server's memory, which the reset does not touch: same instance.) A second,
# unused rxe device stays present throughout: with rdma-core 44, librdmacm closes a removed
# device only while it still lists another one, so the host's only RDMA device cannot be
# reset under running processes (README, "When the server or the network goes away").
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rping
setup_rxe
# A second RDMA device that nothing uses: librdmacm lets a removed device go only while another
# one is listed (with none left, its device-list refresh gives up before it drops the old one).
must ip link add dum1 type dummy
defer ip link del dum1
must ip addr add 198.51.100.1/24 dev dum1
must ip link set dum1 up
must rdma link add rxe1 type rxe netdev dum1
defer rdma link delete rxe1
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img" --export vol0=ram:16M

rdma_add 0 f -q 2 -d 64 --reconnect-delay 1
rdma_add 1 vol0 -q 1 -d 16 --conns-per-queue 2 --reconnect-delay 1
for id in 0 1; do defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"; done
must bounded 60 dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must bounded 60 dd if="$E2E_WORK/pattern" of=/dev/ublkb1 bs=1M count=4 oflag=direct status=none

verify_fio_start 0 nic-reset 2m

log "+ rdma link delete $E2E_RDMA_DEV (fio running)"
t0=$EPOCHREALTIME
rdma link delete "$E2E_RDMA_DEV" &
del_pid=$!
for ((i = 0; i < 300; i++)); do kill -0 $del_pid 2>/dev/null || break; nap 0.2; done
if kill -0 $del_pid 2>/dev/null; then
  log "--- rdma link delete still waits after 60 s; who holds the device:"
  for f in /proc/[0-9]*/fd/*; do
    [[ $(readlink "$f" 2>/dev/null) == /dev/infiniband/* ]] || continue
    p=${f#/proc/}; p=${p%%/*}
    echo "    pid $p ($(cat /proc/$p/comm)): $(readlink "$f")" >&2
  done
  ls /sys/class/infiniband_verbs/ /dev/infiniband/ >&2
  cat /proc/$del_pid/stack >&2
  rdma res show >&2
  rdma res show cm_id >&2
  for p in $(pgrep -f "ublk-rdma"); do
    for t in /proc/$p/task/*; do echo "    $p/${t##*/} $(cat $t/comm) $(cat $t/wchan)" >&2; done
  done
  fail "rdma link delete did not complete within 60 s: a process still holds the device"
fi
log "  deleted after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
defer rdma link add "$E2E_RDMA_DEV" type rxe netdev "$E2E_RDMA_IF"
nap 3
state=$(ublk_json 0 | jq -c '{io_state, held: ([.queues[].stats.target.held] | add)}')
log "  device 0 without an RDMA device: $state"
jq -e '.io_state != "live"' <<<"$state" >/dev/null || fail "device 0 is reported live without an RDMA device: $state"
nap 7
must rdma link add "$E2E_RDMA_DEV" type rxe netdev "$E2E_RDMA_IF"
wait_until 20 "$E2E_RDMA_DEV to become ACTIVE" eval "rdma link show $E2E_RDMA_DEV/1 | grep -q 'state ACTIVE'"
wait_until 30 "the server to listen again" grep -q "listening on .* again" "$E2E_SERVE_LOG"
for id in 0 1; do
  wait_until 60 "device $id to be live again" eval "ublk_json $id | jq -e '.io_state == \"live\"'"
  log "  device $id after the reset: $(ublk_json $id | jq -c '[.queues[].stats.target | {reissued, connection_lost,
      keep_alive_timeouts, reconnects: ([.connection_states[].reconnects] | add)}]')"
done
grep -q "DEVICE_REMOVAL" "$(ublk_json 0 | jq -r .log)" || fail "device 0's log does not name the device removal"

verify_fio_finish 0 180 "the NIC reset"
no_io_errors 1
must bounded 60 cmp -n $((4 << 20)) "$E2E_WORK/pattern" /dev/ublkb1
log "  device 1 (ram) reads back its pattern"

rping_connects "after the reset"
for id in 0 1; do
  must bounded 60 "$UBLK" del -n $id
  wait_gone /dev/ublkb$id 10
done
no_ublk_devices
