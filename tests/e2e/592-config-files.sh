#!/usr/bin/env bash
# Configuration files alone: a server from `serve --config` and two rdma devices from a device
# table brought up with `up --all`, fio verify on both. The command line wins over the server's
# file. `up` again leaves live devices alone. A device whose daemon is SIGKILLed under fio verify
# is recovered by `up` (what a service's restart runs) with no error and no mismatch. `up
# --foreground` serves a device from its own process (a service's main process) until `down`.
# `down --all` detaches everything, and again finds nothing to do.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq fio
setup_rxe

truncate -s 64M "$E2E_WORK/vol1.img"
cat >"$E2E_WORK/serve.conf" <<CONF
# a server from its file
listen = "$E2E_RDMA_ADDR"
threads = 1
export = ["vol0=ram:64M", "vol1=file:$E2E_WORK/vol1.img"]
stats = "$E2E_WORK/overridden.json"
CONF
cat >"$E2E_WORK/devices.conf" <<CONF
# the devices of this host
[vol0]
type = "rdma"
traddr = "$E2E_RDMA_ADDR"
export = "vol0"
number = 0
queues = 2

[vol1]
type = "rdma"
traddr = ["$E2E_RDMA_ADDR"]
export = "vol1"
number = 1
CONF
table=(--config "$E2E_WORK/devices.conf")

stats=$E2E_WORK/serve.stats.json
log "+ ublk-rdma serve --config serve.conf --threads 2 --stats $stats"
"$UBLK" serve --config "$E2E_WORK/serve.conf" --threads 2 --stats "$stats" >"$E2E_LOG_DIR/serve.log" 2>&1 &
serve_pid=$!
defer serve_kill "$serve_pid"
wait_until 20 "the server to listen" grep -q 'listening on' "$E2E_LOG_DIR/serve.log"
wait_until 10 "the stats file" test -s "$stats"
[[ ! -e $E2E_WORK/overridden.json ]] || fail "the file's stats path was used although the command line gave one"
[[ $(jq '.poll_groups | length' "$stats") == 2 ]] || fail "--threads 2 on the command line did not win over the file's 1"
log "  the command line won: stats at $stats, 2 poll groups"

defer ublk_del_quiet 0
defer ublk_del_quiet 1
must "$UBLK" up "${table[@]}" --all
wait_for_blockdev /dev/ublkb0
wait_for_blockdev /dev/ublkb1
[[ $(ublk_json 0 | jq -r '.name + " " + (.nr_hw_queues | tostring)') == "vol0 2" ]] ||
  fail "device 0 is not the table's vol0 with 2 queues: $(ublk_json 0 | jq -c '{name, nr_hw_queues}')"
[[ $(ublk_json 1 | jq -r .name) == vol1 ]] || fail "device 1 is not the table's vol1"
ublk_json 0 | jq -e '.flag_names | index("USER_RECOVERY")' >/dev/null || fail "a table device did not get -r 1"
fio_write_verify vol0 /dev/ublkb0 24M &
v0=$!
fio_write_verify vol1 /dev/ublkb1 24M
wait "$v0" || fail "fio verify on vol0 failed"
no_io_errors 0 1

pids="$(ublk_daemon_pid 0) $(ublk_daemon_pid 1)"
must "$UBLK" up "${table[@]}" --all
[[ "$(ublk_daemon_pid 0) $(ublk_daemon_pid 1)" == "$pids" ]] || fail "a second up --all replaced live daemons"
log "  up again: the live devices were left alone"

log "vol0's daemon is SIGKILLed under fio verify; up recovers it"
verify_fio_start 0 vol0-crash 3m
old=$(ublk_daemon_pid 0)
log "+ kill -9 $old"
kill -9 "$old"
wait_pid_gone "$old" 10
wait_state 0 QUIESCED 20
must "$UBLK" up "${table[@]}" vol0
wait_state 0 LIVE 30
[[ $(ublk_daemon_pid 0) != "$old" ]] || fail "no new daemon after up"
verify_fio_finish 0 300 "the daemon's SIGKILL and up"

log "up --foreground serves vol1 from its own process until down"
must "$UBLK" down "${table[@]}" vol1
wait_gone /dev/ublkb1
"$UBLK" up "${table[@]}" --foreground vol1 >"$E2E_LOG_DIR/up-foreground.log" 2>&1 &
fg=$!
defer kill -9 "$fg"
wait_for_blockdev /dev/ublkb1 30
wait_state 1 LIVE 30
[[ $(ublk_daemon_pid 1) == "$fg" ]] || fail "the device's daemon is not the foreground up process ($fg)"
fio_write_verify vol1-fg /dev/ublkb1 12M
must "$UBLK" down "${table[@]}" vol1
wait_pid_gone "$fg" 20
wait "$fg" || fail "up --foreground exited with status $? after down"

must "$UBLK" down "${table[@]}" --all
no_ublk_devices
must "$UBLK" down "${table[@]}" --all
log "  down --all again: nothing to do"
serve_stop "$serve_pid"
