#!/usr/bin/env bash
# Metrics: `stats --prometheus` for a null and an rdma device (file export) and the server's
# `--stats-format prometheus` file, both parsed by Python's prometheus_client (the parser
# Prometheus' own tools follow). fio does a known number of 4 KiB READs and WRITEs on each device
# (merges off); the queues' latency histograms count that many more of each op (read and write
# apart), each histogram's buckets are cumulative and its _count is its +Inf bucket; the
# server's accepted READ and WRITE commands for the export grow by as many. `stats -o` replaces
# a .prom file; list --json shows the histograms too. Bad input: `stats -n` of a missing device
# exits 1 and `serve --stats-format bogus` exits 2.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd fio jq

PY=
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import prometheus_client.parser' 2>/dev/null; then
    PY=$p
    break
  fi
done
[[ -n $PY ]] || fail "python3 with prometheus_client is not installed (python3-prometheus-client: run ci/bootstrap)"

# check_text FILE PREFIX: parses a text exposition; fails unless every metric starts with PREFIX
# and every histogram is cumulative with _count equal to its +Inf bucket. Prints a JSON summary:
# {"latency": {"DEVICE": {"OP": count summed over queues}}, "samples": {"NAME{k=v,...}": value}}.
cat >"$E2E_WORK/check.py" <<'EOF'
import json, sys
from collections import defaultdict
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
prefix = sys.argv[2]
latency = defaultdict(lambda: defaultdict(int))
samples = {}
for fam in text_string_to_metric_families(text):
    assert fam.name.startswith(prefix), f"metric {fam.name} lacks the prefix {prefix}"
    if fam.type == "counter":
        assert all(s.name.endswith("_total") for s in fam.samples), fam.name
    for s in fam.samples:
        key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
        samples[key] = s.value
    if fam.type != "histogram":
        continue
    series = defaultdict(lambda: {"buckets": [], "count": None, "sum": None})
    for s in fam.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        key = tuple(sorted(labels.items()))
        if s.name.endswith("_bucket"):
            series[key]["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            series[key]["count"] = s.value
        elif s.name.endswith("_sum"):
            series[key]["sum"] = s.value
    for key, h in series.items():
        b = h["buckets"]
        assert b and b[-1][0] == float("inf"), f"{fam.name}{key}: no +Inf bucket"
        assert all(b[i][0] < b[i + 1][0] for i in range(len(b) - 1)), f"{fam.name}{key}: le not ascending"
        assert all(b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)), f"{fam.name}{key}: buckets not cumulative"
        assert h["count"] == b[-1][1], f"{fam.name}{key}: _count {h['count']} != +Inf bucket {b[-1][1]}"
        assert h["sum"] is not None and h["sum"] >= 0, f"{fam.name}{key}: no _sum"
        labels = dict(key)
        if fam.name == "ublk_rdma_queue_latency_seconds":
            latency[labels["device"]][labels["op"]] += int(h["count"])
print(json.dumps({"latency": latency, "samples": samples}))
EOF

# client_metrics TAG: `stats --prometheus` saved as TAG.prom and checked; prints the summary.
client_metrics() {
  "$UBLK" stats --prometheus >"$E2E_WORK/$1.prom" || fail "stats --prometheus exited with $?"
  "$PY" "$E2E_WORK/check.py" "$E2E_WORK/$1.prom" ublk_rdma_ || fail "stats --prometheus: bad text ($E2E_WORK/$1.prom)"
}

# server_metrics TAG: the server's metrics file after two more rewrites, saved and checked.
server_metrics() {
  local t n i
  for ((n = 0; n < 2; n++)); do
    t=$(stat -c %y "$E2E_SERVE_STATS" 2>/dev/null)
    for ((i = 0; i < 25; i++)); do
      nap 0.2
      [[ $(stat -c %y "$E2E_SERVE_STATS" 2>/dev/null) != "$t" ]] && break
    done
  done
  cp "$E2E_SERVE_STATS" "$E2E_WORK/$1.prom" || fail "the server wrote no stats file"
  "$PY" "$E2E_WORK/check.py" "$E2E_WORK/$1.prom" ublk_rdma_server_ || fail "the server's metrics: bad text ($E2E_WORK/$1.prom)"
}

# grew BEFORE AFTER JQ_PATH WANT WHAT: the value at JQ_PATH grew by WANT (up to 5% + 64 more,
# for the odd IO of udev or the page cache).
grew() {
  local before after d
  before=$(jq -r "$3 // 0" <<<"$1") after=$(jq -r "$3 // 0" <<<"$2")
  d=$((${after%.*} - ${before%.*}))
  log "  $5: $before -> $after (+$d, fio did $4)"
  ((d >= $4 && d <= $4 + $4 / 20 + 64)) || fail "$5 grew by $d, expected $4"
}

