// The life of a command (server/command_pipeline.h) driven through a fake connection: what it
// asks to be queued and submitted, in order, and which tags it frees.
#include "server/command_pipeline.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <vector>

#include "server/backend.h"

namespace ublkrdma::server {
namespace {

struct Event {
  enum Type { kRdmaRead, kRdmaWrite, kAnswer, kSubmit } type;
  uint16_t tag;
  int detail;  // kRdmaRead: ReadKind; kRdmaWrite: read_done; kAnswer: AnswerKind; kSubmit: opcode
  int err = 0;
  friend bool operator==(const Event&, const Event&) = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
  static const char* names[] = {"rdma_read", "rdma_write", "answer", "submit"};
  return os << names[e.type] << "(tag " << e.tag << ", " << e.detail << ", err " << e.err << ")";
}

Event read_ev(uint16_t tag, ReadKind k) { return {Event::kRdmaRead, tag, int(k)}; }
Event write_ev(uint16_t tag, bool read_done) { return {Event::kRdmaWrite, tag, int(read_done)}; }
Event answer_ev(uint16_t tag, AnswerKind k, int err = 0) { return {Event::kAnswer, tag, int(k), err}; }
Event submit_ev(uint16_t tag, wire::Opcode op) { return {Event::kSubmit, tag, int(op)}; }

class FakeIo : public CommandIo {
 public:
  void queue_rdma_read(const wire::Command& cmd, ReadKind kind) override { events.push_back(read_ev(cmd.tag, kind)); }
  void queue_rdma_write(const wire::Command& cmd, bool read_done) override {
    events.push_back(write_ev(cmd.tag, read_done));
  }
  void queue_answer(const wire::Command& cmd, int err, AnswerKind kind) override {
    events.push_back(answer_ev(cmd.tag, kind, err));
  }
  int submit_backend(const wire::Command& cmd) override {
    events.push_back(submit_ev(cmd.tag, cmd.opcode));
    return submit_result;
  }
  uint64_t export_size() const override { return size; }
  std::vector<Event> take() { return std::exchange(events, {}); }

  std::vector<Event> events;
  int submit_result = 0;
  uint64_t size = 0;  // the export's size now (0: as the limits say)
};

constexpr uint16_t kDepth = 8;

PipelineConfig config(bool direct = false, uint32_t max_reads = 2, bool read_imm = false) {
  PipelineConfig c;
  c.peer = "test";
  c.depth = kDepth;
  c.max_reads = max_reads;
  c.direct = direct;
  c.read_imm = read_imm;
  c.limits = CommandLimits{1 << 20, 512, false, kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes,
                           65536, kDepth, true};
  c.limits_nodata = c.limits;
  c.limits_nodata.max_io_bytes = UINT32_MAX;
  c.limits_nodata.push_writes = false;
  return c;
}

wire::Decoded<wire::Command> command(wire::Opcode op, uint16_t tag, uint8_t flags = 0) {
  wire::Decoded<wire::Command> d;
  d.value.opcode = op;
  d.value.tag = tag;
  d.value.flags = flags;
  d.value.offset = uint64_t(tag) * 4096;
  d.value.length = 4096;
  d.value.generation = 7;
  return d;
}

struct Harness {
  explicit Harness(PipelineConfig c) : pipeline(std::move(c), io, stats) {}
  void send(wire::Opcode op, uint16_t tag, uint8_t flags = 0) { pipeline.on_command(command(op, tag, flags), false, 32); }
  FakeIo io;
  ConnectionStats stats;
  CommandPipeline pipeline;
};

TEST(CommandPipeline, ReadGoesToBackendThenDataThenAnswer) {
  Harness h(config());
  h.send(wire::Opcode::kRead, 3);
  EXPECT_EQ(h.pipeline.state(3), CommandState::kBackend);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(3, wire::Opcode::kRead)}));
  EXPECT_EQ(h.pipeline.inflight(), 1u);
  EXPECT_TRUE(h.pipeline.on_backend_done(3, 4096));
  EXPECT_EQ(h.io.take(), (std::vector<Event>{write_ev(3, false), answer_ev(3, AnswerKind::kAnswer)}));
  EXPECT_EQ(h.pipeline.state(3), CommandState::kFree);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_EQ(h.stats.reads.get(), 1u);
  EXPECT_EQ(h.stats.rdma_bytes.get(), 4096u);
}

