# Helpers for the end-to-end tests (sourced by tests/e2e/NNN-*.sh, which tests/e2e/run starts
# inside the guest, see ci/vm). A test passes with exit 0, fails with anything else, and skips
# only through `skip REASON` (exit 77), which the runner reports loudly and counts.
# shellcheck shell=bash

set -uo pipefail

E2E_ROOT=${E2E_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
UBLK=${UBLK_RDMA_BIN:-$E2E_ROOT/build/ublk-rdma}
E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}
# Scratch space on the guest's tmpfs (never the host's disk); logs go to E2E_LOG_DIR.
E2E_WORK=${E2E_WORK:-/tmp/e2e/$E2E_NAME}
E2E_LOG_DIR=${E2E_LOG_DIR:-$E2E_WORK}
E2E_SKIP_FILE=${E2E_SKIP_FILE:-$E2E_WORK/skip-reason}
mkdir -p "$E2E_WORK" "$E2E_LOG_DIR"

E2E_EXIT_SKIP=77
E2E_RDMA_IF=dum0
E2E_RDMA_ADDR=192.0.2.1
E2E_RDMA_DEV=rxe0

# ---------------------------------------------------------------------------------------------
# Reporting

# Everything a test says goes to stderr, so `must CMD >FILE` captures only CMD's output.
log() { printf '%(%H:%M:%S)T %s\n' -1 "$*" >&2; }

fail() {
  log "FAIL: $*"
  exit 1
}

# skip REASON: the test cannot run here. Never silent: the runner prints the reason.
skip() {
  log "SKIP: $*"
  printf '%s\n' "$*" >"$E2E_SKIP_FILE"
  exit "$E2E_EXIT_SKIP"
}

# run CMD...: log the command and run it; returns its status.
run() {
  log "+ $*"
  "$@"
}

# must CMD...: run, fail the test if it fails.
must() {
  log "+ $*"
  "$@" || fail "'$*' exited with status $?"
}

# expect_status "CODES" CMD...: run CMD, fail unless its status is one of CODES ("1 2").
expect_status() {
  local want=$1 rc
  shift
  log "+ $* (expecting exit status $want)"
  "$@"
  rc=$?
  [[ " $want " == *" $rc "* ]] || fail "'$*' exited with $rc, expected $want"
  log "  exit status $rc, as expected"
}

require_cmd() {
  local c
  for c; do
    command -v "$c" >/dev/null || fail "'$c' is not installed (run ci/bootstrap)"
  done
}

# ---------------------------------------------------------------------------------------------
# Bounded waiting and cleanup: nothing here may hang the test run.

# nap SECS: sleep without fork or exec (a read with a time-out on a private FIFO). Under TCG each
# exec of sleep(1) over 9p costs up to half a second of CPU, so poll loops use this.
E2E_NAP_FD=
nap() {
  if [[ -z $E2E_NAP_FD ]]; then
    local fifo=$E2E_WORK/.nap.$BASHPID
    mkfifo "$fifo" && exec {E2E_NAP_FD}<>"$fifo"
    rm -f "$fifo"
  fi
  read -r -t "$1" -u "$E2E_NAP_FD" _
  return 0
}

# bounded SECS CMD...: run CMD for at most SECS seconds; 124 if it had to be killed. Unlike
# timeout(1) it never waits on a process stuck in the kernel: such a one is abandoned. CMD runs
# in a background subshell, so shell builtins that need this shell's state (wait PID) do not work.
bounded() {
  local secs=$1 pid i
  shift
  "$@" &
  pid=$!
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return; }
    nap 0.1
  done
  log "'$*' still running after ${secs}s: killing it"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return 124; }
    nap 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  nap 0.5
  if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == D ]]; then
    log "'$*' (pid $pid) is stuck in the kernel (D state): abandoning it"
    cat "/proc/$pid/stack" 2>/dev/null | sed 's/^/    /'
  fi
  return 124
}

