#!/usr/bin/env bash
# An rbd export follows its image when it is resized in the cluster, as `rbd map` does: the
# server reads the size anew every second, its KEEP_ALIVE answers tell the client (protocol
# v10), and the client's daemon resizes the device (UPDATE_SIZE, Linux 6.16+):
#  - `rbd resize` to 64 MiB under fio verify: /dev/ublkbN grows from 48 MiB, fio sees 0 errors,
#    and the grown range takes writes that read back;
#  - the image grown again while its gateway is down: the client reconnects to a server that
#    describes the export with another size, keeps the connection and grows the device;
#  - `rbd resize --allow-shrink`: the device shrinks, and what lies below the new end is intact.
# On a kernel without UPDATE_SIZE the device keeps its size and the daemon's log says why.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rbd rados ceph-mon ceph-osd
setup_rxe

M=$((1 << 20))
ceph_cluster
conf=$CEPH_CONF
rbd_() { rbd -c "$conf" "$@"; }
rbd_ rm --no-progress rbd/resize >/dev/null 2>&1  # a rerun's
must rbd_ create --size 48M rbd/resize
serve_args=(--ceph-conf "$conf" --ceph-id gw --export vol=rbd:rbd/resize)
serve_start "${serve_args[@]}"
rdma_add 0 vol -q 2 -d 32 --reconnect-delay 1
daemon_log=$(ublk_json 0 | jq -r .log)
defer cp "$daemon_log" "$E2E_LOG_DIR/daemon-0.log"
dev_bytes() { echo $(($(cat /sys/block/ublkb0/size) * 512)); }
[[ $(dev_bytes) == $((48 * M)) ]] || fail "the device is $(dev_bytes) bytes, not the image's 48 MiB"

if ! "$UBLK" features | grep -q '^[[:space:]]*UPDATE_SIZE'; then
  log "this kernel's ublk driver lacks UPDATE_SIZE: the device keeps its size, and says so"
  must rbd_ resize --no-progress --size 64M rbd/resize
  wait_until 30 "the daemon to say it cannot resize" grep -q "cannot resize a device" "$daemon_log"
  log "  the daemon says: $(grep -m1 "cannot resize a device" "$daemon_log" | cut -c1-200)"
  [[ $(dev_bytes) == $((48 * M)) ]] || fail "the device changed its size to $(dev_bytes) bytes"
  fio_write_verify old-size /dev/ublkb0 16M
  must bounded 60 "$UBLK" del -n 0
  wait_gone /dev/ublkb0 10
  serve_stop
  exit 0
fi

log "the image grows to 64 MiB under fio verify"
verify_fio_start 0 grow 2m
must rbd_ resize --no-progress --size 64M rbd/resize
t0=$SECONDS
wait_until 30 "the device to grow to 64 MiB" eval '[[ $(dev_bytes) == $((64 * M)) ]]'
log "  /dev/ublkb0 is 64 MiB $((SECONDS - t0)) s after rbd resize"
grep -q "export 'vol': resized from 48M to 64M" "$E2E_SERVE_LOG" || fail "the server does not log the resize"
serve_stats wait | jq -e --argjson n $((64 * M)) '.exports.vol.size_bytes == $n' >/dev/null ||
  fail "the server's stats do not show the new size: $(serve_stats | jq -c .exports.vol)"
verify_fio_finish 0 120 "the image's growth"
head -c $((16 * M)) /dev/urandom >"$E2E_WORK/tail"
must bounded 60 dd if="$E2E_WORK/tail" of=/dev/ublkb0 bs=1M seek=48 oflag=direct status=none
cmp -s "$E2E_WORK/tail" <(read_region /dev/ublkb0 48 16) || fail "the grown range does not read back what was written"
must rbd_ export --no-progress rbd/resize "$E2E_WORK/img"
cmp -s -i $((48 * M)):0 -n $((16 * M)) "$E2E_WORK/img" "$E2E_WORK/tail" || fail "the cluster's image lacks the grown range's data"

log "the image grows to 80 MiB while its gateway is down"
serve_stop
must rbd_ resize --no-progress --size 80M rbd/resize
serve_start "${serve_args[@]}"
wait_until 60 "the device to be live again at 80 MiB" \
  eval '[[ $(dev_bytes) == $((80 * M)) ]] && ublk_json 0 | jq -e ".state == \"LIVE\"" >/dev/null'
cmp -s "$E2E_WORK/tail" <(read_region /dev/ublkb0 48 16) || fail "the data at 48 MiB changed across the reconnect"

log "the image shrinks to 56 MiB"
must rbd_ resize --no-progress --allow-shrink --size 56M rbd/resize
wait_until 30 "the device to shrink to 56 MiB" eval '[[ $(dev_bytes) == $((56 * M)) ]]'
cmp -s -n $((8 * M)) "$E2E_WORK/tail" <(read_region /dev/ublkb0 48 8) || fail "the data below the new end changed"
fio_write_verify shrunk /dev/ublkb0 56M
no_io_errors 0
must bounded 60 "$UBLK" del -n 0
wait_gone /dev/ublkb0 10
serve_stop
