#!/usr/bin/env bash
# rbd export: a single-node Ceph cluster (ci/ceph-up: monitor, memstore OSD, manager, cephx) in
# the guest, its images served by `serve --export NAME=rbd:POOL/IMAGE` and attached over rxe:
#  - fio verify (crc32c, 4k..1M, QD32) on 2 queues;
#  - DISCARD and WRITE_ZEROES read back as zeros and leave their neighbours alone;
#  - a FLUSH reaches the server, and what was written is in the cluster (read back with `rbd export`);
#  - ext4: write files, unmount, fsck clean, mount again and compare;
#  - a snapshot export is read-only and holds the snapshot's data;
#  - at QD1 the server does not poll for the cluster's answer (it sleeps once per command);
#  - an image that does not exist, a wrong key, a cluster that does not answer: that export is
#    unavailable (stats say why, `add` is refused saying so) and the others serve.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq rbd rados ceph-mon ceph-osd mkfs.ext4 fsck.ext4 blkdiscard
setup_rxe

M=$((1 << 20))
ceph_cluster
conf=$CEPH_CONF
ceph=$(dirname "$conf")
rbd_() { rbd -c "$conf" "$@"; }
for image in img snapimg; do rbd_ rm --no-progress rbd/$image >/dev/null 2>&1; done  # a rerun's
rbd_ snap purge --no-progress rbd/snapimg >/dev/null 2>&1
must rbd_ create --size 96M rbd/img

# The snapshot's image, with known data, before the server opens it.
head -c $((16 * M)) /dev/urandom >"$E2E_WORK/snapdata"
must rbd_ import --no-progress "$E2E_WORK/snapdata" rbd/snapimg
must rbd_ snap create --no-progress rbd/snapimg@s1
# Written after the snapshot: the snapshot export must not show it.
rbd_ bench --io-type write --io-size 1M --io-total 4M --io-pattern seq rbd/snapimg >/dev/null ||
  fail "cannot write the image after its snapshot"

serve_start --ceph-conf "$conf" --ceph-id gw --export vol=rbd:rbd/img --export snap=rbd:rbd/snapimg@s1 \
  --export gone=rbd:rbd/nope --export r=ram:16M
grep -q "export 'gone' is unavailable: .*no such image" "$E2E_SERVE_LOG" ||
  fail "the server does not say that export 'gone' has no image: $(grep gone "$E2E_SERVE_LOG")"
serve_stats wait | jq -e '.exports.gone.available == false and (.exports.gone.unavailable_reason | test("no such image"))' \
  >/dev/null || fail "the stats do not show export 'gone' unavailable: $(serve_stats | jq -c .exports.gone)"
serve_stats | jq -e '.exports.vol.available and .exports.snap.available and .exports.r.available' >/dev/null ||
  fail "an export that opened is not shown available: $(serve_stats | jq -c .exports)"

log "=== an unavailable export is refused, saying so"
add_refused "export whose image does not exist" "export 'gone' .* is unavailable" -n 3 -t rdma \
  --traddr "$E2E_RDMA_ADDR" --export gone
rdma_add 3 r
must dd if=/dev/urandom of=/dev/ublkb3 bs=1M count=4 oflag=direct status=none
must "$UBLK" del -n 3
wait_gone /dev/ublkb3

log "=== fio verify on the rbd export"
rdma_add 0 vol -q 2 -d 64
dev=/dev/ublkb0
[[ $(blockdev --getsize64 "$dev") == $((96 * M)) ]] || fail "$dev is $(blockdev --getsize64 "$dev") bytes, not 96 MiB"
fio_run rbd-verify --filename="$dev" --rw=randwrite --bsrange=4k-1m --iodepth=32 --size=48M --verify=crc32c \
  --verify_fatal=1 --do_verify=1
no_io_errors 0

log "=== discard and write zeroes read back as zeros"
head -c $((32 * M)) /dev/urandom >"$E2E_WORK/data"
must dd if="$E2E_WORK/data" of="$dev" bs=1M seek=48 oflag=direct status=none
must blkdiscard -o $((52 * M)) -l $((8 * M)) "$dev"
is_zero "$dev" 52 8 || fail "52-60 MiB is not zero after blkdiscard"
must blkdiscard -z -o $((64 * M + 4096)) -l $((64 * 1024)) "$dev"
cmp -s -n 65536 <(dd if="$dev" iflag=direct,skip_bytes bs=64k skip=$((64 * M + 4096)) count=1 status=none) /dev/zero ||
  fail "the 64 KiB write-zeroes at 64 MiB + 4 KiB is not zero"
cmp -s -n $((4 * M)) <(read_region "$dev" 48 4) "$E2E_WORK/data" || fail "48-52 MiB (before the discard) changed"
cmp -s -n 4096 <(dd if="$dev" iflag=direct,skip_bytes bs=4k skip=$((64 * M)) count=1 status=none) \
  <(tail -c +$((16 * M + 1)) "$E2E_WORK/data") || fail "the 4 KiB before the write-zeroes changed"
((($(serve_counter vol discards)) > 0)) || fail "no DISCARD reached the server"
((($(serve_counter vol write_zeroes)) > 0)) || fail "no WRITE_ZEROES reached the server"