TEST(CommandPipeline, ReadWithReadDoneImmediateSendsNoAnswer) {
  Harness h(config(false, 2, true));
  h.send(wire::Opcode::kRead, 0);
  h.io.take();
  h.pipeline.on_backend_done(0, 4096);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{write_ev(0, true)}));
  EXPECT_EQ(h.stats.read_done_imm.get(), 1u);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
}

TEST(CommandPipeline, WritesWaitForReadCreditsAndResumeInOrder) {
  Harness h(config(false, 2));
  for (uint16_t t = 0; t < 5; ++t) h.send(wire::Opcode::kWrite, t);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{read_ev(0, ReadKind::kCredited), read_ev(1, ReadKind::kCredited)}));
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 2u);
  for (uint16_t t = 2; t < 5; ++t) EXPECT_EQ(h.pipeline.state(t), CommandState::kNeedReadCredit);
  EXPECT_EQ(h.pipeline.state(0), CommandState::kReadingData);

  // Tag 1's data first: it goes to the backend, its credit to tag 2 (the oldest waiter).
  h.pipeline.on_read_done(1, ReadKind::kCredited, true);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(1, wire::Opcode::kWrite), read_ev(2, ReadKind::kCredited)}));
  h.pipeline.on_read_done(0, ReadKind::kCredited, true);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(0, wire::Opcode::kWrite), read_ev(3, ReadKind::kCredited)}));
  EXPECT_EQ(h.pipeline.state(4), CommandState::kNeedReadCredit);
  h.pipeline.on_read_done(2, ReadKind::kCredited, true);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(2, wire::Opcode::kWrite), read_ev(4, ReadKind::kCredited)}));
  h.pipeline.on_read_done(3, ReadKind::kCredited, true);
  h.pipeline.on_read_done(4, ReadKind::kCredited, true);
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
  for (uint16_t t = 0; t < 5; ++t) EXPECT_TRUE(h.pipeline.on_backend_done(t, 4096));
  h.io.take();
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_EQ(h.stats.rdma_reads_max.get(), 2u);
  EXPECT_EQ(h.stats.rdma_bytes.get(), 5u * 4096);
}

TEST(CommandPipeline, PushedWriteGoesStraightToBackend) {
  Harness h(config());
  h.send(wire::Opcode::kWrite, 2, wire::kCmdFlagPushed);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(2, wire::Opcode::kWrite)}));
  h.pipeline.on_backend_done(2, 4096);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(2, AnswerKind::kAnswer)}));
  EXPECT_EQ(h.stats.pushed_writes.get(), 1u);
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
}

TEST(CommandPipeline, DirectExportMovesDataWithoutBackend) {
  Harness h(config(true));
  h.send(wire::Opcode::kRead, 0);
  h.send(wire::Opcode::kWrite, 1);
  h.send(wire::Opcode::kWrite, 2, wire::kCmdFlagPushed);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{write_ev(0, false), answer_ev(0, AnswerKind::kAnswer),
                                             read_ev(1, ReadKind::kDirect), answer_ev(1, AnswerKind::kFenced),
                                             answer_ev(2, AnswerKind::kAnswer)}));
  for (uint16_t t = 0; t < 3; ++t) EXPECT_EQ(h.pipeline.state(t), CommandState::kFree);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
  // FLUSH still goes to the backend.
  h.send(wire::Opcode::kFlush, 3);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(3, wire::Opcode::kFlush)}));
}

