"""The bench.md report of ci/bench (written by ci/lib/bench-report.py from its results)."""
import os

from bench_common import BASELINE, QD1, RR, RW, SR, SW, TWIN, fmt, fmt_ratio, median


def twin_table(res):
    twins = res.get("baseline_twins") or []
    if not twins:
        return []
    ctx = res["context"]
    host = ctx.get("host", {})
    base = host.get("baseline_bin") or ctx.get("baseline_bin") or "?"
    sha = host.get("baseline_sha256")
    mine_sha = host.get("binary_sha256")
    L = ["", "### Against the baseline build (same boot)", "",
         f"Each ublk-rdma contender against its twin `NAME{TWIN}`, served and attached by the baseline "
         f"build `{base}`" + (f" (sha256 {sha}...)" if sha else "")
         + (" instead of this one" if not mine_sha or mine_sha != sha
            else ", the same binary as this one (an A/A run: what follows is this boot's noise)")
         + (f" (sha256 {mine_sha}...)" if mine_sha and mine_sha != sha else "")
         + ", with storage of its own, in the same rounds: right after its contender in odd rounds, "
         "right before it in even ones. Ratio: this build / the baseline within each round (the two "
         "runs of a round are minutes apart at most); its median over the rounds, their range, and in "
         "how many rounds this build was the better one (latency: lower is better; the rest: higher). "
         "CPU: the guest's busy CPU time per IO, this build / the baseline, median over the rounds.", "",
         "| contender | job | metric | this build | baseline | ratio (median) | per round | better in | CPU/IO ratio |",
         "|---|---|---|---|---|---|---|---|---|"]
    for t in twins:
        n = len(t["rounds"])
        rng = (f"{fmt_ratio(t['ratio_min'])}-{fmt_ratio(t['ratio_max'])}" if n > 1
               else fmt_ratio(t["ratio_min"]) if n else "-")
        L.append(f"| **{t['contender']}** | {t['job']} | {t['label']} | {fmt(t['value'])} | {fmt(t['base_value'])} "
                 f"| {fmt_ratio(t['ratio_median'])} | {rng} | {t['better_rounds'] if n else '-'} of {n} "
                 f"| {fmt_ratio(t['guest_cpu_per_io_ratio_median'])} |")
    return L


def counter_table(res, order):
    """What the ublk daemons counted in the 4k jobs (medians over the rounds of per-run ratios)."""
    cols = [("IOs per loop pass", "ios", "loop_passes"), ("IOs per sleep", "ios", "idle_sleeps"),
            ("IOs per doorbell", "ios", "target.doorbells"), ("IOs per CQ wakeup", "ios", "target.cq_events"),
            ("commands to the server per IO", "target.commands", "ios"),
            ("share zero copy", "zero_copy_ios", "ios")]
    rows = []
    for c in order:
        if not c.startswith("ublk-"):
            continue
        for job in (QD1, RR, RW):
            runs = [r["ublk_counters"] for r in res["contenders"][c]["jobs"].get(job, {}).get("runs", [])
                    if r.get("ublk_counters")]
            if not runs:
                continue
            cells = [c, job]
            for _, num, den in cols:
                vals = [r[num] / r[den] for r in runs if r.get(den) and num in r]
                cells.append(fmt(median(vals)) if vals else "-")
            rows.append(cells)
    if not rows:
        return []
    L = ["", "What the ublk daemons counted during the 4k runs (`list --json`, summed over the queues; "
         "median over the rounds): how many requests each pass of a queue's loop, each sleep, each "
         "ibv_post_send and each completion-channel wakeup served, how many commands reached the "
         "server per request (pulled READs and fenced WRITEs send none), and which share of the "
         "requests was zero copy (data in an add --shmem-buf file; the rest the driver copied).", "",
         "| contender | job | " + " | ".join(h for h, _, _ in cols) + " |",
         "|---|---|" + "---|" * len(cols)]
    for cells in rows:
        L.append("| " + " | ".join(cells) + " |")
    return L


