# Helpers for the rdma end-to-end tests (3NN-rdma-*.sh): a `serve` in the background on the
# guest's rxe device. Sourced after lib.sh.
# shellcheck shell=bash

RDMA_PORT=${RDMA_PORT:-18520}
RDMA_SERVER_PID=
RDMA_SERVER_LOG=$E2E_LOG_DIR/server.log
RDMA_SERVER_STATS=$E2E_WORK/server-stats.json

# start_server ARGS...: `ublk-rdma serve --listen ADDR:PORT --stats FILE ARGS` in the
# background; waits until it listens; stopped with SIGTERM (and must exit 0) when the test ends.
start_server() {
  log "+ ublk-rdma serve --listen $E2E_RDMA_ADDR:$RDMA_PORT --stats $RDMA_SERVER_STATS $*"
  "$UBLK" serve --listen "$E2E_RDMA_ADDR:$RDMA_PORT" --stats "$RDMA_SERVER_STATS" "$@" >"$RDMA_SERVER_LOG" 2>&1 &
  RDMA_SERVER_PID=$!
  defer stop_server_quiet
  wait_until 30 "the server to listen" grep -q "listening on" "$RDMA_SERVER_LOG"
}

# stop_server: SIGTERM, the server drains and exits 0 within 20 s.
stop_server() {
  [[ -n $RDMA_SERVER_PID ]] || return 0
  log "+ kill -TERM $RDMA_SERVER_PID (server)"
  kill -TERM "$RDMA_SERVER_PID" 2>/dev/null
  local rc i pid=$RDMA_SERVER_PID
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "server (pid $pid) still running 20 s after SIGTERM"
  wait "$pid"
  rc=$?
  RDMA_SERVER_PID=
  ((rc == 0)) || { tail -n 20 "$RDMA_SERVER_LOG" | sed 's/^/    | /'; fail "server exited with status $rc"; }
}
stop_server_quiet() {
  [[ -n $RDMA_SERVER_PID ]] || return 0
  kill -TERM "$RDMA_SERVER_PID" 2>/dev/null
  sleep 1
  kill -KILL "$RDMA_SERVER_PID" 2>/dev/null
  RDMA_SERVER_PID=
}

# client_stat ID FIELD: the sum over queues of the rdma target's counter FIELD.
client_stat() {
  "$UBLK" list -n "$1" --json | jq "[.[0].queues[].stats.target.$2] | add"
}

# server_stat EXPORT FIELD: the server's per-export counter (from its stats file).
server_stat() {
  jq ".exports[\"$1\"].$2" "$RDMA_SERVER_STATS"
}

# assert_zero_copy ID: the client moved data by RDMA only and copied nothing.
assert_zero_copy() {
  local copied moved
  copied=$(client_stat "$1" copied_bytes)
  moved=$(client_stat "$1" rdma_bytes)
  log "client: rdma_bytes=$moved copied_bytes=$copied"
  [[ $copied == 0 ]] || fail "client copied $copied bytes in userspace"
  ((moved > 0)) || fail "client moved no bytes by RDMA"
}

# wait_child SECS PID: waits for a background child of this shell; its exit status, or 124 if
# it is still running after SECS (it is then killed).
wait_child() {
  local secs=$1 pid=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    return 124
  fi
  wait "$pid"
}
