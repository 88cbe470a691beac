// SendBudget, SendChain and RecvChain driven through a fake send queue: what a real QP would
// hold, in posting order, never more than its capacity.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <random>

#include "transport/work_chain.h"

namespace ublkrdma::transport {
namespace {

struct FakeWr {
  uint64_t wr_id;
  bool signaled;
  std::vector<ibv_sge> sges;
};

// A send queue of `capacity` slots. A signaled work request's completion frees it and every
// unsignaled one before it, as on a real device.
class FakeSendQueue {
 public:
  explicit FakeSendQueue(size_t capacity) : capacity_(capacity) {}

  int post(ibv_send_wr* first, ibv_send_wr** bad) {
    ++doorbells;
    size_t i = 0;
    for (ibv_send_wr* wr = first; wr; wr = wr->next, ++i) {
      if (fail_at_ && posted_total_ == *fail_at_) {
        *bad = wr;
        return EINVAL;
      }
      if (queue_.size() == capacity_) {
        overflowed = true;
        *bad = wr;
        return ENOMEM;
      }
      queue_.push_back(FakeWr{wr->wr_id, bool(wr->send_flags & IBV_SEND_SIGNALED),
                              std::vector<ibv_sge>(wr->sg_list, wr->sg_list + wr->num_sge)});
      posted.push_back(queue_.back());
      ++posted_total_;
    }
    return 0;
  }

  // Completes up to `n` of the oldest work requests; returns how many signaled completions
  // the CQ reports for them (unsignaled ones report nothing unless `flushed`).
  size_t complete(size_t n, bool flushed = false) {
    size_t cqes = 0;
    for (size_t i = 0; i < n && !queue_.empty(); ++i) {
      if (queue_.front().signaled || flushed) ++cqes;
      queue_.pop_front();
    }
    return cqes;
  }
  // Completes everything up to and including the oldest signaled work request; false if none.
  bool complete_next_signaled() {
    auto it = std::find_if(queue_.begin(), queue_.end(), [](const FakeWr& w) { return w.signaled; });
    if (it == queue_.end()) return false;
    queue_.erase(queue_.begin(), it + 1);
    return true;
  }
  size_t outstanding() const { return queue_.size(); }
  void fail_at(size_t nth) { fail_at_ = nth; }

  std::vector<FakeWr> posted;
  size_t doorbells = 0;
  bool overflowed = false;

