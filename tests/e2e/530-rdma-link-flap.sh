#!/usr/bin/env bash
# rdma target survives the path going away: the rxe device's interface is taken down for 10 s
# (`ip link set dum0 down`, then up) while fio writes and verifies (crc32c, verify_backlog) a
# file export at QD 32, with an idle ram device beside it. The queue pairs that send while the
# link is down fail (rxe fails a send that has no route on the spot); their connections are
# lost and their requests held, and neither side sends an rdma_cm message through the dead
# port (a failed DREQ or REQ would leave rxe's QP1 in the error state for good: no rdma_cm
# connection on the device would work again): disconnects wait for the port, reconnect
# attempts say it is down. Once it is up, everything reconnects and is reissued: fio sees 0
# errors and 0 mismatches, a pass of its own verifies every block, the ram device reads back
# its pattern, rxe's QP1 is still in service and a fresh rping connects.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rping
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img" --export vol0=ram:16M

rdma_add 0 f -q 2 -d 64 --reconnect-delay 1
rdma_add 1 vol0 -q 1 -d 16 --conns-per-queue 2 --reconnect-delay 1
for id in 0 1; do defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"; done
must bounded 60 dd if=/dev/urandom of="$E2E_WORK/pattern" bs=1M count=4 status=none
must bounded 60 dd if="$E2E_WORK/pattern" of=/dev/ublkb1 bs=1M count=4 oflag=direct status=none

gsi_state() { rdma res show qp 2>/dev/null | awk '/type GSI/ { for (i = 1; i < NF; i++) if ($i == "state") print $(i + 1) }'; }
[[ $(gsi_state) == RTS ]] || fail "rxe's QP1 is not in service before the test: $(rdma res show qp | grep GSI)"

verify_fio_start 0 link-flap 2m

defer ip link set "$E2E_RDMA_IF" up
must ip link set "$E2E_RDMA_IF" down
nap 5
state=$(ublk_json 0 | jq -c '{io_state, held: ([.queues[].stats.target.held] | add)}')
log "  device 0 with the link down: $state"
jq -e '.io_state != "live"' <<<"$state" >/dev/null || fail "device 0 is reported live with its link down: $state"
nap 5
must ip link set "$E2E_RDMA_IF" up
t_up=$SECONDS
wait_until 20 "$E2E_RDMA_DEV to become ACTIVE again" eval "rdma link show $E2E_RDMA_DEV/1 | grep -q 'state ACTIVE'"
live_again() { ublk_json "$1" | jq -e '.io_state == "live"' >/dev/null; }
for id in 0 1; do
  while ((SECONDS < t_up + 60)) && ! live_again $id; do nap 0.1; done
  live_again $id || fail "device $id is not live 60 s after the link came up; QP1 $(gsi_state); the connections' \
last errors: $(ublk_json $id | jq -c '[.queues[].stats.target.connection_states[] | .last_error] | unique')"
  log "  device $id after the flap: $(ublk_json $id | jq -c '[.queues[].stats.target | {reissued, connection_lost,
      keep_alive_timeouts, reconnects: ([.connection_states[].reconnects] | add)}]')"
done
grep -q "the port of $E2E_RDMA_DEV is down" "$(ublk_json 0 | jq -r .log)" ||
  fail "device 0's log does not say that the port was down"
[[ $(gsi_state) == RTS ]] || fail "rxe's QP1 left service during the flap: $(rdma res show qp | grep GSI)"

verify_fio_finish 0 180 "the link flap"
no_io_errors 1
must bounded 60 cmp -n $((4 << 20)) "$E2E_WORK/pattern" /dev/ublkb1
log "  device 1 (ram) reads back its pattern"

rping_connects "after the flap"
for id in 0 1; do
  must bounded 60 "$UBLK" del -n $id
  wait_gone /dev/ublkb$id 10
done
no_ublk_devices
