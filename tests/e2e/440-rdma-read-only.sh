#!/usr/bin/env bash
# rdma target: an export served with --read-only is a read-only block device at the client
# (blockdev --getro = 1); writes to it fail, reads return the export's data, and the backing file
# is unchanged. Another export of the same server stays writable. A read-only ram export never
# opens its memory to the client's RDMA WRITEs (no PUSH_WRITES); a writable one does.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq blockdev
setup_rxe

img=$E2E_WORK/export.img
head -c 16M /dev/urandom >"$img"
sum=$(sha256sum <"$img")
serve_start --export ro=file:"$img" --export rw=ram:16M --export roram=ram:16M --read-only ro --read-only roram

dev=/dev/ublkb0
rdma_add 0 ro -q 2
jq -e '.read_only and .target.read_only' <(ublk_json 0) >/dev/null || fail "list does not show the device read-only"
[[ $(blockdev --getro $dev) == 1 ]] || fail "blockdev --getro $dev is not 1"

[[ $(dd if=$dev iflag=direct bs=1M status=none | sha256sum) == "$sum" ]] || fail "reads do not return the export's data"
log "  reads return the export's data"

# write_refused ARGS...: dd ARGS of=$dev must fail, with EIO, EROFS or EPERM (the kernel refuses
# writes to a read-only block device before they reach the driver).
write_refused() {
  local out rc
  log "+ dd if=/dev/urandom of=$dev $* (expecting failure)"
  out=$(bounded 60 dd if=/dev/urandom of=$dev "$@" status=none 2>&1)
  rc=$?
  log "  dd: exit $rc: $out"
  ((rc != 124)) || fail "the write hung"
  ((rc != 0)) || fail "a write to the read-only device succeeded"
  grep -qE 'Input/output error|Read-only file system|Operation not permitted' <<<"$out" ||
    fail "the write failed, but not with EIO, EROFS or EPERM"
}
write_refused bs=4k count=1 oflag=direct conv=notrunc
write_refused bs=1M count=4 seek=2 oflag=direct,sync conv=notrunc
write_refused bs=4k count=1 conv=fsync,notrunc
[[ $(sha256sum <"$img") == "$sum" ]] || fail "the read-only export's backing file changed"
log "  the backing file is unchanged"

log "a read-only ram export: no PUSH_WRITES, writes refused"
must "$UBLK" del -n 0
wait_gone $dev
rdma_add 0 roram -q 2
jq -e '.read_only and all(.queues[].stats.target; .push_writes == false and .pushed_writes == 0)' <(ublk_json 0) \
  >/dev/null || fail "the read-only ram export granted PUSH_WRITES: $(ublk_json 0 | jq -c '[.queues[].stats.target.push_writes]')"
write_refused bs=4k count=1 oflag=direct conv=notrunc
[[ $(serve_counter roram writes) == 0 ]] || fail "a WRITE reached the read-only ram export"

log "the other export of the server is writable"
rdma_add 1 rw
[[ $(blockdev --getro /dev/ublkb1) == 0 ]] || fail "/dev/ublkb1 (rw export) is read-only"
must dd if="$img" of=/dev/ublkb1 bs=1M oflag=direct status=none
[[ $(dd if=/dev/ublkb1 iflag=direct bs=1M status=none | sha256sum) == "$sum" ]] || fail "rw export: data differs"
# 4k writes (the same data again) are small enough to be pushed; the 1M ones above were fetched.
must dd if="$img" of=/dev/ublkb1 bs=4k count=1024 oflag=direct status=none
[[ $(dd if=/dev/ublkb1 iflag=direct bs=1M status=none | sha256sum) == "$sum" ]] || fail "rw export: data differs after 4k writes"
ublk_json 1 | jq -e 'all(.queues[].stats.target; .push_writes)' >/dev/null ||
  fail "the writable ram export did not grant PUSH_WRITES: $(ublk_json 1 | jq -c '[.queues[].stats.target.push_writes]')"
(($(ublk_json 1 | jq '[.queues[].stats.target.pushed_writes] | add') > 0)) ||
  fail "the writable ram export took no pushed WRITEs"
must "$UBLK" del -n 1
must "$UBLK" del -n 0
serve_stop
