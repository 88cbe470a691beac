#!/usr/bin/env bash
# rdma target: the server is restarted again and again under fio verify, each SIGTERM coming
# while the clients are still reconnecting to the server started just before (after 0.2 .. 2 s),
# as `systemctl restart` twice in a row does. Every stop must end with exit 0 within the bound
# (a server that has just started, with connections establishing or authenticating, stops like
# any other), and the device must come back LIVE with fio seeing 0 errors and 0 mismatches.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe
img=$E2E_WORK/export.img
truncate -s 64M "$img"
serve_start --export f=file:"$img"

id=0
rdma_add $id f -q 2 -d 64 --reconnect-delay 1
defer cp "$(ublk_json $id | jq -r .log)" "$E2E_LOG_DIR/daemon-$id.log"
verify_fio_start $id restarts 2m

for delay in 0.2 0.5 1 2; do
  serve_stop
  serve_start --export f=file:"$img"
  nap "$delay"
  log "  $delay s after the start: $(ublk_json $id | jq -c '[.queues[].stats.target.connection_states[].state] | group_by(.) | map({(.[0]): length}) | add')"
done
wait_until 60 "every connection to be live again" \
  eval "ublk_json $id | jq -e '.state == \"LIVE\" and .io_state == \"live\"'"
verify_fio_finish $id 180 "the server restarts"
serve_stop
must bounded 60 "$UBLK" del -n $id
wait_gone /dev/ublkb$id 10
no_ublk_devices