log "=== a flush reaches the server, and the data is in the cluster"
flushes0=$(serve_counter vol flushes)
must dd if="$E2E_WORK/data" of="$dev" bs=1M seek=80 count=16 conv=fsync status=none
flushes=$(serve_counter vol flushes)
((flushes > flushes0)) || fail "no FLUSH reached the server ($flushes0 -> $flushes)"
must rbd_ export --no-progress rbd/img "$E2E_WORK/img.export"
cmp -s -n $((16 * M)) <(tail -c +$((80 * M + 1)) "$E2E_WORK/img.export") "$E2E_WORK/data" ||
  fail "the cluster does not hold the 16 MiB written at 80 MiB"
rm -f "$E2E_WORK/img.export"

log "=== ext4 on the rbd export"
mnt=$E2E_WORK/mnt
mkdir -p "$mnt"
must mkfs.ext4 -q -F "$dev"
must mount "$dev" "$mnt"
defer umount -l "$mnt"
for i in 1 2 3 4; do head -c $((3 * M)) /dev/urandom >"$mnt/f$i"; done
sha256sum "$mnt"/f* | sed "s|$mnt/||" >"$E2E_WORK/sums"
must umount "$mnt"
must fsck.ext4 -fn "$dev"
must mount "$dev" "$mnt"
(cd "$mnt" && sha256sum -c --quiet "$E2E_WORK/sums") || fail "files differ after umount and mount"
must umount "$mnt"
must "$UBLK" del -n 0
wait_gone "$dev"

log "=== a snapshot export is read-only and holds the snapshot"
rdma_add 1 snap
[[ $(cat /sys/block/ublkb1/ro) == 1 ]] || fail "/dev/ublkb1 (a snapshot) is not read-only"
cmp -s <(dd if=/dev/ublkb1 iflag=direct bs=1M count=16 status=none) "$E2E_WORK/snapdata" ||
  fail "the snapshot export does not hold the snapshot's data"
expect_status "1" dd if=/dev/zero of=/dev/ublkb1 bs=4k count=1 oflag=direct status=none
must "$UBLK" del -n 1
wait_gone /dev/ublkb1
serve_stop

log "=== QD1 with a 1 s serial spin: the server sleeps while the cluster has the command"
# It polls for a serial client's next command, not for the cluster's answer (milliseconds
# away, brought by librbd's threads, which need the CPU): one sleep per command. The queue's
# idle connections (QD1 keeps to one of its 4) have sent a dozen keepalives first: they do not
# make the group poll either.
serve_start --ceph-conf "$conf" --ceph-id gw --threads 1 --serial-spin-us 1000000 --export vol=rbd:rbd/img
rdma_add 0 vol -q 1 --keepalive-tmo 1
nap 3
group_sleeps() { serve_stats wait | jq '.poll_groups[0].sleeps'; }
sleeps0=$(group_sleeps)
fio_run rbd-qd1 --filename=/dev/ublkb0 --rw=randread --bs=4k --iodepth=1 --size=48M --io_size=1M
sleeps=$(($(group_sleeps) - sleeps0)) reads=$(serve_counter vol reads) serial=$(serve_counter vol serial_commands)
log "  $reads reads ($serial of them serial), $sleeps sleeps of the poll group"
((reads >= 256 && serial * 2 > reads)) || fail "QD1: $serial of $reads reads came as a serial stream (want more than half)"
((sleeps * 2 > reads)) || fail "QD1: the server slept $sleeps times for $reads reads (want one for most reads)"
must "$UBLK" del -n 0
wait_gone /dev/ublkb0
serve_stop

log "=== a wrong key and a cluster that does not answer: unavailable, the other export serves"
cp "$conf" "$E2E_WORK/badkey.conf"
printf '[client.gw]\nkeyring = %s\n' "$E2E_WORK/bad.keyring" >>"$E2E_WORK/badkey.conf"
printf '[client.gw]\n\tkey = AQBzSm9lAAAAABAAbm9uc2Vuc2Vub25zZW5zZQ==\n' >"$E2E_WORK/bad.keyring"
printf '[global]\nmon host = [v2:127.0.0.1:3999]\nkeyring = %s\n' "$ceph/ceph.client.gw.keyring" \
  >"$E2E_WORK/down.conf"
serve_start --ceph-id gw --ceph-timeout 3 --export "badkey=rbd:rbd/img?conf=$E2E_WORK/badkey.conf" \
  --export "down=rbd:rbd/img?conf=$E2E_WORK/down.conf" --export r=ram:16M
grep -q "export 'down' is unavailable: .*did not answer within 3 s" "$E2E_SERVE_LOG" ||
  fail "the server does not say that export 'down' cannot reach its cluster"
grep -qE "export 'badkey' is unavailable: .*(refused the key|cannot connect)" "$E2E_SERVE_LOG" ||
  fail "the server does not say that export 'badkey' has a wrong key"
add_refused "export with a wrong key" "export 'badkey' .* is unavailable" -n 3 -t rdma --traddr "$E2E_RDMA_ADDR" \
  --export badkey
rdma_add 3 r
fio_run ram-verify --filename=/dev/ublkb3 --rw=randwrite --bs=64k --iodepth=8 --size=8M --verify=crc32c \
  --verify_fatal=1 --do_verify=1
must "$UBLK" del -n 3
wait_gone /dev/ublkb3
serve_stop
