#!/usr/bin/env python3
"""ci/lib/bench-report.py --raw DIR --out DIR: the host half of ci/bench.

Reads what ci/lib/bench-guest wrote (context.json, host.json, perftest/*.client.txt,
contenders.jsonl, runs.jsonl, runs/*.fio.json, runs/*.cpu, runs/*.counters[01].json) and writes
  OUT/bench.json  every number with its context: per-run values and medians,
  OUT/bench.md    the tables (ratios against nvme-rdma), the goals and the gap to each, and
                  with ci/bench --baseline-bin each ublk-rdma contender against its -base twin,
  OUT/bench.png   latency, IOPS and bandwidth bars per contender (gnuplot).
Exit status: 0 when every contender produced every number, 1 otherwise (the files are
written either way), 2 when the raw directory is unusable.
Standard library only (runs on Debian's python3).
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys

from bench_common import (BASELINE, BUSY_FIELDS, PERFTEST, QD1, RDMA_MODES, RR, RW, SR, SW, TWIN, fmt,
                          fmt_ratio, median, ratio)
from bench_markdown import write_markdown


def load_jsonl(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    return out


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def parse_perftest(text):
    """The result row of perftest's client report (its --out_json file is not valid JSON)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("#bytes"):
            header = re.split(r"\s{2,}|\t+", line.strip())
            for row in lines[i + 1:]:
                vals = row.split()
                if vals and re.match(r"^\d+$", vals[0]):
                    nums = [float(v) for v in vals]
                    res = {"bytes": int(nums[0]), "iterations": int(nums[1])}
                    if "t_avg[usec]" in line:  # latency test
                        names = ["t_min_us", "t_max_us", "t_typical_us", "t_avg_us", "t_stdev_us",
                                 "p99_us", "p99_9_us"]
                    else:  # bandwidth test: perftest's MB is 2^20 bytes
                        names = ["bw_peak_mib_s", "bw_avg_mib_s", "msg_rate_mpps"]
                    for n, v in zip(names, nums[2:]):
                        res[n] = v
                    res["header"] = header
                    return res
    return None


def interpolate(samples, t):
    """Counters at time t, linearly between the two samples around it (clamped at the ends)."""
    if not samples:
        return None
    if t <= samples[0][0]:
        return samples[0][1]
    if t >= samples[-1][0]:
        return samples[-1][1]
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return [a + (b - a) * f for a, b in zip(v0, v1)]
    return samples[-1][1]


def cpu_for_run(cpu_path, t_start, t_end, clk_tck, npids):
    samples = []
    try:
        with open(cpu_path) as f:
            for line in f:
                vals = line.split()
                if len(vals) < 11:
                    continue
                samples.append((float(vals[0]), [float(v) for v in vals[1:]]))
    except OSError:
        return None
    if len(samples) < 2 or t_end <= t_start:
        return None
    a = interpolate(samples, t_start)
    b = interpolate(samples, t_end)
    d = [y - x for x, y in zip(a, b)]
    busy = sum(d[i] for i in BUSY_FIELDS) / clk_tck
    total = sum(d[:8]) / clk_tck
    own = sum(d[10:10 + npids]) / clk_tck if npids else None
    return {"guest_busy_cpu_s": busy, "guest_total_cpu_s": total, "own_cpu_s": own,
            "samples": len(samples), "window_s": t_end - t_start}


def fio_metrics(fio):
    j = fio["jobs"][0]
    rd, wr = j["read"], j["write"]
    d = rd if rd["total_ios"] >= wr["total_ios"] else wr
    ios = rd["total_ios"] + wr["total_ios"]
    runtime_ms = max(rd.get("runtime", 0), wr.get("runtime", 0))
    lat = d["lat_ns"]
    pct = lat.get("percentile", {})

    def p(key):
        for k, v in pct.items():
            if abs(float(k) - key) < 1e-6:
                return v / 1000.0
        return None

    return {
        "iops": rd["iops"] + wr["iops"],
        "mib_s": (rd["bw_bytes"] + wr["bw_bytes"]) / 1048576.0,
        "lat_mean_us": lat["mean"] / 1000.0,
        "lat_p50_us": p(50.0),
        "lat_p99_us": p(99.0),
        "total_ios": ios,
        "runtime_ms": runtime_ms,
        "error": j.get("error", 0),
        "end_epoch_s": fio.get("timestamp_ms", 0) / 1000.0,
    }


