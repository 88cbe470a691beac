#!/usr/bin/env bash
# rdma target, --allow: a server whose CIDR excludes the client refuses it: `add` exits 1 saying
# access is denied, nothing is created, the server counts the refusal. A server whose CIDR holds
# the client serves it.
. "$(dirname "$0")/lib.sh"
require_ublk
require_cmd jq
setup_rxe

E2E_SERVE_LISTEN=$E2E_RDMA_ADDR:18531 serve_start --export vol0=ram:16M --allow 198.51.100.0/24 --allow 10.0.0.0/8
denying=$E2E_SERVE_PID
defer "$UBLK" del -a
add_refused "client not allowed" 'denies access|access denied|not allowed' -t rdma --traddr "$E2E_RDMA_ADDR" \
  --trsvcid 18531 --export vol0
jq -e '.rejected_connections >= 1 and (.connections | length) == 0' <(serve_stats wait) >/dev/null ||
  fail "the server did not count the refusal: $(jq -c . "$E2E_SERVE_STATS")"
grep -iE 'denied|refus|reject' "$E2E_SERVE_LOG" | head -n 3 | sed 's/^/    server: /' >&2

log "a server that allows 192.0.2.0/24 serves the client"
E2E_SERVE_LISTEN=$E2E_RDMA_ADDR:18532 serve_start --export vol0=ram:16M --allow 192.0.2.0/24
rdma_add 0 vol0 --trsvcid 18532
must dd if=/dev/urandom of=/dev/ublkb0 bs=1M count=4 oflag=direct status=none
must "$UBLK" del -n 0
serve_stop
serve_stop "$denying"