# now_us: wall-clock microseconds, without a fork.
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$((10#$t))"; }

# wait_until SECS WHAT CMD...: run CMD every 0.1 s until it succeeds; fail once SECS seconds of
# wall-clock time have passed (not SECS*10 tries: under TCG one try of a slow CMD takes seconds).
# A wait that uses more than half its time is logged, to show which bounds are tight.
wait_until() {
  local secs=$1 what=$2 start end
  shift 2
  start=$(now_us)
  end=$((start + secs * 1000000))
  while :; do
    if "$@" >/dev/null 2>&1; then
      local took=$(($(now_us) - start))
      ((took * 2 <= secs * 1000000)) ||
        log "  waited $((took / 1000)) ms of ${secs}s for $what"
      return 0
    fi
    (($(now_us) < end)) || break
    nap 0.1
  done
  fail "timed out after ${secs}s waiting for $what"
}

# defer CMD...: run CMD (bounded, errors ignored) when the test exits, last deferred first.
E2E_DEFERRED=()
defer() {
  local q
  printf -v q '%q ' "$@"
  E2E_DEFERRED+=("$q")
}
e2e_cleanup() {
  local rc=$? i
  trap - EXIT
  for ((i = ${#E2E_DEFERRED[@]} - 1; i >= 0; i--)); do
    eval "bounded 30 ${E2E_DEFERRED[i]}" >/dev/null 2>&1 || true
  done
  exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Ceph (the rbd tests)

# ceph_cluster: sets CEPH_CONF to a single-node cluster (ci/ceph-up: a monitor, a memstore OSD,
# a manager, cephx; clients gw, gwa and gwb with profile rbd) that the tests of one run share,
# each with images of its own names: the first test that asks starts it (about a minute in the
# guest), tests/e2e/run stops it after the last of them (its memory is needed by the next). The
# OSDs forget a dead client's watch after 10 s (30 s would only make the failover test wait).
E2E_CEPH_DIR=${E2E_CEPH_DIR:-/tmp/e2e-ceph}
ceph_cluster() {
  CEPH_CONF=$E2E_CEPH_DIR/ceph.conf
  if [[ -f $E2E_CEPH_DIR/ready ]] && bounded 30 rados -c "$CEPH_CONF" lspools >/dev/null 2>&1; then
    log "the Ceph cluster under $E2E_CEPH_DIR (started by an earlier test of this run)"
    return 0
  fi
  [[ -d $E2E_CEPH_DIR ]] && { "$E2E_ROOT/ci/ceph-up" --dir "$E2E_CEPH_DIR" --down >/dev/null 2>&1; rm -rf "$E2E_CEPH_DIR"; }
  log "+ ci/ceph-up (single-node cluster under $E2E_CEPH_DIR, for this run's rbd tests)"
  bounded 400 "$E2E_ROOT/ci/ceph-up" --dir "$E2E_CEPH_DIR" --osd-bytes 700M --client gw --client gwa --client gwb \
    --set 'osd client watch timeout = 10' >"$E2E_LOG_DIR/ceph-up.log" 2>&1 ||
    { tail -n 30 "$E2E_LOG_DIR/ceph-up.log" >&2; fail "ci/ceph-up failed"; }
  touch "$E2E_CEPH_DIR/ready"
}

# ---------------------------------------------------------------------------------------------
# ublk devices through the CLI

require_ublk() {
  [[ -x $UBLK ]] || fail "$UBLK is not built (run ci/bootstrap)"
  [[ -e /dev/ublk-control ]] || modprobe ublk_drv 2>/dev/null
  [[ -e /dev/ublk-control ]] || fail "/dev/ublk-control is missing: these tests run in the guest (ci/vm)"
}

ublk() { "$UBLK" "$@"; }

# ublk_add ID ARGS...: `add -n ID ARGS`, fails the test unless it succeeds and /dev/ublkbID is a
# block device when add returns; the device is deleted when the test exits.
ublk_add() {
  local id=$1 out rc
  shift
  log "+ ublk-rdma add -n $id $*"
  out=$(bounded 60 "$UBLK" add -n "$id" "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/    /'
  defer ublk_del_quiet "$id"
  ((rc == 0)) || fail "add -n $id $* exited with status $rc"
  [[ -b /dev/ublkb$id ]] || fail "add returned but /dev/ublkb$id is not a block device"
  grep -q "dev id $id" <<<"$out" || fail "add did not print the device (expected 'dev id $id')"
}

ublk_del_quiet() { bounded 30 "$UBLK" del -n "$1" >/dev/null 2>&1; }

# ublk_json ID: the device's object from `list -n ID --json`.
ublk_json() { "$UBLK" list -n "$1" --json | jq -e '.[0]'; }
ublk_state() { "$UBLK" list -n "$1" --json 2>/dev/null | jq -r '.[0].state'; }
ublk_daemon_pid() { "$UBLK" list -n "$1" --json 2>/dev/null | jq -r '.[0].daemon_pid'; }

# wait_state ID STATE [SECS]: SECS (default 20) of wall-clock time, like wait_until.
wait_state() {
  local id=$1 want=$2 secs=${3:-20} st= end
  end=$(($(now_us) + secs * 1000000))
  while :; do
    st=$(ublk_state "$id")
    [[ $st == "$want" ]] && return 0
    (($(now_us) < end)) || break
    nap 0.1
  done
  fail "device $id: state '$st' after ${secs}s, expected $want"
}

wait_for_blockdev() { wait_until "${2:-20}" "block device $1" test -b "$1"; }
wait_gone() { wait_until "${2:-20}" "$1 to disappear" eval "! test -e $(printf %q "$1")"; }
pid_alive() { [[ -n $1 && $1 != 0 ]] && kill -0 "$1" 2>/dev/null; }
wait_pid_gone() { wait_until "${2:-20}" "pid $1 to exit" eval "! kill -0 $1"; }

# no_ublk_devices: fails when any ublk device exists.
no_ublk_devices() {
  local devs
  devs=$(compgen -G '/dev/ublk[bc]*')
  [[ -z $devs ]] || fail "unexpected ublk devices: $devs"
}

# Regions of a block device, in MiB, read with O_DIRECT (past any page cache).
# read_region DEV OFFSET_MIB LEN_MIB: the region's bytes.
read_region() { dd if="$1" iflag=direct bs=1M skip="$2" count="$3" status=none; }
# is_zero DEV OFFSET_MIB LEN_MIB: true if the region reads back as zeros.
is_zero() { cmp -s -n $(($3 << 20)) <(read_region "$1" "$2" "$3") /dev/zero; }
# region_sum DEV OFFSET_MIB LEN_MIB: the region's sha256.
region_sum() { read_region "$1" "$2" "$3" | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------------------------------------
# fio

# verify_state_save=0: no *-verify.state files left in the working directory.
E2E_FIO_COMMON=(--ioengine=io_uring --direct=1 --group_reporting --output-format=normal
                --verify_state_save=0)

# fio_run TAG ARGS...: runs fio (common options first, so they apply to every job; ARGS may hold
# several --name=JOB sections, else the job is named TAG) with its output in
# E2E_LOG_DIR/TAG.fio; fails the test unless fio exits 0 with no IO or verify errors.
fio_run() {
  local tag=$1 out rc
  shift
  out=$E2E_LOG_DIR/$tag.fio
  [[ " $* " == *" --name="* ]] || set -- --name="$tag" "$@"
  log "+ fio ${E2E_FIO_COMMON[*]} $*"
  fio "${E2E_FIO_COMMON[@]}" "$@" >"$out" 2>&1
  rc=$?
  fio_check "$out" "$rc" || fail "fio $tag failed (exit status $rc), see $out"
  log "  fio $tag: $(fio_summary "$out")"
}

# fio_check LOG STATUS: 0 when fio succeeded and reported no errors.
fio_check() {
  local out=$1 rc=$2
  if ((rc != 0)) || grep -qE 'err= *[1-9]|verify: bad|bad magic|crc32c: verify failed|fio: pid=.*err=' "$out"; then
    sed 's/^/    | /' "$out" | tail -n 40
    return 1
  fi
}

fio_summary() {
  grep -E '^ +(read|write|trim):' "$1" | sed 's/^ *//' | tr '\n' ';'
}

# fio_write_verify TAG DEV SIZE [ARGS...]: random writes of 4k..1M at queue depths 1, 16 and 64
# (one job each, on disjoint thirds of the first SIZE bytes), each read back and verified with
# crc32c. ARGS apply to every job.
fio_write_verify() {
  local tag=$1 dev=$2 size third
  size=$(size_bytes "$3")
  shift 3
  third=$((size / 3 / 1048576))
  fio_run "$tag" --filename="$dev" --rw=randwrite --bsrange=4k-1m --verify=crc32c \
    --verify_fatal=1 --do_verify=1 --size="${third}M" "$@" \
    --name=qd1 --offset=0 --iodepth=1 \
    --name=qd16 --offset="${third}M" --iodepth=16 \
    --name=qd64 --offset="$((2 * third))M" --iodepth=64
}

size_bytes() { numfmt --from=iec "${1%B}"; }

# no_io_errors ID...: fails the test unless each device's queues counted no IO error.
no_io_errors() {
  local id
  for id in "$@"; do
    jq -e '[.queues[].stats.target.errors] | add == 0' <(ublk_json "$id") >/dev/null ||
      fail "device $id counted IO errors: $(ublk_json "$id" | jq -c '[.queues[].stats.target.errors]')"
  done
}

# verify_fio_start ID TAG RATE: in the background, fio writes the first 48 MiB of /dev/ublkbID
# once in random order at 4..64 KiB, QD 32, each block verified (crc32c) a while after it is
# written (verify_backlog), paced at RATE so that it still runs through the fault the test
# injects next; fails the test if fio ends within 4 s. Sets E2E_VERIFY_PID and E2E_VERIFY_OUT.
verify_fio_start() {
  local id=$1 tag=$2 rate=$3
  E2E_VERIFY_JOB=(--filename=/dev/ublkb"$id" --rw=randwrite --bsrange=4k-64k --size=48M --iodepth=32
                  --verify=crc32c --verify_fatal=1 --name="$tag")
  E2E_VERIFY_OUT=$E2E_LOG_DIR/$tag.fio
  log "+ fio (background) ${E2E_VERIFY_JOB[*]} --verify_backlog=64 --rate=$rate"
  fio "${E2E_FIO_COMMON[@]}" "${E2E_VERIFY_JOB[@]}" --verify_backlog=64 --rate="$rate" >"$E2E_VERIFY_OUT" 2>&1 &
  E2E_VERIFY_PID=$!
  defer kill -9 "$E2E_VERIFY_PID"
  nap 4
  kill -0 "$E2E_VERIFY_PID" 2>/dev/null || fail "fio ended before the fault: $(tail -n 5 "$E2E_VERIFY_OUT")"
}

# verify_fio_finish ID SECS WHAT: waits up to SECS for the fio of verify_fio_start and fails the
# test unless it ended with 0 errors and 0 mismatches and device ID counted no IO error (WHAT
# names the fault in the message); then a pass of its own reads all 48 MiB back and verifies it.
verify_fio_finish() {
  local id=$1 secs=$2 what=$3 i rc read0 read
  for ((i = 0; i < secs * 10; i++)); do kill -0 "$E2E_VERIFY_PID" 2>/dev/null || break; nap 0.1; done
  kill -0 "$E2E_VERIFY_PID" 2>/dev/null && fail "fio still runs $secs s after the fault"
  wait "$E2E_VERIFY_PID"
  rc=$?
  fio_check "$E2E_VERIFY_OUT" "$rc" || fail "fio saw errors or mismatches across $what (exit status $rc)"
  log "  fio: $(fio_summary "$E2E_VERIFY_OUT")"
  no_io_errors "$id"
  # Without verify_backlog: with it, fio's verify_only pass reads nothing and passes anything.
  read0=$(ublk_json "$id" | jq '[.queues[].stats.bytes_read] | add')
  fio_run "${E2E_VERIFY_JOB[-1]#--name=}-verify-all" "${E2E_VERIFY_JOB[@]}" --verify_only
  read=$(($(ublk_json "$id" | jq '[.queues[].stats.bytes_read] | add') - read0))
  ((read >= 48 << 20)) || fail "the verify pass read $read bytes of device $id, not all 48 MiB"
}

# serve_restart_under_verify ID TAG SERVE_ARGS...: fio verify on device ID (verify_fio_start)
# while the server is SIGKILLed and started again 2 s later with SERVE_ARGS; the device must be
# LIVE again within 30 s and fio must end with no error and no mismatch (verify_fio_finish).
# The server is SIGSTOPped for 1 s before the kill, so that it dies with requests in flight: the
# rate-limited fio often has none out at a given instant.
serve_restart_under_verify() {
  local id=$1 tag=$2
  shift 2
  verify_fio_start "$id" "$tag" 4m
  log "+ kill -STOP, 1 s later -KILL $E2E_SERVE_PID (serve, fio running)"
  kill -STOP "$E2E_SERVE_PID"
  nap 1
  kill -KILL "$E2E_SERVE_PID"
  wait "$E2E_SERVE_PID" 2>/dev/null
  nap 2
  serve_start "$@"
  wait_until 30 "every connection to be live again" \
    eval "ublk_json $id | jq -e '.state == \"LIVE\" and .io_state == \"live\"'"
  verify_fio_finish "$id" 120 "the server restart"
}

# fio_background TAG DEV ARGS...: fio in the background on DEV, random reads and writes at QD 32
# with 2 jobs for up to 120 s (ARGS add e.g. the block size), its output in E2E_LOG_DIR/TAG.fio.
# Sets E2E_BG_FIO_PID and E2E_BG_FIO_OUT; fio is killed when the test exits.
fio_background() {
  local tag=$1 dev=$2
  shift 2
  E2E_BG_FIO_OUT=$E2E_LOG_DIR/$tag.fio
  log "+ fio (background) on $dev: randrw QD 32 x 2 jobs $*"
  fio "${E2E_FIO_COMMON[@]}" --filename="$dev" --rw=randrw --iodepth=32 --numjobs=2 --runtime=120 \
    --time_based "$@" --name="$tag" >"$E2E_BG_FIO_OUT" 2>&1 &
  E2E_BG_FIO_PID=$!
  defer kill -9 "$E2E_BG_FIO_PID"
}

# crash_and_recover ID FIO_PID FIO_OUT: while the background fio FIO_PID runs on device ID (-r 1),
# SIGKILLs the device's daemon, waits for QUIESCED (fio must still be waiting), runs `recover
# -n ID`, waits for LIVE and a new daemon, then waits up to 300 s for fio and fails the test
# unless it finished without errors. Sets E2E_RECOVERED_PID to the new daemon's pid.
crash_and_recover() {
  local id=$1 fio_pid=$2 out=$3 pid i rc
  pid=$(ublk_daemon_pid "$id")
  log "+ kill -9 $pid (the daemon, fio running)"
  kill -9 "$pid"
  wait_pid_gone "$pid" 10
  wait_state "$id" QUIESCED 20
  kill -0 "$fio_pid" 2>/dev/null || fail "fio ended while the device was quiesced: $(tail -n 5 "$out")"
  must "$UBLK" recover -n "$id"
  wait_state "$id" LIVE 20
  E2E_RECOVERED_PID=$(ublk_daemon_pid "$id")
  [[ $E2E_RECOVERED_PID != "$pid" ]] && pid_alive "$E2E_RECOVERED_PID" ||
    fail "no new daemon after recover (pid '$E2E_RECOVERED_PID')"
  log "new daemon: $E2E_RECOVERED_PID"
  for ((i = 0; i < 1200; i++)); do kill -0 "$fio_pid" 2>/dev/null || break; nap 0.25; done
  kill -0 "$fio_pid" 2>/dev/null && fail "fio did not finish within 300 s after recovery"
  wait "$fio_pid"
  rc=$?
  fio_check "$out" "$rc" || fail "fio failed across the daemon kill and recovery (exit status $rc)"
  log "  fio: $(fio_summary "$out")"
}

# ---------------------------------------------------------------------------------------------
# RDMA: rxe on a dummy interface (rdma_cm does not resolve routes over rxe on lo)

setup_rxe() {
  modprobe rdma_rxe 2>/dev/null
  if ! ip link show "$E2E_RDMA_IF" >/dev/null 2>&1; then
    must ip link add "$E2E_RDMA_IF" type dummy
    defer ip link del "$E2E_RDMA_IF"
  fi
  ip addr show dev "$E2E_RDMA_IF" | grep -q "inet $E2E_RDMA_ADDR/" ||
    must ip addr add "$E2E_RDMA_ADDR/24" dev "$E2E_RDMA_IF"
  must ip link set "$E2E_RDMA_IF" up
  if ! rdma link show "$E2E_RDMA_DEV/1" >/dev/null 2>&1; then
    must rdma link add "$E2E_RDMA_DEV" type rxe netdev "$E2E_RDMA_IF"
    defer rdma link delete "$E2E_RDMA_DEV"
  fi
  wait_until 10 "$E2E_RDMA_DEV to become ACTIVE" eval "rdma link show $E2E_RDMA_DEV/1 | grep -q 'state ACTIVE'"
  log "rxe: $(rdma link show "$E2E_RDMA_DEV/1")"
}

# rping_connects WHEN: a fresh rping client connects to a fresh rping server on the rxe address
# (rdma_cm and the device work for newcomers too, WHEN: "after the flap").
rping_connects() {
  rping -s -a "$E2E_RDMA_ADDR" -p 7471 -C 1 -S 64 >/dev/null 2>&1 &
  defer kill "$!"
  nap 1
  must bounded 30 rping -c -a "$E2E_RDMA_ADDR" -p 7471 -C 1 -S 64
  log "  a fresh rping connects $1"
}

# ---------------------------------------------------------------------------------------------
# RDMA target server and rdma devices (used by the 4NN-rdma-* tests)

E2E_SERVE_PID=
E2E_SERVE_LOG=
E2E_SERVE_STATS=
E2E_SERVE_N=0

# serve_start ARGS...: starts `ublk-rdma serve --listen ADDR --stats FILE ARGS` in the background
# (ADDR: $E2E_SERVE_LISTEN, default $E2E_RDMA_ADDR) and waits until it listens. Sets
# E2E_SERVE_PID, E2E_SERVE_LOG and E2E_SERVE_STATS; the server is stopped when the test exits.
# Fails the test when it exits or does not listen within 20 s.
serve_start() {
  local i
  E2E_SERVE_N=$((E2E_SERVE_N + 1))
  E2E_SERVE_LOG=$E2E_LOG_DIR/serve-$E2E_SERVE_N.log
  E2E_SERVE_STATS=$E2E_WORK/serve-$E2E_SERVE_N.stats.json
  log "+ ublk-rdma serve --listen ${E2E_SERVE_LISTEN:-$E2E_RDMA_ADDR} --stats $E2E_SERVE_STATS $* (log: $E2E_SERVE_LOG)"
  "$UBLK" serve --listen "${E2E_SERVE_LISTEN:-$E2E_RDMA_ADDR}" --stats "$E2E_SERVE_STATS" "$@" >"$E2E_SERVE_LOG" 2>&1 &
  E2E_SERVE_PID=$!
  defer serve_kill "$E2E_SERVE_PID"
  for ((i = 0; i < 200; i++)); do
    grep -q 'listening on' "$E2E_SERVE_LOG" && return 0
    kill -0 "$E2E_SERVE_PID" 2>/dev/null || break
    nap 0.1
  done
  sed 's/^/    | /' "$E2E_SERVE_LOG" >&2
  fail "serve did not start listening (see $E2E_SERVE_LOG)"
}

# serve_stop [PID]: SIGTERM, then fail unless the server exits 0 within 30 s.
serve_stop() {
  local pid=${1:-$E2E_SERVE_PID} i rc
  log "+ kill -TERM $pid (serve)"
  kill -TERM "$pid" 2>/dev/null || fail "serve (pid $pid) is not running"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    nap 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "serve (pid $pid) still runs 30 s after SIGTERM"
  wait "$pid"
  rc=$?
  ((rc == 0)) || fail "serve (pid $pid) exited with status $rc after SIGTERM"
  log "  serve stopped cleanly"
}

# serve_kill PID: cleanup: SIGTERM, SIGKILL after 10 s.
serve_kill() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    nap 0.1
  done
  kill -KILL "$pid" 2>/dev/null
}

# serve_stats [WAIT]: the server's stats JSON (the --stats file, rewritten every second). With
# WAIT, first waits for two rewrites so it reflects what happened before the call.
serve_stats() {
  local f=${E2E_SERVE_STATS:?no server started} t n i
  if [[ -n ${1:-} ]]; then
    # Two rewrites: the second one surely gathered its counters after this call.
    for ((n = 0; n < 2; n++)); do
      t=$(stat -c %y "$f" 2>/dev/null)
      for ((i = 0; i < 25; i++)); do
        nap 0.2
        [[ $(stat -c %y "$f" 2>/dev/null) != "$t" ]] && break
      done
    done
  fi
  jq -e . "$f" || fail "the server's stats file $f is missing or not JSON"
}

# add_refused WHAT PATTERN ARGS...: `add ARGS` must exit 1 within 60 s, saying PATTERN (an ERE),
# and leave no device and no daemon behind.
add_refused() {
  local what=$1 pattern=$2 out rc
  shift 2
  log "+ ublk-rdma add $* ($what: expecting exit status 1)"
  out=$(bounded 60 "$UBLK" add "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/    | /' >&2
  ((rc != 124)) || fail "add ($what) hung"
  ((rc == 1)) || fail "add ($what) exited with $rc, expected 1"
  grep -qE "$pattern" <<<"$out" || fail "add ($what): the message does not match /$pattern/"
  no_ublk_devices
  [[ $("$UBLK" list --json | jq length) == 0 ]] || fail "list shows devices after a refused add: $("$UBLK" list)"
  pgrep -f "ublk-rdma add" >/dev/null && fail "a daemon of the refused add is still running: $(pgrep -af 'ublk-rdma add')"
  log "  refused as expected"
}

# rdma_add ID EXPORT ARGS...: `add -n ID -t rdma --traddr $E2E_RDMA_ADDR --export EXPORT ARGS`.
rdma_add() {
  local id=$1 export=$2
  shift 2
  ublk_add "$id" -t rdma --traddr "$E2E_RDMA_ADDR" --export "$export" "$@"
}

# serve_counter EXPORT FIELD: FIELD summed over the server's live connections to EXPORT, from a
# fresh stats file.
serve_counter() { serve_stats wait | jq --arg e "$1" "[.connections[] | select(.export == \$e) | .$2] | add // 0"; }
# serve_connections EXPORT: how many live connections the server holds to EXPORT (fresh stats).
serve_connections() { serve_stats wait | jq --arg e "$1" '[.connections[] | select(.export == $e)] | length'; }