def write_markdown(out, res, order, med):
    ctx, host = res["context"], res["context"].get("host", {})
    L = []
    kernel = ctx.get("kernel", host.get("kernel_version", "?"))
    L.append(f"### ci/bench on kernel {kernel} ({ctx.get('mode', '?')} mode)")
    L.append("")
    L.append(f"{host.get('accelerator', 'tcg').upper()} guest, {ctx.get('vcpus', '?')} vCPUs "
             f"({ctx.get('cpu_model', '?')}), {int(ctx.get('guest_mem_kib', 0)) // 1024} MiB; "
             f"rxe on {ctx.get('rdma_netdev', '?')}, active MTU {ctx.get('rxe_active_mtu', '?')}; "
             f"fio {ctx.get('fio_version', '?')} io_uring direct, {ctx.get('runtime_s', '?')} s per run "
             f"(+{ctx.get('ramp_s', '?')} s ramp), median of {ctx.get('reps', '?')} interleaved runs; "
             f"devices {ctx.get('device_size_mib', '?')} MiB RAM-backed; ublk {ctx.get('queues', '?')} "
             f"queues x depth {ctx.get('depth', '?')}. Commit {host.get('git_commit', '?')}, "
             f"{host.get('before', {}).get('time', '?')}; host ({host.get('host_cpus', '?')} CPUs) load average "
             f"{host.get('before', {}).get('loadavg', '?')} before, {host.get('after', {}).get('loadavg', '?')} after, "
             f"{host.get('before', {}).get('qemu_processes', '?')} other guest(s) running at the start.")
    extra = [f"`{k.split('_')[0]} ... {ctx[k]}`" for k in ("serve_args", "add_args") if ctx.get(k)]
    if extra:
        L.append("")
        L.append("Extra arguments for ublk-rdma: " + ", ".join(extra) + ".")
    L.append("")
    L.append("Ratios in parentheses are against nvme-rdma (latency: lower is better; the rest: higher is "
             "better). CPU is the guest's busy CPU time per IO during the 4k randread QD32 run (all "
             "processes and the kernel, fio included); \"own\" is the userspace daemon/server part of it.")
    if "ublk-rdma-file" in order:
        L.append("")
        L.append("ublk-rdma-file serves a brd device through the server's file backend (io_uring, O_DIRECT), "
                 "the same kind of namespace as nvme-rdma's: every IO goes through the server's CPU. The "
                 "other ublk-rdma rows serve RAM exports: the client pulls reads with its own RDMA READs "
                 "and pushes writes of up to 16 KiB with its own RDMA WRITEs, which the server's CPU never "
                 "sees.")
    if "ublk-rdma-mrio" in order:
        L.append("")
        L.append("ublk-rdma-mrio is ublk-rdma-file with `add --mr-per-io on`: the server reaches a request's "
                 "buffer only through a memory window bound for it and invalidated before it completes "
                 "(two more work requests per IO, one of them signaled); compare it with ublk-rdma-file.")
    L.append("")
    hdr = ["contender", "QD1 mean us", "QD1 p50 us", "QD1 p99 us", "randread QD32x2 IOPS",
           "randwrite QD32x2 IOPS", "seq read MiB/s", "seq write MiB/s", "CPU us/IO (own)"]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for c in order:
        cc = res["contenders"][c]
        cells = [f"**{c}**" if c.startswith("ublk-rdma") else c]
        for job, key in ((QD1, "lat_mean_us"), (QD1, "lat_p50_us"), (QD1, "lat_p99_us"),
                         (RR, "iops"), (RW, "iops"), (SR, "mib_s"), (SW, "mib_s")):
            v = med(c, job, key)
            b = med(BASELINE, job, key)
            cell = fmt(v)
            if v is not None and c != BASELINE and b:
                cell += f" ({fmt_ratio(v / b)})"
            cells.append(cell)
        g = med(c, RR, "guest_cpu_s_per_io")
        o = med(c, RR, "own_cpu_s_per_io")
        cells.append("-" if g is None else fmt(g * 1e6) + ("" if o is None else f" ({fmt(o * 1e6)})"))
        if cc["status"] != "ok":
            cells[0] += " **FAILED**"
        L.append("| " + " | ".join(cells) + " |")
    failed = [(c, res["contenders"][c]) for c in order if res["contenders"][c]["status"] != "ok"]
    if failed:
        L.append("")
        for c, cc in failed:
            L.append(f"- **{c} FAILED**: {cc['error']}")
    L.append("")
    L.append("Transport limit (perftest over the same rxe device, rdma_cm, client and server in the guest):")
    L.append("")
    L.append("| test | size | avg | typical/peak | p99 |")
    L.append("|---|---|---|---|---|")
    for name, t in res["transport"].items():
        if t.get("status") != "ok":
            L.append(f"| {name} | - | FAILED: {t.get('error')} | | |")
        elif "t_avg_us" in t:
            L.append(f"| {name} | {t['bytes']} B | {fmt(t['t_avg_us'])} us | {fmt(t.get('t_typical_us'))} us | "
                     f"{fmt(t.get('p99_us'))} us |")
        else:
            L.append(f"| {name} | {t['bytes'] // 1024} KiB | {fmt(t['bw_avg_mib_s'])} MiB/s | "
                     f"{fmt(t.get('bw_peak_mib_s'))} MiB/s | - |")
    L.append("")
    L.append("Goals (issue 4) per ublk-rdma contender; \"met\" or the gap:")
    L.append("")
    if res["goals"]:
        modes = [g["contender"] for g in res["goals"]]
        L.append("| goal | " + " | ".join(modes) + " |")
        L.append("|---|" + "---|" * len(modes))
        for i, chk in enumerate(res["goals"][0]["checks"]):
            row = [chk["goal"]]
            for g in res["goals"]:
                cc = g["checks"][i]
                row.append(("**met**: " if cc["met"] else "missed: ") + cc["gap"] if cc["met"] is not None else "no number")
            L.append("| " + " | ".join(row) + " |")
    else:
        L.append("No ublk-rdma contender in this run.")
    L.extend(twin_table(res))
    L.extend(counter_table(res, order))
    nb = res["ublk_null_vs_brd_iops"]
    L.append("")
    L.append("The ublk layer alone (ublk-null IOPS / brd IOPS): "
             + ", ".join(f"{j} {fmt_ratio(v)}" for j, v in nb.items()) + ".")
    nk = res.get("ublk_null_vs_kublk_null", {})
    if any(v is not None for v in nk.values()):
        L.append("")
        L.append("Our ublk layer against the kernel's selftest server (ublk-null / kublk-null IOPS; QD1: "
                 "kublk's mean latency / ours, above 1 = ours faster): "
                 + ", ".join(f"{j} {fmt_ratio(v)}" for j, v in nk.items()) + ".")
    if res.get("pairs"):
        L.append("")
        L.append("Side by side (A / B per job: IOPS; QD1: B's mean latency / A's; above 1 = A better. CPU per "
                 "IO: A's / B's, below 1 = A cheaper):")
        L.append("")
        names = list(res["pairs"][0]["ratios"].keys())
        L.append("| A / B | " + " | ".join(names) + " |")
        L.append("|---|" + "---|" * len(names))
        for p in res["pairs"]:
            L.append(f"| {p['a']} / {p['b']} | " + " | ".join(fmt_ratio(p["ratios"][n]) for n in names) + " |")
    na = res.get("not_applicable", {})
    if na:
        L.append("")
        L.append("Not applicable on this kernel (not run): "
                 + "; ".join(f"{c} ({why})" for c, why in sorted(na.items())) + ".")
    L.append("")
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write("\n".join(L))