// A direct WRITE's RDMA READ takes no credit; when the send budget signals it (every Nth work
// request, and all of them while draining) its completion must not give one back.
TEST(CommandPipeline, DirectReadCompletionsTakeBackNoCredit) {
  Harness h(config(true, 1));
  h.send(wire::Opcode::kWrite, 0);
  h.send(wire::Opcode::kWrite, 1);
  h.io.take();
  h.pipeline.on_read_done(0, ReadKind::kDirect, true);
  h.pipeline.on_read_done(1, ReadKind::kDirect, false);
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
}

// The same on an export without direct memory: a credited READ in flight keeps its credit.
TEST(CommandPipeline, CreditsCountOnlyCreditedReads) {
  Harness h(config(false, 1));
  h.send(wire::Opcode::kWrite, 0);
  h.send(wire::Opcode::kWrite, 1);
  h.io.take();
  h.pipeline.on_read_done(5, ReadKind::kDirect, true);  // not this tag's READ
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 1u);
  EXPECT_EQ(h.pipeline.state(1), CommandState::kNeedReadCredit);
  EXPECT_TRUE(h.io.take().empty());
  h.pipeline.on_read_done(0, ReadKind::kCredited, true);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(0, wire::Opcode::kWrite), read_ev(1, ReadKind::kCredited)}));
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 1u);
}

TEST(CommandPipeline, FlushAndDiscardGoToBackend) {
  Harness h(config());
  h.send(wire::Opcode::kFlush, 0);
  h.send(wire::Opcode::kDiscard, 1);
  h.send(wire::Opcode::kWriteZeroes, 2);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(0, wire::Opcode::kFlush), submit_ev(1, wire::Opcode::kDiscard),
                                             submit_ev(2, wire::Opcode::kWriteZeroes)}));
  h.pipeline.on_backend_done(1, 0);
  h.pipeline.on_backend_done(0, 0);
  h.pipeline.on_backend_done(2, 0);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(1, AnswerKind::kAnswer), answer_ev(0, AnswerKind::kAnswer),
                                             answer_ev(2, AnswerKind::kAnswer)}));
  EXPECT_EQ(h.stats.flushes.get(), 1u);
  EXPECT_EQ(h.stats.discards.get(), 1u);
  EXPECT_EQ(h.stats.write_zeroes.get(), 1u);
}

TEST(CommandPipeline, BackendErrorsAreAnswered) {
  Harness h(config());
  h.send(wire::Opcode::kRead, 0);
  h.io.take();
  h.pipeline.on_backend_done(0, -EIO);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(0, AnswerKind::kAnswer, -EIO)}));
  // Refused by the backend at once.
  h.io.submit_result = -ENOSPC;
  h.send(wire::Opcode::kFlush, 1);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(1, wire::Opcode::kFlush), answer_ev(1, AnswerKind::kAnswer, -ENOSPC)}));
  EXPECT_EQ(h.stats.backend_errors.get(), 2u);
  EXPECT_EQ(h.stats.errors.get(), 2u);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_FALSE(h.pipeline.on_backend_done(0, 0));  // not with the backend any more
}

TEST(CommandPipeline, RefusedCommandsAnswerFromScratch) {
  Harness h(config());
  h.send(wire::Opcode::kRead, 0);
  h.io.take();
  h.send(wire::Opcode::kRead, 0);      // busy
  h.send(wire::Opcode::kRead, kDepth);  // out of range
  h.pipeline.on_command(command(wire::Opcode::kRead, 1), true, 7);  // malformed
  auto ev = h.io.take();
  ASSERT_EQ(ev.size(), 3u);
  for (const Event& e : ev) EXPECT_EQ(e.detail, int(AnswerKind::kRefusal));
  EXPECT_EQ(ev[0].err, -EBUSY);
  EXPECT_EQ(h.stats.rejected.get(), 3u);
  EXPECT_EQ(h.stats.rejected_by[kRejectTagBusy].get(), 1u);
  EXPECT_EQ(h.stats.rejected_by[kRejectMalformed].get(), 1u);
  EXPECT_EQ(h.pipeline.inflight(), 1u);
}