setup_rxe
truncate -s 64M "$E2E_WORK/f0.img"
# (The stats file keeps serve_start's name, *.json; its text is the Prometheus format.)
serve_start --export f0=file:"$E2E_WORK/f0.img" --stats-format prometheus
ublk_add 0 -t null -q 2 -d 32 --size 256M
rdma_add 1 f0 -q 2 -d 32
for id in 0 1; do echo 2 >/sys/block/ublkb$id/queue/nomerges; done

jq -e '.[0].queues[0].stats.latency | (.bucket_le_us | length) == 26 and (.read.buckets | length) == 27' \
  <(ublk list -n 0 --json) >/dev/null || fail "list --json shows no latency histogram for queue 0"

c0=$(client_metrics before)
s0=$(server_metrics server-before)
jq -e '.samples["ublk_rdma_device_info{device=1,state=LIVE,target=rdma}"] == 1' <<<"$c0" >/dev/null ||
  fail "no ublk_rdma_device_info for the LIVE rdma device: $(grep device_info "$E2E_WORK/before.prom")"
jq -e '.samples["ublk_rdma_server_export_connections{export=f0}"] == 8' <<<"$s0" >/dev/null ||
  fail "the server does not count the 8 connections to f0 (2 queues x 4): $(grep 'export_connections{' "$E2E_WORK/server-before.prom")"

reads=1024 writes=512  # 4 MiB and 2 MiB of 4 KiB IOs
for id in 0 1; do
  fio_run "read$id" --filename=/dev/ublkb$id --rw=randread --bs=4k --io_size=$((reads * 4))k --size=32M --iodepth=8
  fio_run "write$id" --filename=/dev/ublkb$id --rw=randwrite --bs=4k --io_size=$((writes * 4))k --size=32M --iodepth=8
done

c1=$(client_metrics after)
s1=$(server_metrics server-after)
for id in 0 1; do
  grew "$c0" "$c1" ".latency[\"$id\"].read" $reads "device $id: READs in ublk_rdma_queue_latency_seconds"
  grew "$c0" "$c1" ".latency[\"$id\"].write" $writes "device $id: WRITEs in ublk_rdma_queue_latency_seconds"
done
grew "$s0" "$s1" '.samples["ublk_rdma_server_accepted_commands_total{export=f0,op=read}"]' $reads \
  "the server's READ commands for f0"
grew "$s0" "$s1" '.samples["ublk_rdma_server_accepted_commands_total{export=f0,op=write}"]' $writes \
  "the server's WRITE commands for f0"
jq -e '.samples["ublk_rdma_queue_rdma_connections{device=1,queue=0,state=live}"] == 4' <<<"$c1" >/dev/null ||
  fail "queue 0 of the rdma device does not count 4 live connections: $(grep 'rdma_connections{' "$E2E_WORK/after.prom")"
jq -e '[.samples | to_entries[] | select(.key | startswith("ublk_rdma_queue_bytes_total{device=1,op=read"))
    | .value] | add >= 4194304' <<<"$c1" >/dev/null || fail "ublk_rdma_queue_bytes_total does not count the READs"

# A scrape file replaced atomically, as the textfile collector reads it.
must "$UBLK" stats --prometheus -n 1 -o "$E2E_WORK/ublk.prom"
"$PY" "$E2E_WORK/check.py" "$E2E_WORK/ublk.prom" ublk_rdma_ >/dev/null || fail "stats -o wrote a bad file"
grep -q '^ublk_rdma_queue_ios_total{device="1",queue="0"}' "$E2E_WORK/ublk.prom" || fail "stats -n 1 -o: no queue counters"
if grep -q 'device="0"' "$E2E_WORK/ublk.prom"; then fail "stats -n 1 shows device 0"; fi
[[ ! -e $E2E_WORK/ublk.prom.tmp ]] || fail "stats -o left its temporary file"
must "$UBLK" stats -n 0 >"$E2E_WORK/stats.json"
jq -e '.[0].queues | length == 2 and all(.latency.read.count >= 0)' "$E2E_WORK/stats.json" >/dev/null ||
  fail "stats (JSON) does not show the queues' latency"

# Bad input.
expect_status 1 "$UBLK" stats -n 99999 --prometheus
err=$("$UBLK" stats -n 99999 2>&1 >/dev/null)
[[ $err == *"does not exist"* ]] || fail "stats -n 99999 says '$err', not that the device does not exist"
expect_status 2 "$UBLK" serve --listen 127.0.0.1 --export v=ram:1M --stats "$E2E_WORK/x.prom" --stats-format bogus
expect_status 2 "$UBLK" serve --listen 127.0.0.1 --export v=ram:1M --stats-format prometheus