 private:
  size_t capacity_;
  std::deque<FakeWr> queue_;
  size_t posted_total_ = 0;
  std::optional<size_t> fail_at_;
};

auto poster(FakeSendQueue& q) {
  return [&q](ibv_send_wr* first, ibv_send_wr** bad) { return q.post(first, bad); };
}

TEST(SendBudget, NeedsTwoSignallingWindows) {
  EXPECT_THROW(SendBudget(31, 16), std::invalid_argument);
  EXPECT_THROW(SendBudget(8, 0), std::invalid_argument);
  EXPECT_NO_THROW(SendBudget(32, 16));
}

TEST(SendChain, PostsAChainWithOneDoorbellAndSignalsEveryNth) {
  FakeSendQueue q(64);
  SendBudget b(64, 16);
  SendChain chain;
  for (uint64_t i = 0; i < 20; ++i) chain.append(0x1000 * i, 4096, 7).wr_id = i;
  auto p = chain.post(b, poster(q));
  EXPECT_EQ(p.wrs, 20u);
  EXPECT_EQ(p.signaled, 1u);
  EXPECT_EQ(p.rc, 0);
  EXPECT_TRUE(chain.empty());
  EXPECT_EQ(q.doorbells, 1u);
  ASSERT_EQ(q.posted.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(q.posted[i].wr_id, i);
    EXPECT_EQ(q.posted[i].signaled, i == 15) << i;  // the 16th; the tail of 4 waits for a later one
    ASSERT_EQ(q.posted[i].sges.size(), 1u);
    EXPECT_EQ(q.posted[i].sges[0].addr, 0x1000 * i);
  }
  EXPECT_EQ(b.used(), 20u);
  EXPECT_EQ(b.unsignaled_tail(), 4u);
  ASSERT_TRUE(b.retire());
  EXPECT_EQ(b.used(), 4u);  // the 16 before and including the signaled one
  EXPECT_FALSE(b.retire());
}

TEST(SendChain, AFullQueueTakesWhatFitsAndKeepsTheRestInOrder) {
  FakeSendQueue q(32);
  SendBudget b(32, 16);
  SendChain chain;
  for (uint64_t i = 0; i < 40; ++i) {
    chain.append(i, 1, 1).wr_id = i;
    if (i % 3 == 0) chain.add_sge(1000 + i, 2, 1);  // some work requests carry two entries
  }
  auto p = chain.post(b, poster(q));
  EXPECT_EQ(p.wrs, 32u);
  EXPECT_EQ(chain.size(), 8u);
  EXPECT_EQ(b.room(), 0u);
  // Full: nothing more is posted, and a completion is on its way (no stall).
  EXPECT_EQ(chain.post(b, poster(q)).wrs, 0u);
  EXPECT_TRUE(b.signal_outstanding());
  EXPECT_TRUE(q.posted[31].signaled);
  while (q.complete_next_signaled()) {
    ASSERT_TRUE(b.retire());
  }
  EXPECT_EQ(b.used(), 0u);
  p = chain.post(b, poster(q));
  EXPECT_EQ(p.wrs, 8u);
  ASSERT_EQ(q.posted.size(), 40u);
  for (size_t i = 0; i < 40; ++i) {
    ASSERT_EQ(q.posted[i].wr_id, i);
    ASSERT_EQ(q.posted[i].sges.size(), i % 3 == 0 ? 2u : 1u) << i;
    EXPECT_EQ(q.posted[i].sges[0].addr, i);
    if (i % 3 == 0) {
      EXPECT_EQ(q.posted[i].sges[1].addr, 1000 + i);
    }
  }
  EXPECT_FALSE(q.overflowed);
}

TEST(SendChain, WrapsAroundForeverWithoutOverflowOrStall) {
  constexpr size_t kCap = 48;
  FakeSendQueue q(kCap);
  SendBudget b(kCap, 16);
  SendChain chain;
  std::mt19937 rng(7);
  uint64_t next_id = 0, expect_id = 0;
  for (int pass = 0; pass < 20000; ++pass) {
    size_t add = rng() % 24;
    for (size_t i = 0; i < add; ++i, ++next_id) chain.append(next_id, 1, 1).wr_id = next_id;
    if (rng() % 5 == 0) chain[0].send_flags |= IBV_SEND_SIGNALED;  // e.g. an RDMA READ that needs its own
    size_t before = q.posted.size();
    auto p = chain.post(b, poster(q));
    ASSERT_EQ(p.rc, 0);
    ASSERT_EQ(q.posted.size() - before, p.wrs);
    ASSERT_LE(b.used(), kCap);
    ASSERT_EQ(b.used(), q.outstanding()) << "pass " << pass;
    // Never stuck: whenever the queue cannot take a full window, a completion is coming.
    if (b.room() < 16) {
      ASSERT_TRUE(b.signal_outstanding()) << "pass " << pass;
    }
    size_t done = rng() % 3;
    for (size_t i = 0; i < done; ++i)
      if (q.complete_next_signaled()) {
        ASSERT_TRUE(b.retire());
      }
  }
  while (!chain.empty()) {
    while (q.complete_next_signaled()) {
    ASSERT_TRUE(b.retire());
  }
    chain.post(b, poster(q), true);
  }
  while (q.complete_next_signaled()) {
    ASSERT_TRUE(b.retire());
  }
  for (const FakeWr& w : q.posted) ASSERT_EQ(w.wr_id, expect_id++);
  EXPECT_EQ(expect_id, next_id);
  EXPECT_TRUE(b.quiescent());
  EXPECT_FALSE(q.overflowed);
}

TEST(SendChain, AFailedPostCountsOnlyWhatWasPosted) {
  FakeSendQueue q(64);
  SendBudget b(64, 4);
  SendChain chain;
  for (uint64_t i = 0; i < 10; ++i) chain.append(i, 1, 1).wr_id = i;
  q.fail_at(6);  // the 7th work request is refused: 6 went out
  auto p = chain.post(b, poster(q));
  EXPECT_EQ(p.rc, EINVAL);
  EXPECT_EQ(p.wrs, 6u);
  EXPECT_EQ(b.used(), 6u);
  EXPECT_EQ(chain.size(), 4u);
  EXPECT_EQ(chain[0].wr_id, 6u);
  // Of the 6 posted, the 4th was signaled (every 4th): one retire frees 4, 2 stay unsignaled.
  EXPECT_TRUE(b.retire());
  EXPECT_EQ(b.used(), 2u);
  EXPECT_EQ(b.unsignaled_tail(), 2u);
  EXPECT_FALSE(b.retire());
}

TEST(SendChain, FlushedCompletionsAfterAQpErrorNeverUnderflowAndResetClears) {
  FakeSendQueue q(64);
  SendBudget b(64, 16);
  SendChain chain;
  for (uint64_t i = 0; i < 40; ++i) chain.append(i, 1, 1).wr_id = i;
  chain.post(b, poster(q));
  // The QP fails: the device flushes every outstanding work request, signaled or not, with an
  // error completion each (rxe does); the owner retires one per completion it sees.
  size_t cqes = q.complete(40, true);
  EXPECT_EQ(cqes, 40u);
  size_t retired = 0;
  for (size_t i = 0; i < cqes; ++i) retired += b.retire() ? 1 : 0;
  EXPECT_EQ(retired, 2u);  // only two were signaled: the rest find nothing to retire
  EXPECT_FALSE(b.signal_outstanding());
  EXPECT_EQ(b.used(), b.unsignaled_tail());
  // Once the QP is drained (or destroyed) nothing of it is outstanding.
  b.reset();
  EXPECT_TRUE(b.quiescent());
  EXPECT_EQ(b.room(), 64u);
}

TEST(SendChain, SignalAllSignalsEveryWorkRequest) {
  FakeSendQueue q(64);
  SendBudget b(64, 16);
  SendChain chain;
  for (uint64_t i = 0; i < 5; ++i) chain.append(i, 1, 1);
  chain.post(b, poster(q), true);
  for (const FakeWr& w : q.posted) EXPECT_TRUE(w.signaled);
  EXPECT_EQ(b.unsignaled_tail(), 0u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(b.retire());
  EXPECT_TRUE(b.quiescent());
}

TEST(SendChain, AnEmptyWorkRequestHasNoScatterGatherList) {
  FakeSendQueue q(64);
  SendBudget b(64, 16);
  SendChain chain;
  chain.append(1, 1, 1);
  chain.append_empty().opcode = IBV_WR_RDMA_WRITE;
  chain.post(b, poster(q));
  ASSERT_EQ(q.posted.size(), 2u);
  EXPECT_TRUE(q.posted[1].sges.empty());
}

TEST(RecvChain, PostsEveryReceiveWithOneDoorbell) {
  RecvChain chain(2);
  for (uint64_t i = 0; i < 5; ++i) chain.add(100 + i, 0x1000 * i, 64, 9);  // grows past its reserve
  std::vector<std::pair<uint64_t, uint64_t>> seen;
  int calls = 0;
  int rc = chain.post([&](ibv_recv_wr* first, ibv_recv_wr**) {
    ++calls;
    for (ibv_recv_wr* wr = first; wr; wr = wr->next) seen.emplace_back(wr->wr_id, wr->sg_list->addr);
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(seen.size(), 5u);
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(seen[i], std::make_pair(100 + i, 0x1000 * i));
  EXPECT_TRUE(chain.empty());
  EXPECT_EQ(chain.post([&](ibv_recv_wr*, ibv_recv_wr**) { return ++calls; }), 0);  // nothing to post
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace ublkrdma::transport