// KEEP_ALIVE (v8): on the tag beyond the depth, answered at once from a scratch slot even with
// every tag busy or while draining; not a command. In any other form, or where it was not
// negotiated, it is refused as malformed.
TEST(CommandPipeline, KeepAliveIsAnsweredAtOnceOnItsOwnTag) {
  auto keep_alive = [](uint16_t tag) {
    wire::Decoded<wire::Command> d;
    d.value.opcode = wire::Opcode::kKeepAlive;
    d.value.tag = tag;
    d.value.generation = 3;
    return d;
  };
  PipelineConfig c = config();
  c.keep_alive = true;
  Harness h(c);
  for (uint16_t t = 0; t < kDepth; ++t) h.send(wire::Opcode::kRead, t);
  h.io.take();
  h.pipeline.on_command(keep_alive(kDepth), false, 48);
  h.pipeline.start_draining();
  h.pipeline.on_command(keep_alive(kDepth), false, 48);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(kDepth, AnswerKind::kKeepAlive),
                                             answer_ev(kDepth, AnswerKind::kKeepAlive)}));
  EXPECT_EQ(h.stats.keep_alives.get(), 2u);
  EXPECT_EQ(h.stats.commands.get(), uint64_t(kDepth));
  EXPECT_EQ(h.pipeline.inflight(), uint32_t(kDepth));

  auto with_length = keep_alive(kDepth);
  with_length.value.length = 4096;
  h.pipeline.on_command(keep_alive(0), false, 48);  // a request's tag
  h.pipeline.on_command(with_length, false, 48);
  Harness off(config());  // not negotiated
  off.pipeline.on_command(keep_alive(kDepth), false, 48);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(0, AnswerKind::kRefusal, -EINVAL),
                                             answer_ev(kDepth, AnswerKind::kRefusal, -EINVAL)}));
  EXPECT_EQ(off.io.take(), (std::vector<Event>{answer_ev(kDepth, AnswerKind::kRefusal, -EINVAL)}));
  EXPECT_EQ(h.stats.rejected_by[kRejectMalformed].get(), 2u);
  EXPECT_EQ(off.stats.keep_alives.get(), 0u);
}

// A resized export (an rbd image): a command beyond the size the connection started with is
// served once the export has grown, and after a KEEP_ALIVE (whose answer tells the client the
// size) one beyond a shrunk export's end is refused.
TEST(CommandPipeline, RangeFollowsTheExportSize) {
  PipelineConfig c = config();  // 1 MiB
  c.keep_alive = true;
  Harness h(c);
  auto at = [](wire::Opcode op, uint16_t tag, uint64_t offset) {
    auto d = command(op, tag);
    d.value.offset = offset;
    return d;
  };
  h.pipeline.on_command(at(wire::Opcode::kWrite, 1, 1 << 20), false, 48);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(1, AnswerKind::kRefusal, -ERANGE)}));
  h.io.size = 2 << 20;
  h.pipeline.on_command(at(wire::Opcode::kRead, 2, 1 << 20), false, 48);
  h.pipeline.on_command(at(wire::Opcode::kDiscard, 3, (2 << 20) - 4096), false, 48);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(2, wire::Opcode::kRead), submit_ev(3, wire::Opcode::kDiscard)}));
  h.io.size = 512 << 10;
  wire::Decoded<wire::Command> keep_alive;
  keep_alive.value.opcode = wire::Opcode::kKeepAlive;
  keep_alive.value.tag = kDepth;
  h.pipeline.on_command(keep_alive, false, 48);
  h.pipeline.on_command(at(wire::Opcode::kRead, 4, 768 << 10), false, 48);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{answer_ev(kDepth, AnswerKind::kKeepAlive),
                                             answer_ev(4, AnswerKind::kRefusal, -ERANGE)}));
  EXPECT_EQ(h.stats.rejected_by[unsigned(CommandCheck::kOutOfRange)].get(), 2u);
}

