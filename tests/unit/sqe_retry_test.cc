// The retry policy of QueueLoop::get_sqe_st, with a fake ring: a full SQ is flushed and tried
// again, transient errors are retried, and a ring that never frees an entry is given up on.
#include "ublk/sqe_retry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace ublkrdma::ublk {
namespace {

// A ring whose SQ is full until a flush succeeds; each flush returns the next scripted result
// (the last one repeats once the script is used up).
struct FakeRing {
  std::vector<int> flush_results;
  bool room = false;
  int entry = 0;
  unsigned gets = 0, flushes = 0;

  int* get() {
    ++gets;
    return room ? &entry : nullptr;
  }
  int flush() {
    int rc = flush_results[std::min<size_t>(flushes, flush_results.size() - 1)];
    ++flushes;
    if (rc > 0) room = true;
    return rc;
  }
  int* take(unsigned max_flushes, int* err) {
    return get_entry_flushing([this] { return get(); }, [this] { return flush(); }, max_flushes, err);
  }
};

TEST(SqeRetry, RoomAtOnceNeedsNoFlush) {
  FakeRing r{{-EIO}};
  r.room = true;
  int err = 0;
  EXPECT_EQ(r.take(kMaxSqFlushes, &err), &r.entry);
  EXPECT_EQ(r.flushes, 0u);
  EXPECT_EQ(r.gets, 1u);
}

TEST(SqeRetry, FullSqIsFlushedOnce) {
  FakeRing r{{3}};
  int err = 0;
  EXPECT_EQ(r.take(kMaxSqFlushes, &err), &r.entry);
  EXPECT_EQ(r.flushes, 1u);
  EXPECT_EQ(r.gets, 2u);
}

TEST(SqeRetry, TransientErrorsAreRetried) {
  FakeRing r{{-EAGAIN, -EBUSY, -EINTR, -EAGAIN, 1}};
  int err = 0;
  EXPECT_EQ(r.take(kMaxSqFlushes, &err), &r.entry);
  EXPECT_EQ(r.flushes, 5u);
}

TEST(SqeRetry, PersistentTransientErrorGivesUpAtTheBound) {
  for (int e : {-EAGAIN, -EBUSY, -EINTR}) {
    FakeRing r{{e}};
    int err = 0;
    EXPECT_EQ(r.take(kMaxSqFlushes, &err), nullptr);
    EXPECT_EQ(r.flushes, kMaxSqFlushes);
    EXPECT_EQ(err, e);
  }
}

TEST(SqeRetry, FlushesThatFreeNothingGiveUpAtTheBound) {
  FakeRing r{{0}};  // "submitted nothing", and the SQ stays full
  int err = 0;
  EXPECT_EQ(r.take(4, &err), nullptr);
  EXPECT_EQ(r.flushes, 4u);
  EXPECT_EQ(err, -EAGAIN);
}

TEST(SqeRetry, HardErrorGivesUpAtOnce) {
  for (int e : {-EBADF, -ENXIO, -EOWNERDEAD, -EBADR}) {
    FakeRing r{{-EAGAIN, e, 1}};
    int err = 0;
    EXPECT_EQ(r.take(kMaxSqFlushes, &err), nullptr);
    EXPECT_EQ(r.flushes, 2u);
    EXPECT_EQ(err, e);
  }
}

TEST(SqeRetry, SucceedsOnTheLastAllowedFlush) {
  std::vector<int> script(kMaxSqFlushes - 1, -EAGAIN);
  script.push_back(1);
  FakeRing r{script};
  int err = 0;
  EXPECT_EQ(r.take(kMaxSqFlushes, &err), &r.entry);
  EXPECT_EQ(r.flushes, kMaxSqFlushes);
}

TEST(SqeRetry, NoFlushAllowed) {
  FakeRing r{{1}};
  int err = 0;
  EXPECT_EQ(r.take(0, &err), nullptr);
  EXPECT_EQ(r.flushes, 0u);
  EXPECT_EQ(err, -EAGAIN);
}

}  // namespace
}  // namespace ublkrdma::ublk
