// The reconnect helper thread: requests go in from the queue thread, results come back through
// its eventfd, and it stops cleanly with an attempt under way. Attempts here fail (a real
// connection needs an RDMA device: the guest tests cover those).
#include "targets/reconnector.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/errors.h"

namespace ublkrdma::targets {
namespace {

bool wait_readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

TEST(Reconnector, FailedAttemptsComeBackThroughTheEventFd) {
  std::atomic<int> calls{0};
  Reconnector r(
      [&](size_t index) -> RdmaConnection {
        ++calls;
        throw SetupError(fmt::format("connection {} refused", index), ECONNREFUSED);
      },
      "test-rc");
  EXPECT_FALSE(wait_readable(r.event_fd(), 0));  // no thread, no result yet
  r.request_st(2);
  r.request_st(0);
  std::vector<Reconnector::Result> results;
  for (int i = 0; i < 50 && results.size() < 2; ++i) {
    ASSERT_TRUE(wait_readable(r.event_fd(), 5000));
    for (auto& res : r.take_results_st()) results.push_back(std::move(res));
  }
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].index, 2u);  // in the order asked
  EXPECT_EQ(results[1].index, 0u);
  for (const auto& res : results) {
    EXPECT_EQ(res.connection, nullptr);
    EXPECT_EQ(res.errno_value, ECONNREFUSED);
    EXPECT_NE(res.error.find("refused"), std::string::npos);
  }
  EXPECT_EQ(calls.load(), 2);
  EXPECT_FALSE(wait_readable(r.event_fd(), 0));  // taken: nothing signalled any more
}

TEST(Reconnector, StopsWithAnAttemptUnderWay) {
  std::atomic<bool> started{false};
  {
    Reconnector r(
        [&](size_t) -> RdmaConnection {
          started = true;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          throw SetupError("too late");
        },
        "test-rc");
    r.request_st(1);
    while (!started) std::this_thread::yield();
  }  // joins after the attempt; its result is dropped
  SUCCEED();
}

}  // namespace
}  // namespace ublkrdma::targets
