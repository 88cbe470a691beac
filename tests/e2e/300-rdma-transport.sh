#!/usr/bin/env bash
# RDMA transport over real verbs on rxe: server and client (the rdma target's queue targets
# driven in-process) in one program: round trips in every poll mode, ram and file exports,
# refusals (unknown export, --allow, nothing listening), read-only, malformed commands
# answered with errors, server stop fails client IO promptly; authentication (rdma_auth_test);
# --mr-per-io windows against a hostile raw-verbs server (rdma_windows_test); a hostile raw
# client's bad CONNECTs, duplicate tags, truncated and oversized messages and vanishing mid-
# authentication (rdma_hostile_test). Run twice: the plain build, then
# the ThreadSanitizer build (build-tsan/), whose server and client threads share one process.
# e2e-timeout: 900
. "$(dirname "$0")/lib.sh"
bin=${UBLK_RDMA_TRANSPORT_TEST:-$(dirname "$UBLK")/rdma_transport_test}
tsan_bin=${UBLK_RDMA_TRANSPORT_TEST_TSAN:-$(dirname "$UBLK")/../build-tsan/rdma_transport_test}
[[ -x $bin ]] || fail "$bin is not built (run ci/bootstrap)"
[[ -x $tsan_bin ]] || fail "$tsan_bin is not built (run ci/bootstrap)"
setup_rxe
must env UBLK_RDMA_TEST_ADDR="$E2E_RDMA_ADDR" "$bin" --gtest_brief=0
# A data race report makes the binary exit non-zero (TSan's exitcode), which fails the test.
must env UBLK_RDMA_TEST_ADDR="$E2E_RDMA_ADDR" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  "$tsan_bin" --gtest_brief=1
