#!/usr/bin/env bash
# A file or block device export follows its storage when it is resized (a file truncated
# longer, an LV extended; here a loop device refreshed with `losetup -c` after its file grew):
# the server reads the size every second, its KEEP_ALIVE answers tell the client (protocol
# v10), and the client's daemon resizes the device (UPDATE_SIZE, Linux 6.16+). The grown range
# takes writes that read back, and what was written before is intact; a file grown while its
# device's daemon is dead is taken up by `recover`. On a kernel without
# UPDATE_SIZE the device keeps its size and the daemon's log says why. (e2e 588 resizes an rbd
# image, under fio verify and while its gateway is down.)
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq losetup truncate
setup_rxe
M=$((1 << 20))
file=$E2E_WORK/file.img
backing=$E2E_WORK/loop.img
truncate -s 32M "$file" "$backing"
modprobe loop 2>/dev/null
loopdev=$(losetup -f --show "$backing") || fail "losetup cannot attach $backing"
defer losetup -d "$loopdev"
serve_start --export f=file:"$file" --export b=file:"$loopdev"
rdma_add 0 f -q 2 -d 32 --reconnect-delay 1 -r 1
rdma_add 1 b -q 1 -d 32 --reconnect-delay 1
for id in 0 1; do defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"; done
dev_bytes() { echo $(($(cat /sys/block/ublkb"$1"/size) * 512)); }
head -c $((8 * M)) /dev/urandom >"$E2E_WORK/head"
for id in 0 1; do
  [[ $(dev_bytes $id) == $((32 * M)) ]] || fail "device $id is $(dev_bytes $id) bytes, not 32 MiB"
  must bounded 60 dd if="$E2E_WORK/head" of=/dev/ublkb$id bs=1M oflag=direct status=none
done

log "+ truncate -s 64M $file; truncate -s 48M $backing; losetup -c $loopdev"
must truncate -s 64M "$file"
must truncate -s 48M "$backing"
must losetup -c "$loopdev"
if ! "$UBLK" features | grep -q '^[[:space:]]*UPDATE_SIZE'; then
  log "this kernel's ublk driver lacks UPDATE_SIZE: the devices keep their size, and say so"
  for id in 0 1; do
    log_file=$(ublk_json $id | jq -r .log)
    wait_until 30 "device $id's daemon to say it cannot resize" grep -q "cannot resize a device" "$log_file"
    [[ $(dev_bytes $id) == $((32 * M)) ]] || fail "device $id changed its size to $(dev_bytes $id) bytes"
  done
  log "  device 0's daemon says: $(grep -m1 "cannot resize a device" "$(ublk_json 0 | jq -r .log)" | cut -c1-200)"
else
  wait_until 30 "device 0 to grow to 64 MiB" eval '[[ $(dev_bytes 0) == $((64 * M)) ]]'
  wait_until 30 "device 1 to grow to 48 MiB" eval '[[ $(dev_bytes 1) == $((48 * M)) ]]'
  grep -q "export 'f': resized from 32M to 64M" "$E2E_SERVE_LOG" || fail "the server does not log the file's resize"
  grep -q "export 'b': resized from 32M to 48M" "$E2E_SERVE_LOG" || fail "the server does not log the device's resize"
  serve_stats wait | jq -e --argjson f $((64 * M)) --argjson b $((48 * M)) \
    '.exports.f.size_bytes == $f and .exports.b.size_bytes == $b' >/dev/null ||
    fail "the server's stats do not show the new sizes: $(serve_stats | jq -c '.exports | map_values(.size_bytes)')"
  log "  /dev/ublkb0 is 64 MiB and /dev/ublkb1 48 MiB"
  fio_run grown-file --filename=/dev/ublkb0 --rw=randwrite --bsrange=4k-256k --offset=32M --size=32M --iodepth=16 \
    --verify=crc32c --verify_fatal=1 --do_verify=1
  head -c $((16 * M)) /dev/urandom >"$E2E_WORK/tail"
  must bounded 60 dd if="$E2E_WORK/tail" of=/dev/ublkb1 bs=1M seek=32 oflag=direct status=none
  cmp -s "$E2E_WORK/tail" <(read_region /dev/ublkb1 32 16) || fail "device 1's grown range does not read back"
  cmp -s -i $((32 * M)):0 -n $((16 * M)) "$backing" "$E2E_WORK/tail" || fail "the loop device's file lacks the grown range's data"

  log "the file grows while device 0's daemon is dead: the recovered device takes the new size"
  pid=$(ublk_daemon_pid 0)
  log "+ kill -9 $pid (device 0's daemon)"
  kill -9 "$pid"
  wait_pid_gone "$pid" 10
  wait_state 0 QUIESCED 20
  must truncate -s 80M "$file"
  must "$UBLK" recover -n 0
  wait_state 0 LIVE 20
  wait_until 30 "device 0 to grow to 80 MiB" eval '[[ $(dev_bytes 0) == $((80 * M)) ]]'
  log "  /dev/ublkb0 is 80 MiB after recover"
fi
for id in 0 1; do
  cmp -s "$E2E_WORK/head" <(read_region /dev/ublkb$id 0 8) || fail "device $id's first 8 MiB changed"
done
no_io_errors 0 1
for id in 0 1; do
  must bounded 60 "$UBLK" del -n $id
  wait_gone /dev/ublkb$id 10
done
serve_stop