// The connection fails with a command in every waiting state: each tag is freed exactly once,
// nothing more is queued, and the credits come back.
TEST(CommandPipeline, FailureFreesEveryTagOnce) {
  Harness h(config(false, 1));
  h.send(wire::Opcode::kWrite, 0);  // takes the one credit: kReadingData
  h.send(wire::Opcode::kWrite, 1);  // kNeedReadCredit
  h.send(wire::Opcode::kWrite, 2);  // kNeedReadCredit
  h.send(wire::Opcode::kRead, 3);   // kBackend
  h.io.take();
  EXPECT_EQ(h.pipeline.state(0), CommandState::kReadingData);
  EXPECT_EQ(h.pipeline.state(1), CommandState::kNeedReadCredit);
  EXPECT_EQ(h.pipeline.state(3), CommandState::kBackend);
  EXPECT_EQ(h.pipeline.inflight(), 4u);

  h.pipeline.fail();
  EXPECT_EQ(h.pipeline.state(1), CommandState::kFree);
  EXPECT_EQ(h.pipeline.state(2), CommandState::kFree);
  EXPECT_EQ(h.pipeline.inflight(), 2u);
  h.pipeline.on_read_done(0, ReadKind::kCredited, false);  // flushed
  EXPECT_EQ(h.pipeline.state(0), CommandState::kFree);
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
  EXPECT_TRUE(h.pipeline.on_backend_done(3, 4096));
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  // Late or repeated completions change nothing.
  h.pipeline.on_read_done(0, ReadKind::kCredited, false);
  EXPECT_FALSE(h.pipeline.on_backend_done(3, 4096));
  h.send(wire::Opcode::kRead, 4);
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_TRUE(h.io.take().empty());
  EXPECT_EQ(h.pipeline.read_credits_in_use(), 0u);
}

TEST(CommandPipeline, FailureWithReadDataArrivingLate) {
  Harness h(config(false, 1));
  h.send(wire::Opcode::kWrite, 0);
  h.io.take();
  h.pipeline.fail();
  // The READ had completed before the QP went down: the command still goes to the backend
  // (its buffer is ours until it comes back), and is not answered.
  h.pipeline.on_read_done(0, ReadKind::kCredited, true);
  EXPECT_EQ(h.pipeline.state(0), CommandState::kBackend);
  EXPECT_TRUE(h.pipeline.on_backend_done(0, 4096));
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(0, wire::Opcode::kWrite)}));
  EXPECT_EQ(h.pipeline.inflight(), 0u);
}

TEST(CommandPipeline, DrainingFinishesInFlightAndLeavesNewUnanswered) {
  Harness h(config(false, 1));
  h.send(wire::Opcode::kWrite, 0);
  h.send(wire::Opcode::kWrite, 1);
  h.io.take();
  h.pipeline.start_draining();
  h.send(wire::Opcode::kRead, 2);  // the client reissues it after the connection closes
  EXPECT_TRUE(h.io.take().empty());
  EXPECT_EQ(h.stats.unanswered_at_stop.get(), 1u);
  h.pipeline.on_read_done(0, ReadKind::kCredited, true);
  h.pipeline.on_backend_done(0, 4096);
  h.pipeline.on_read_done(1, ReadKind::kCredited, true);
  h.pipeline.on_backend_done(1, 4096);
  EXPECT_EQ(h.io.take(), (std::vector<Event>{submit_ev(0, wire::Opcode::kWrite), read_ev(1, ReadKind::kCredited),
                                             answer_ev(0, AnswerKind::kAnswer), submit_ev(1, wire::Opcode::kWrite),
                                             answer_ev(1, AnswerKind::kAnswer)}));
  EXPECT_EQ(h.pipeline.inflight(), 0u);
  EXPECT_EQ(h.stats.errors.get(), 0u);
}

}  // namespace
}  // namespace ublkrdma::server