def is_high_water(counter):
    """max_inflight, target.sq_depth_max, ...: a mark, neither summed over queues nor differenced."""
    return "max" in counter


def queue_counters(snapshot):
    """{counter: value} of a `list --json` snapshot, summed over the queues (high-water marks: the
    largest); the target's counters are prefixed "target.". Flags and non-numbers are left out."""
    if not isinstance(snapshot, list) or not snapshot:
        return None
    total = {}

    def add(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return
        if is_high_water(key):
            total[key] = max(total.get(key, 0), v)
        else:
            total[key] = total.get(key, 0) + v

    for q in snapshot[0].get("queues", []):
        st = q.get("stats") or {}
        for k, v in st.items():
            if k == "target" and isinstance(v, dict):
                for tk, tv in v.items():
                    add("target." + tk, tv)
            else:
                add(k, v)
    return total


def counters_for_run(before, after):
    """What the daemon counted during one run: after - before (high-water marks: after's)."""
    b, a = queue_counters(before), queue_counters(after)
    if a is None:
        return None
    b = b or {}
    return {k: (v if is_high_water(k) else v - b.get(k, 0)) for k, v in a.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw, out = args.raw, args.out
    os.makedirs(out, exist_ok=True)

    ctx = load_json(os.path.join(raw, "context.json"), {}) or {}
    host = load_json(os.path.join(raw, "host.json"), {}) or {}
    fatal = load_json(os.path.join(raw, "fatal.json"))
    clk = ctx.get("clk_tck", 100) or 100
    jobs = ctx.get("jobs", [])
    job_names = [j["name"] for j in jobs] or [SW, RW, QD1, RR, SR]
    problems = []
    if fatal:
        problems.append(fatal.get("fatal", "the guest run failed"))
    if not ctx:
        problems.append("no context.json: the guest side did not run (see console.log)")

    # Transport limit.
    transport = {}
    for name in PERFTEST:
        path = os.path.join(raw, "perftest", name + ".client.txt")
        res = None
        if os.path.exists(path):
            with open(path, errors="replace") as f:
                res = parse_perftest(f.read())
        if res is None:
            transport[name] = {"status": "FAILED", "error": "no result in the perftest output"}
            problems.append(f"perftest {name}: no result")
        else:
            res["status"] = "ok"
            transport[name] = res

    # Contenders and runs.
    contenders = {}
    order = ctx.get("contenders", [])
    for c in load_jsonl(os.path.join(raw, "contenders.jsonl")):
        err = c["error"] or ("" if c["status"] == "ok" else f"unknown error (see raw/logs/{c['name']}.log)")
        contenders[c["name"]] = {"status": c["status"], "error": err, "device": c["device"],
                                 "note": c["note"], "jobs": {}}
        if c["name"] not in order:
            order.append(c["name"])
    for c in order:
        if c not in contenders:
            contenders[c] = {"status": "FAILED", "error": "the guest run ended before this contender was reported",
                             "device": "", "note": "", "jobs": {}}
    for r in load_jsonl(os.path.join(raw, "runs.jsonl")):
        c = contenders.setdefault(r["contender"], {"status": "FAILED", "error": "not in contenders.jsonl",
                                                   "device": "", "note": "", "jobs": {}})
        run = {"rep": r["rep"], "status": r["status"], "error": r["error"]}
        if r["status"] == 0:
            fio = load_json(os.path.join(raw, "runs", r["fio_json"]))
            if fio is None:
                run["status"] = -1
                run["error"] = "unreadable fio JSON"
            else:
                m = fio_metrics(fio)
                run.update(m)
                npids = len(r["pids"].split())
                t_end = m["end_epoch_s"] or r["t_end"]
                cpu = cpu_for_run(os.path.join(raw, "runs", r["cpu_samples"]),
                                  t_end - m["runtime_ms"] / 1000.0, t_end, clk, npids)
                if cpu and m["total_ios"]:
                    run["guest_cpu_s_per_io"] = cpu["guest_busy_cpu_s"] / m["total_ios"]
                    run["own_cpu_s_per_io"] = (cpu["own_cpu_s"] / m["total_ios"]
                                               if cpu["own_cpu_s"] is not None else None)
                    run["cpu"] = cpu
                if r.get("counters_after"):
                    before = load_json(os.path.join(raw, "runs", r["counters_before"])) if r.get("counters_before") else None
                    ctr = counters_for_run(before, load_json(os.path.join(raw, "runs", r["counters_after"])))
                    if ctr:
                        run["ublk_counters"] = ctr
        c["jobs"].setdefault(r["job"], {"runs": []})["runs"].append(run)

    metric_keys = ["iops", "mib_s", "lat_mean_us", "lat_p50_us", "lat_p99_us",
                   "guest_cpu_s_per_io", "own_cpu_s_per_io"]
    for name, c in contenders.items():
        for jn in job_names:
            jr = c["jobs"].setdefault(jn, {"runs": []})
            ok = [r for r in jr["runs"] if r["status"] == 0]
            jr["median"] = {k: median([r.get(k) for r in ok]) for k in metric_keys}
            jr["ok_runs"] = len(ok)
            if not ok:
                if c["status"] == "ok":
                    c["status"] = "FAILED"
                    c["error"] = c["error"] or f"no successful run of {jn}"
        if c["status"] != "ok":
            problems.append(f"{name}: FAILED: {c['error']}")

    def med(c, job, key):
        cc = contenders.get(c)
        if not cc:
            return None
        return cc["jobs"].get(job, {}).get("median", {}).get(key)

    def by_rep(c, job, key):
        """{round: value} of the successful runs of one contender's job."""
        cc = contenders.get(c)
        if not cc:
            return {}
        return {r["rep"]: r.get(key) for r in cc["jobs"].get(job, {}).get("runs", [])
                if r["status"] == 0 and r.get(key) is not None}

    # Goals (issue 4), per completion mode.
    wbw = transport.get("ib_write_bw", {}).get("bw_avg_mib_s")
    goals = []
    for mname in [m for m in RDMA_MODES if m in contenders]:
        g = {"contender": mname, "checks": []}

        def check(what, value, target, higher_better, unit, value_reps=None, target_reps=None):
            if value is None or target is None:
                g["checks"].append({"goal": what, "value": value, "target": target, "met": None,
                                    "gap": "no number", "rounds": []})
                return
            met = value >= target if higher_better else value <= target
            # The gap as a factor of the goal: what the next change has to win.
            r = value / target if target else float("inf")
            if higher_better:
                gap = f"{r:.2f}x of goal ({fmt(value)} vs >= {fmt(target)} {unit})"
            else:
                gap = f"{r:.2f}x the goal's latency ({fmt(value)} vs <= {fmt(target)} {unit})"
            # The same goal within each round: contenders run back to back in a round, so a
            # round's pair saw the same host; the medians alone hide how often a verdict holds.
            rounds = []
            for rep, v in sorted((value_reps or {}).items()):
                t = target_reps.get(rep) if isinstance(target_reps, dict) else target
                if v is None or not t:
                    continue
                rounds.append({"rep": rep, "value": v, "target": t, "ratio": v / t,
                               "met": v >= t if higher_better else v <= t})
            if rounds:
                rs = [x["ratio"] for x in rounds]
                n_met = sum(1 for x in rounds if x["met"])
                gap += (f"; per round {min(rs):.2f}-{max(rs):.2f}x, met in {n_met} of {len(rounds)}"
                        if len(rounds) > 1 else "")
            g["checks"].append({"goal": what, "value": value, "target": target, "met": met, "gap": gap,
                                "rounds": rounds})

        check("4k randread QD1 mean latency <= nvme-rdma", med(mname, QD1, "lat_mean_us"),
              med(BASELINE, QD1, "lat_mean_us"), False, "us",
              by_rep(mname, QD1, "lat_mean_us"), by_rep(BASELINE, QD1, "lat_mean_us"))
        for job, label in ((RR, "randread"), (RW, "randwrite")):
            v = med(mname, job, "iops")
            n = med(BASELINE, job, "iops")
            b = med("nbd", job, "iops")
            check(f"4k {label} QD32 IOPS >= 1.0x nvme-rdma", v, n, True, "IOPS",
                  by_rep(mname, job, "iops"), by_rep(BASELINE, job, "iops"))
            check(f"4k {label} QD32 IOPS >= 2x NBD", v, 2 * b if b else None, True, "IOPS",
                  by_rep(mname, job, "iops"), {k: 2 * x for k, x in by_rep("nbd", job, "iops").items()})
        check("128k seq read >= 0.85x ib_write_bw", med(mname, SR, "mib_s"),
              0.85 * wbw if wbw else None, True, "MiB/s", by_rep(mname, SR, "mib_s"),
              0.85 * wbw if wbw else None)
        goals.append(g)
    twins = baseline_twins(contenders, order, jobs, job_names, by_rep, med)
    null_vs_brd = {job: ratio(med("ublk-null", job, "iops"), med("brd", job, "iops"))
                   for job in (QD1, RR, RW, SR, SW)}
    # Our ublk layer against the kernel's own selftest server, both with a null target; at QD1 by
    # mean latency (kublk's over ours: above 1 is ours faster).
    null_vs_kublk = {job: ratio(med("ublk-null", job, "iops"), med("kublk-null", job, "iops"))
                     for job in (RR, RW, SR, SW)}
    null_vs_kublk[QD1 + " latency"] = ratio(med("kublk-null", QD1, "lat_mean_us"), med("ublk-null", QD1, "lat_mean_us"))
    # Zero copy against the copy path, and our ublk layer against kublk in each of its modes: per
    # job A's IOPS / B's (QD1: B's mean latency / A's; above 1 = A better), and A's CPU per IO / B's
    # in the 4k randread QD32 run (below 1 = A cheaper).
    def pair(a, b):
        if a not in contenders or b not in contenders:
            return None
        r = {job: ratio(med(a, job, "iops"), med(b, job, "iops")) for job in (RR, RW, SR, SW)}
        r[QD1 + " latency"] = ratio(med(b, QD1, "lat_mean_us"), med(a, QD1, "lat_mean_us"))
        r["CPU per IO (randread QD32)"] = ratio(med(a, RR, "guest_cpu_s_per_io"), med(b, RR, "guest_cpu_s_per_io"))
        return {"a": a, "b": b, "ratios": r}
    pairs = [p for p in (pair("ublk-rdma-shm", "ublk-rdma-file"), pair("ublk-null-shm", "ublk-null"),
                         pair("ublk-null", "kublk-null"), pair("ublk-null-shm", "kublk-null-shm"),
                         pair("ublk-null-shm", "kublk-null-zc"), pair("ublk-null-shm", "kublk-null-autozc"),
                         pair("ublk-rdma-rbd", "rbd-nbd"))
             if p is not None]

    result = {
        "context": {**ctx, "host": host},
        "transport": transport,
        "contenders": contenders,
        "goals": goals,
        "ublk_null_vs_brd_iops": null_vs_brd,
        "ublk_null_vs_kublk_null": null_vs_kublk,
        "pairs": pairs,
        "not_applicable": ctx.get("not_applicable", {}),
        "baseline_twins": twins,
        "baseline": BASELINE,
        "problems": problems,
    }
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump(result, f, indent=1)

    write_markdown(out, result, order, med)
    plot_ok = write_plot(out, result, order, med)
    if not plot_ok:
        problems.append("the plot could not be made (see bench.gnuplot.log)")
    if problems:
        for p in problems:
            print(f"[bench-report] {p}", file=sys.stderr)
        return 1
    return 0


def job_metric(job):
    """The number a job is judged by: (key, label, higher is better)."""
    bs = str(job.get("bs", ""))
    kib = int(bs[:-1]) if bs[:-1].isdigit() and bs[-1:].lower() == "k" else 0
    if job.get("iodepth") == 1 and job.get("numjobs", 1) == 1:
        return "lat_mean_us", "mean latency us", False
    if kib >= 64:
        return "mib_s", "MiB/s", True
    return "iops", "IOPS", True


def baseline_twins(contenders, order, jobs, job_names, by_rep, med):
    """Each contender against its twin of the baseline build, per job: the medians of both, and
    the ratio (this build / baseline) within each round, where the two ran minutes apart at
    most."""
    specs = {j["name"]: j for j in jobs}
    out = []
    for c in order:
        twin = c + TWIN
        if c.endswith(TWIN) or twin not in contenders:
            continue
        for jn in job_names:
            key, label, higher = job_metric(specs.get(jn, {"name": jn}))
            mine, base = by_rep(c, jn, key), by_rep(twin, jn, key)
            rounds = [{"rep": r, "value": mine[r], "base": base[r], "ratio": mine[r] / base[r],
                       "better": mine[r] > base[r] if higher else mine[r] < base[r]}
                      for r in sorted(mine) if r in base and base[r]]
            cmine, cbase = by_rep(c, jn, "guest_cpu_s_per_io"), by_rep(twin, jn, "guest_cpu_s_per_io")
            cpu = [cmine[r] / cbase[r] for r in sorted(cmine) if cbase.get(r)]
            rs = [x["ratio"] for x in rounds]
            out.append({"contender": c, "twin": twin, "job": jn, "metric": key, "label": label,
                        "higher_is_better": higher, "value": med(c, jn, key), "base_value": med(twin, jn, key),
                        "ratio_median": median(rs), "ratio_min": min(rs) if rs else None,
                        "ratio_max": max(rs) if rs else None,
                        "better_rounds": sum(1 for x in rounds if x["better"]), "rounds": rounds,
                        "guest_cpu_per_io_ratio_median": median(cpu)})
    return out



def write_plot(out, res, order, med):
    ctx = res["context"]
    dat = os.path.join(out, "bench.dat")
    nan = "NaN"

    def v(x, scale=1.0):
        return nan if x is None else f"{x * scale:.3f}"

    with open(dat, "w") as f:
        f.write("# label qd1_mean qd1_p50 qd1_p99 rr_kiops rw_kiops sr_mibs sw_mibs\n")
        for c in order:
            label = c + ("\\n(FAILED)" if res["contenders"][c]["status"] != "ok" else "")
            f.write(f"\"{label}\" {v(med(c, QD1, 'lat_mean_us'))} {v(med(c, QD1, 'lat_p50_us'))} "
                    f"{v(med(c, QD1, 'lat_p99_us'))} {v(med(c, RR, 'iops'), 1e-3)} {v(med(c, RW, 'iops'), 1e-3)} "
                    f"{v(med(c, SR, 'mib_s'))} {v(med(c, SW, 'mib_s'))}\n")
    def lo(vals):  # bottom of a log axis: a power of ten below the smallest bar
        vals = [x for x in vals if x is not None and x > 0]
        return 10 ** math.floor(math.log10(min(vals) * 0.5)) if vals else 1

    lat_lo = lo([med(c, QD1, k) for c in order for k in ("lat_mean_us", "lat_p50_us", "lat_p99_us")])
    iops_lo = lo([med(c, j, "iops") and med(c, j, "iops") * 1e-3 for c in order for j in (RR, RW)])
    t = res["transport"]
    wbw = t.get("ib_write_bw", {}).get("bw_avg_mib_s")
    rbw = t.get("ib_read_bw", {}).get("bw_avg_mib_s")
    # The transport's latency floor: the lowest typical (median) latency of the three tests.
    lat_tests = [(t[n]["t_typical_us"], n) for n in ("ib_send_lat", "ib_write_lat", "ib_read_lat")
                 if t.get(n, {}).get("t_typical_us")]
    slat, slat_name = min(lat_tests) if lat_tests else (None, "")
    if slat:
        lat_lo = min(lat_lo, lo([slat]))
    title = (f"ublk-rdma vs peers - kernel {ctx.get('kernel', '?')}, "
             f"{ctx.get('host', {}).get('accelerator', 'tcg').upper()}, {ctx.get('vcpus', '?')} vCPUs, "
             f"rxe MTU {ctx.get('rxe_active_mtu', '?')}, median of {ctx.get('reps', '?')} x {ctx.get('runtime_s', '?')} s "
             f"({ctx.get('mode', '?')} mode)")
    lines = []
    lat_keys = bw_keys = ""
    if slat:
        lines.append(f"set arrow from graph 0, first {slat} to graph 1, first {slat} nohead dt 2 lw 1.5 lc rgb '#444444'")
        lat_keys = f", keyentry with lines dt 2 lw 1.5 lc rgb '#444444' title '{slat_name} typ. {slat:.0f} us'"
    lat_lines = "\n".join(lines)
    lines = []
    if wbw:
        lines.append(f"set arrow from graph 0, first {wbw} to graph 1, first {wbw} nohead dt 2 lw 1.5 lc rgb '#444444'")
        bw_keys += f", keyentry with lines dt 2 lw 1.5 lc rgb '#444444' title 'ib_write_bw {wbw:.1f} MiB/s'"
    if rbw:
        lines.append(f"set arrow from graph 0, first {rbw} to graph 1, first {rbw} nohead dt 3 lw 1.5 lc rgb '#884444'")
        bw_keys += f", keyentry with lines dt 3 lw 1.5 lc rgb '#884444' title 'ib_read_bw {rbw:.1f} MiB/s'"
    bw_lines = "\n".join(lines)
    bw_lo = lo([med(c, j, "mib_s") for c in order for j in (SR, SW)] + [wbw, rbw])
    def plot(columns, keys=""):
        # A column without a single number (a job left out by --jobs) would stop gnuplot; the
        # panel says so instead.
        terms = []
        for col, title, colour, vals in columns:
            if any(x is not None for x in vals):
                src = f"'{dat}' using {col}:xtic(1)" if not terms else f"'' using {col}"
                terms.append(f"{src} title '{title}' lc rgb '{colour}'")
        if not terms:
            return ("set label 'not measured in this run' at graph 0.5, graph 0.5 center\n"
                    "unset logscale y\nunset arrow\nunset xtics\nunset ytics\nset yrange [0:1]\n"
                    "plot 2 notitle\nunset label\nset xtics nomirror font ',10'\nset ytics")
        return "plot " + ", ".join(terms) + keys

    plot_lat = plot([(2 + i, t, col, [med(c, QD1, k) for c in order]) for i, (t, col, k) in enumerate(
        [("mean", "#4477aa", "lat_mean_us"), ("p50", "#66ccee", "lat_p50_us"), ("p99", "#ee6677", "lat_p99_us")])],
        lat_keys)
    plot_iops = plot([(5, "randread", "#228833", [med(c, RR, "iops") for c in order]),
                      (6, "randwrite", "#ccbb44", [med(c, RW, "iops") for c in order])])
    plot_bw = plot([(7, "read", "#aa3377", [med(c, SR, "mib_s") for c in order]),
                    (8, "write", "#bbbbbb", [med(c, SW, "mib_s") for c in order])], bw_keys)
    script = f"""
set terminal pngcairo noenhanced size 1400,1300 font 'DejaVu Sans,10'
set output '{os.path.join(out, 'bench.png')}'
set multiplot layout 3,1 title "{title}" font ',12'
set style data histograms
set style histogram clustered gap 1.5
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top vertical
set format y '%g'
set bmargin 3.5
set lmargin 10
set rmargin 24
set xtics nomirror font ',10'
set title '4k randread QD1 latency (us, lower is better; log scale)'
set logscale y
set yrange [{lat_lo}:*]
{lat_lines}
{plot_lat}
unset logscale y
unset arrow
unset label
set title '4k random IOPS, QD32 x 2 jobs (thousands, higher is better; log scale)'
set logscale y
set yrange [{iops_lo}:*]
{plot_iops}
unset logscale y
set title '128k sequential QD16 (MiB/s, higher is better; log scale; dashed: perftest 64 KiB)'
set logscale y
set yrange [{bw_lo}:*]
{bw_lines}
{plot_bw}
unset multiplot
"""
    gp = os.path.join(out, "bench.gnuplot")
    with open(gp, "w") as f:
        f.write(script)
    with open(os.path.join(out, "bench.gnuplot.log"), "w") as logf:
        rc = subprocess.call(["gnuplot", gp], stdout=logf, stderr=subprocess.STDOUT)
    return rc == 0 and os.path.exists(os.path.join(out, "bench.png"))


if __name__ == "__main__":
    sys.exit(main())
