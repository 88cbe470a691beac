"""Shared by ci/lib/bench-report.py and ci/lib/bench_markdown.py: job and contender names, and
the number formatting of the report."""
import statistics


BASELINE = "nvme-rdma"
# The ublk-rdma contenders whose goals are checked: the three completion modes on ram exports and
# the default mode on a file export of a brd device (the server's backend path).
RDMA_MODES = ["ublk-rdma-busy", "ublk-rdma-event", "ublk-rdma-hybrid", "ublk-rdma-file"]
# With ci/bench --baseline-bin, each ublk-rdma contender NAME has a twin NAME + TWIN run by the
# baseline build.
TWIN = "-base"
QD1 = "randread-4k-qd1"
RR = "randread-4k-qd32x2"
RW = "randwrite-4k-qd32x2"
SR = "seqread-128k-qd16"
SW = "seqwrite-128k-qd16"
PERFTEST = ["ib_send_lat", "ib_write_lat", "ib_read_lat", "ib_write_bw", "ib_read_bw"]
# /proc/stat cpu fields: user nice system idle iowait irq softirq steal guest guest_nice.
BUSY_FIELDS = [0, 1, 2, 5, 6, 7]


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=None):
    if v is None:
        return "-"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2
    return f"{v:,.{digits}f}"


def ratio(v, base):
    if v is None or not base:
        return None
    return v / base


def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:.3f}x" if r < 0.1 else f"{r:.2f}x"
