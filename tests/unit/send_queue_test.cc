// The server's send side (server/send_queue.h) over a fake send queue: answers batched and
// fenced, and the counted drain at shutdown.
#include "server/send_queue.h"

#include <gtest/gtest.h>

#include <deque>
#include <vector>

#include "base/work_id.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {
namespace {

struct Posted {
  ibv_wr_opcode opcode;
  int flags;
  int num_sge;
  uint64_t wr_id;
};

struct FakeQp {
  int post(ibv_send_wr* first, ibv_send_wr**) {
    for (ibv_send_wr* wr = first; wr; wr = wr->next) {
      posted.push_back({wr->opcode, int(wr->send_flags), wr->num_sge, wr->wr_id});
      queue.push_back(bool(wr->send_flags & IBV_SEND_SIGNALED));
    }
    return 0;
  }
  // Completes everything up to the oldest signaled work request; how many CQEs that makes.
  int complete_all() {
    int cqes = 0;
    while (!queue.empty()) {
      cqes += queue.front();
      queue.pop_front();
    }
    return cqes;
  }
  std::vector<Posted> posted;
  std::deque<bool> queue;
};

struct Harness {
  explicit Harness(bool batch = true, uint32_t max_inline = 64)
      : sends(SendQueueConfig{8, 3, batch, max_inline, 0x1234},
              [this](ibv_send_wr* f, ibv_send_wr** b) { return qp.post(f, b); }, stats) {
    slots.resize(8 * wire::kResponseSize);
  }
  const uint8_t* slot(size_t i) const { return slots.data() + i * wire::kResponseSize; }
  FakeQp qp;
  ConnectionStats stats;
  SendQueue sends;
  std::vector<uint8_t> slots;
};

TEST(SendQueue, AnswersShareSendsAndTheFirstFencedOneIsFenced) {
  Harness h;
  h.sends.rdma(1, IBV_WR_RDMA_READ, 0, 4096, 1, 0, 2);
  h.sends.answer(h.slot(0));
  h.sends.fenced_answer(h.slot(1));
  h.sends.fenced_answer(h.slot(2));
  ASSERT_EQ(h.sends.flush(false), 0);
  ASSERT_EQ(h.qp.posted.size(), 2u);
  EXPECT_EQ(h.qp.posted[1].opcode, IBV_WR_SEND);
  EXPECT_EQ(h.qp.posted[1].num_sge, 3);
  EXPECT_TRUE(h.qp.posted[1].flags & IBV_SEND_FENCE);
  EXPECT_EQ(h.stats.doorbells.get(), 1u);
  EXPECT_EQ(h.stats.answer_sends.get(), 1u);
}

TEST(SendQueue, WithoutBatchEachAnswerIsASendAndRefusalsGoInline) {
  Harness h(false);
  h.sends.scratch_answer(h.slot(0));
  h.sends.answer(h.slot(1));
  h.sends.answer(h.slot(2));
  ASSERT_EQ(h.sends.flush(false), 0);
  ASSERT_EQ(h.qp.posted.size(), 3u);
  for (const Posted& p : h.qp.posted) {
    EXPECT_EQ(p.num_sge, 1);
    EXPECT_TRUE(p.flags & IBV_SEND_INLINE);
    EXPECT_FALSE(p.flags & IBV_SEND_FENCE);
  }
}

// A KEEP_ALIVE's answer leaves inline, alone, beside batched answers, and is not counted as an
// answer to a command. A probe is one signaled zero-length RDMA WRITE.
TEST(SendQueue, KeepAliveAnswersAndProbesStandApart) {
  Harness h;
  h.sends.keep_alive_answer(h.slot(0));
  h.sends.answer(h.slot(1));
  h.sends.answer(h.slot(2));
  h.sends.probe();
  EXPECT_FALSE(h.sends.empty());
  ASSERT_EQ(h.sends.flush(false), 0);
  ASSERT_EQ(h.qp.posted.size(), 3u);
  EXPECT_EQ(h.qp.posted[0].opcode, IBV_WR_RDMA_WRITE);  // queued first: the chain keeps its order
  EXPECT_EQ(h.qp.posted[0].num_sge, 0);
  EXPECT_TRUE(h.qp.posted[0].flags & IBV_SEND_SIGNALED);
  EXPECT_EQ(h.qp.posted[1].num_sge, 1);
  EXPECT_TRUE(h.qp.posted[1].flags & IBV_SEND_INLINE);
  EXPECT_EQ(h.qp.posted[2].num_sge, 2);
  EXPECT_EQ(h.stats.answer_sends.get(), 1u);
}

TEST(SendQueue, RoomBoundsAnswersWaiting) {
  Harness h;
  EXPECT_TRUE(h.sends.has_room(8));
  h.sends.answer(h.slot(0));
  EXPECT_FALSE(h.sends.has_room(8));
  EXPECT_TRUE(h.sends.has_room(7));
  EXPECT_FALSE(h.sends.empty());
}

// At shutdown the unsignaled tail of the send queue is counted out, not waited for: a signaled
// zero-length RDMA WRITE goes after it, and the queue is drained when that one completes.
TEST(SendQueue, DrainCountsTheUnsignaledTail) {
  Harness h;
  for (size_t i = 0; i < 3; ++i) h.sends.answer(h.slot(i));
  h.sends.flush(false);  // one SEND, unsignaled
  h.sends.answer(h.slot(3));
  h.sends.flush(false);
  ASSERT_EQ(h.qp.posted.size(), 2u);
  EXPECT_FALSE(h.qp.posted[1].flags & IBV_SEND_SIGNALED);

  EXPECT_FALSE(h.sends.drained());  // two work requests are out and nothing reports them
  ASSERT_EQ(h.sends.flush(true), 0);
  ASSERT_EQ(h.qp.posted.size(), 3u);
  const Posted& w = h.qp.posted[2];
  EXPECT_EQ(w.opcode, IBV_WR_RDMA_WRITE);
  EXPECT_EQ(w.num_sge, 0);
  EXPECT_TRUE(w.flags & IBV_SEND_SIGNALED);
  EXPECT_EQ(WorkId::decode(w.wr_id).kind, WorkKind::kRdmaWrite);
  EXPECT_EQ(WorkId::decode(w.wr_id).op, kDrainWriteOp);
  EXPECT_FALSE(h.sends.drained());  // posted, not completed: and no second one
  EXPECT_TRUE(h.sends.empty());
  EXPECT_EQ(h.qp.complete_all(), 1);
  EXPECT_TRUE(h.sends.retire());
  EXPECT_TRUE(h.sends.drained());
  EXPECT_EQ(h.sends.used(), 0u);
}

TEST(SendQueue, DrainWaitsForSignaledWork) {
  Harness h;
  h.sends.answer(h.slot(0));
  h.sends.flush(true);  // draining: signaled
  EXPECT_FALSE(h.sends.drained());
  EXPECT_TRUE(h.sends.empty());  // nothing added: the signaled SEND will report itself
  h.qp.complete_all();
  h.sends.retire();
  EXPECT_TRUE(h.sends.drained());
  EXPECT_EQ(h.qp.posted.size(), 1u);
}

}  // namespace
}  // namespace ublkrdma::server
