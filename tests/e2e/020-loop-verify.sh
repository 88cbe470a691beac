#!/usr/bin/env bash
# loop target: fio write-then-verify (crc32c, randwrite, bs 4k..1M, QD 1, 16, 64) with 0 errors,
# on 2 queues; the data is in the backing file afterwards.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

id=0
img=$E2E_WORK/backing.img
truncate -s 96M "$img"
ublk_add $id -t loop -f "$img" -q 2 -d 64
jq -e '.state == "LIVE" and .target.type == "loop"' <(ublk_json $id) >/dev/null ||
  fail "device is not a LIVE loop device"
[[ $(blockdev --getsize64 /dev/ublkb$id) == $((96 << 20)) ]] || fail "/dev/ublkb$id is not 96 MiB"

fio_write_verify verify /dev/ublkb$id 96M

# What the device holds is what the file holds.
must "$UBLK" del -n $id
wait_gone /dev/ublkb$id
log "the backing file holds what was verified"
fio_write_verify verify-file "$img" 96M --verify_only --direct=0
