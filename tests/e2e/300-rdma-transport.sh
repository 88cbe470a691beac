#!/usr/bin/env bash
# RDMA transport over real verbs on rxe: server and client (the rdma target's queue targets
# driven in-process) in one program: round trips in every poll mode, ram and file exports,
# refusals (unknown export, --allow, nothing listening), read-only, malformed commands
# answered with errors, server stop fails client IO promptly.
# e2e-timeout: 600
. "$(dirname "$0")/lib.sh"
bin=${UBLK_RDMA_TRANSPORT_TEST:-$(dirname "$UBLK")/rdma_transport_test}
[[ -x $bin ]] || fail "$bin is not built (run ci/bootstrap)"
setup_rxe
must env UBLK_RDMA_TEST_ADDR="$E2E_RDMA_ADDR" "$bin" --gtest_brief=0
