#!/usr/bin/env bash
# What the server refuses, the client reports clearly and nothing is created: an unknown export
# name, a peer outside --allow, nothing listening. A read-only export gives a read-only device
# whose writes fail; reads work.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/rdma_lib.sh"
require_ublk
require_cmd jq
setup_rxe
start_server --export vol0=ram:32M --export ro=ram:32M --read-only ro

expect_add_failure() {  # PATTERN ARGS...
  local pattern=$1 out rc
  shift
  log "+ ublk-rdma add $* (expecting failure: $pattern)"
  out=$(bounded 60 "$UBLK" add "$@" 2>&1)
  rc=$?
  printf '%s\n' "$out" | sed 's/^/    /'
  ((rc == 1)) || fail "add exited with $rc, expected 1"
  grep -q -- "$pattern" <<<"$out" || fail "the error does not say '$pattern'"
  no_ublk_devices || fail "a device was left behind"
}

expect_add_failure "no export named 'nosuch'" -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export nosuch
expect_add_failure "nothing listens" -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid 18599 --export vol0

# Read-only export.
id=0
ublk_add $id -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export ro -q 1 -d 16
dev=/dev/ublkb$id
[[ $(blockdev --getro $dev) == 1 ]] || fail "$dev is not read-only"
must dd if=$dev of=/dev/null bs=1M count=4 iflag=direct status=none
if dd if=/dev/zero of=$dev bs=4k count=1 oflag=direct status=none 2>"$E2E_WORK/dd.err"; then
  fail "a write to the read-only device succeeded"
fi
log "write refused: $(cat "$E2E_WORK/dd.err")"
must "$UBLK" del -n $id
wait_gone $dev
stop_server

# --allow: this guest's address is not in the list.
RDMA_PORT=18521
RDMA_SERVER_LOG=$E2E_LOG_DIR/server-allow.log
start_server --export vol0=ram:32M --allow 198.51.100.0/24
expect_add_failure "denies access" -t rdma --traddr "$E2E_RDMA_ADDR" --trsvcid "$RDMA_PORT" --export vol0
stop_server
