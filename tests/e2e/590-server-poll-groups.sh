#!/usr/bin/env bash
# One server, 16 client devices, 2 poll group threads (serve --threads 2): 12 ram exports and 4
# file exports, each its own `add -t rdma` with 2 queues x 4 connections (128 connections in
# all). fio writes and verifies (crc32c, bs 4k..256k, QD 16) on all 16 at once with 0 errors.
# The server's threads do not grow with its clients (the same count with 1 device and with
# 16), the groups share the connections evenly (balanced at accept), its memory is the sum of
# what it granted (linear in the devices), and when the devices go every connection leaves its
# group; then a SIGTERM under fio on the 4 file devices drains and stops the server cleanly, and
# a new server takes them back with no IO error (a ram export's client would refuse a new
# server's memory as other storage).
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq
setup_rxe

exports=()
for i in $(seq 0 11); do exports+=(--export "r$i=ram:32M"); done
for i in 12 13 14 15; do
  truncate -s 32M "$E2E_WORK/f$i.img"
  exports+=(--export "f$i=file:$E2E_WORK/f$i.img")
done
serve_start --threads 2 "${exports[@]}"

export_of() { (($1 < 12)) && echo "r$1" || echo "f$1"; }
# The server's threads: its main thread, the poll groups and whatever the libraries started;
# not io_uring's kernel workers (iou-wrk-*, for the file exports), which the kernel adds and
# retires as the IO needs them.
serve_thread_names() { cat /proc/"$E2E_SERVE_PID"/task/*/comm | grep -v '^iou-' | sort | uniq -c | tr -s ' \n' ' '; }
serve_threads() { cat /proc/"$E2E_SERVE_PID"/task/*/comm | grep -vc '^iou-'; }
memory() { serve_stats wait | jq '.memory_bytes'; }

rdma_add 0 r0 -q 2 -d 32
threads_one=$(serve_threads)
mem_ram=$(memory)
log "1 device: the server has $threads_one threads ($(serve_thread_names)) and grants $mem_ram bytes"
serve_stats wait | jq -e '(.poll_groups | length) == 2 and ([.poll_groups[].connections] | add) == 8' >/dev/null ||
  fail "the server does not run 2 poll groups holding the 8 connections: $(serve_stats | jq -c '.poll_groups')"
rdma_add 12 f12 -q 2 -d 32
mem_file=$(($(memory) - mem_ram))

for i in $(seq 1 11) 13 14 15; do rdma_add "$i" "$(export_of "$i")" -q 2 -d 32; done
stats=$(serve_stats wait)
jq -e '(.poll_groups | length) == 2 and ([.poll_groups[].connections] | add) == 128 and
    (.connections | length) == 128 and ([.poll_groups[].connections] | max - min) <= 1' <<<"$stats" >/dev/null ||
  fail "128 connections are not spread evenly over 2 poll groups: $(jq -c '.poll_groups' <<<"$stats")"
threads=$(serve_threads)
((threads == threads_one)) ||
  fail "the server's threads grew from $threads_one (1 device) to $threads (16 devices): $(serve_thread_names)"
((threads <= 2 + 3)) || fail "the server runs $threads threads with --threads 2"
mem=$(jq '.memory_bytes' <<<"$stats")
((mem == 12 * mem_ram + 4 * mem_file)) ||
  fail "the server's memory ($mem bytes) is not 12 ram devices x $mem_ram + 4 file devices x $mem_file"
log "16 devices: $threads threads, $mem bytes granted ($mem_ram per ram device, $mem_file per file device)"

jobs=()
for i in $(seq 0 15); do jobs+=(--name="dev$i" --filename="/dev/ublkb$i"); done
fio_run verify-16 --rw=randwrite --bsrange=4k-256k --iodepth=16 --size=16M --verify=crc32c \
  --verify_fatal=1 --do_verify=1 "${jobs[@]}"
for i in $(seq 0 15); do no_io_errors "$i"; done
# (A ram export's clients move small IO by themselves, and a queue fio does not run on may send
# nothing: not every connection serves commands, but every export and every group does.)
serve_stats wait | jq -e '[.connections | group_by(.export)[] | map(.commands) | add] | length == 16 and all(. > 0)' \
  >/dev/null || fail "an export served no command: $(serve_stats | jq -c '[.connections[] | {export, commands}]')"
serve_stats | jq -e '[.connections | group_by(.poll_group)[] | map(.commands) | add] | length == 2 and all(. > 0)' \
  >/dev/null || fail "a poll group served no command: $(serve_stats | jq -c '[.connections[] | {poll_group, commands}]')"

for i in $(seq 0 11); do must "$UBLK" del -n "$i"; done
wait_until 20 "the 96 connections of the deleted devices to leave their groups" \
  eval '[[ $(serve_stats | jq "[.poll_groups[].connections] | add") == 32 ]]'

log "SIGTERM under fio on the 4 file devices left: the groups drain their connections and the server"
log "exits 0; a new server (2 groups again) takes the devices back and fio ends without an error"
jobs=()
for i in 12 13 14 15; do jobs+=(--name="dev$i" --filename="/dev/ublkb$i"); done
fio "${E2E_FIO_COMMON[@]}" --rw=randrw --bs=4k --iodepth=16 --time_based --runtime=20 "${jobs[@]}" \
  >"$E2E_LOG_DIR/under-stop.fio" 2>&1 &
fio_pid=$!
defer kill "$fio_pid"
nap 3
serve_stop
grep -q 'serving with 2 poll group thread(s)' "$E2E_SERVE_LOG" || fail "the server did not say it runs 2 poll groups"
serve_start --threads 2 "${exports[@]}"
wait_until 30 "the 4 devices to reconnect (32 connections)" \
  eval '[[ $(serve_stats | jq "[.poll_groups[].connections] | add") == 32 ]]'
wait "$fio_pid"
fio_check "$E2E_LOG_DIR/under-stop.fio" $? || fail "fio across the server's stop and restart failed"
no_io_errors 12 13 14 15
serve_stop
