#!/usr/bin/env bash
# rdma target over two paths: two dummy interfaces, each with its own rxe device, and one
# server listening on both. Failover (the default with two --traddr): path 0 carries the IO,
# path 1 stands by connected; path 0's link goes down for 10 s while fio writes and verifies a
# file export: the device fails over to path 1 within a keepalive period and IO goes on there
# (bytes move while the link is down), path 0 reconnects in the background once its link is up
# and takes over again; 0 fio errors, 0 mismatches, a full verify pass. Round-robin spreads a
# queue's IO over both paths (both active, both moving commands on the server). The same path
# twice is refused.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
if2=dum1 addr2=198.51.100.1 dev2=rxe1
must ip link add "$if2" type dummy
defer ip link del "$if2"
must ip addr add "$addr2/24" dev "$if2"
must ip link set "$if2" up
must rdma link add "$dev2" type rxe netdev "$if2"
defer rdma link delete "$dev2"
wait_until 10 "$dev2 to become ACTIVE" eval "rdma link show $dev2/1 | grep -q 'state ACTIVE'"

img=$E2E_WORK/export.img
truncate -s 64M "$img"
E2E_SERVE_LISTEN=0.0.0.0 serve_start --export f=file:"$img" --export vol0=ram:16M

expect_status 2 "$UBLK" add -n 9 -t rdma --traddr "$E2E_RDMA_ADDR" --traddr "$E2E_RDMA_ADDR:18520" --export f
ublk_add 0 -t rdma --traddr "$E2E_RDMA_ADDR" --traddr "$addr2" --export f -q 2 -d 64 --conns-per-queue 2 \
  --reconnect-delay 1
defer cp "$(ublk_json 0 | jq -r .log)" "$E2E_LOG_DIR/daemon-0.log"
paths() { ublk_json "$1" | jq -c '[.paths[] | {path, state, active}]'; }
log "  paths: $(paths 0)"
jq -e 'length == 2 and .[0].active and (.[1].active | not) and all(.state == "live")' <<<"$(paths 0)" >/dev/null ||
  fail "expected path 0 active and path 1 standing by, both live: $(paths 0)"

verify_fio_start 0 multipath 2m

written() { ublk_json 0 | jq '[.queues[].stats.bytes_written] | add'; }
defer ip link set "$E2E_RDMA_IF" up
log "+ ip link set $E2E_RDMA_IF down (path 0)"
must ip link set "$E2E_RDMA_IF" down
t0=$SECONDS
wait_until 8 "path 1 to take over" eval "paths 0 | jq -e '.[1].active and (.[0].active | not)'"
log "  $((SECONDS - t0)) s after the link went down: $(paths 0)"
w0=$(written)
nap 4
w1=$(written)
log "  written over path 1 in 4 s with path 0 down: $((w1 - w0)) bytes"
((w1 > w0)) || fail "no IO moved while path 0 was down"
jq -e '.[0].state != "live"' <<<"$(paths 0)" >/dev/null || fail "path 0 is reported live with its link down"
[[ $(ublk_json 0 | jq -r .state) == LIVE ]] || fail "the device is not LIVE although path 1 carries it"
nap 2
log "+ ip link set $E2E_RDMA_IF up (path 0)"
must ip link set "$E2E_RDMA_IF" up
wait_until 60 "path 0 to rejoin and take over again" \
  eval "paths 0 | jq -e '.[0].state == \"live\" and .[0].active and .[1].state == \"live\"'"
log "  after the link came back: $(paths 0)"
grep -q "failing over from path $E2E_RDMA_ADDR:18520 to path $addr2:18520" "$(ublk_json 0 | jq -r .log)" ||
  fail "the daemon's log does not say it failed over"

verify_fio_finish 0 180 "the path failure"
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0 10

log "round-robin: a queue's IO over both paths"
ublk_add 1 -t rdma --traddr "$E2E_RDMA_ADDR" --traddr "$addr2" --export vol0 -q 1 -d 16 --conns-per-queue 1 \
  --multipath round-robin --push-max 0 --pull-max 0
jq -e 'length == 2 and all(.active and .state == "live")' <<<"$(paths 1)" >/dev/null ||
  fail "round-robin: expected both paths live and active: $(paths 1)"
c0=$(serve_counter vol0 commands)
fio_run multipath-rr --filename=/dev/ublkb1 --rw=randwrite --bs=4k --size=8M --iodepth=16 --verify=crc32c \
  --verify_fatal=1
conns=$(serve_stats wait | jq -c '[.connections[] | select(.export == "vol0") | .commands]')
log "  commands per server connection: $conns (before: $c0 in all)"
jq -e 'length == 2 and all(. > 100)' <<<"$conns" >/dev/null || fail "round-robin did not use both paths: $conns"
must bounded 60 "$UBLK" del -n 1
wait_gone /dev/ublkb1 10
no_ublk_devices
