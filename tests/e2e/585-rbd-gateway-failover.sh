#!/usr/bin/env bash
# Two gateways for one rbd image: two `serve` processes export the same image and are the two
# paths of one device (add --traddr A --traddr B, failover). While fio writes and verifies, the
# active gateway is SIGKILLed: the device fails over to the other one, whose writes wait until
# librbd breaks the dead gateway's exclusive lock (its watch times out: 10 s here) and then go
# on; 0 errors, 0 mismatches, and a full verify pass through the surviving gateway. Then the
# image is read by another client (rbd export) and matches what the device reads.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rbd rados ceph-mon ceph-osd
setup_rxe

ceph_cluster
conf=$CEPH_CONF
rbd -c "$conf" rm --no-progress rbd/failover >/dev/null 2>&1  # a rerun's
must rbd -c "$conf" create --size 64M rbd/failover

E2E_SERVE_LISTEN=$E2E_RDMA_ADDR:18520 serve_start --ceph-conf "$conf" --ceph-id gwa --export vol=rbd:rbd/failover
gw_a=$E2E_SERVE_PID gw_a_log=$E2E_SERVE_LOG
E2E_SERVE_LISTEN=$E2E_RDMA_ADDR:18521 serve_start --ceph-conf "$conf" --ceph-id gwb --export vol=rbd:rbd/failover
gw_b=$E2E_SERVE_PID

ublk_add 0 -t rdma --traddr "$E2E_RDMA_ADDR:18520" --traddr "$E2E_RDMA_ADDR:18521" --export vol -q 2 -d 32 \
  --reconnect-delay 1
defer cp "$(ublk_json 0 | jq -r .log)" "$E2E_LOG_DIR/daemon-0.log"
paths() { ublk_json 0 | jq -c '[.paths[] | {path, state, active}]'; }
log "  paths: $(paths)"
jq -e 'length == 2 and .[0].active and (.[1].active | not) and all(.state == "live")' <<<"$(paths)" >/dev/null ||
  fail "expected gateway A active and gateway B standing by, both live: $(paths)"

verify_fio_start 0 gateway-failover 1m
log "+ kill -KILL $gw_a (gateway A, active)"
kill -KILL "$gw_a"
t0=$SECONDS
wait_until 30 "gateway B to take over" eval "paths | jq -e '.[1].active'"
log "  $((SECONDS - t0)) s after the kill: $(paths)"
verify_fio_finish 0 240 "the active gateway's death"
log "  gateway A's last words: $(tail -n 2 "$gw_a_log" | tr '\n' ' ')"
[[ $(ublk_json 0 | jq -r .state) == LIVE ]] || fail "the device is not LIVE on gateway B"

log "=== another client reads the image: what the device reads"
must rbd -c "$conf" export --no-progress rbd/failover "$E2E_WORK/img.export"
cmp -s -n $((48 << 20)) "$E2E_WORK/img.export" <(dd if=/dev/ublkb0 iflag=direct bs=1M count=48 status=none) ||
  fail "the cluster's image differs from what the device reads"
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0 10
serve_stop "$gw_b"
