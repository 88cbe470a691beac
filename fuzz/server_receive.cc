// What the server does with any SEND a client makes, up to the backend: the receive is split into
// commands as the connection splits it (decode_received) and each goes through the real pipeline
// and validator, against an export and negotiated limits the input chooses, interleaved with the
// completions the connection reports (RDMA READs, the backend, draining, failure). Properties:
//  - each command has exactly one outcome: refused, answered as a KEEP_ALIVE, taken on, or (a valid
//    one while the server stops) left unanswered for the client to reissue; it is taken on exactly
//    when docs/protocol.md's checks pass, its tag is free and the connection is not draining;
//  - nothing reaches the backend or RDMA outside the export, the negotiated limits or what the
//    export supports, and a tag is never taken twice;
//  - each command taken on is answered exactly once (nothing at all once the connection failed);
//    refusals echo the tag and generation, with a status the protocol names.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "server/backend.h"
#include "server/command_pipeline.h"
#include "server/received_commands.h"
#include "transport/auth_protocol.h"

namespace ublkrdma::fuzz {
namespace {

using server::AnswerKind;
using server::CommandPipeline;
using server::ReadKind;
using wire::Command;
using wire::Opcode;

// The export and what was negotiated, as Connection::setup hands them to the pipeline.
struct Setup {
  uint16_t depth = 1;
  uint64_t export_size = 0;
  uint32_t block_size = 512;
  bool read_only = false;
  uint32_t supported_ops = 0;
  uint32_t max_io = 4096;
  uint32_t max_reads = 1;
  bool direct = false;  // ram: data moves straight to and from the export's memory
  bool batch = false, read_imm = false, keep_alive = false, push_writes = false;
  bool auth = false;  // v9: receive slots also hold the AUTH_REQUEST

  explicit Setup(FuzzedDataProvider& in) {
    // The pipeline's code is the same at any depth; tables of up to 4096 tags only slowed the
    // fuzzer tenfold, for less coverage in the same time.
    depth = in.ConsumeIntegralInRange<uint16_t>(1, 64);
    block_size = 512u << in.ConsumeIntegralInRange(0, 3);
    export_size = in.ConsumeIntegral<uint64_t>() & ~uint64_t(block_size - 1);
    read_only = in.ConsumeBool();
    supported_ops = in.ConsumeIntegralInRange<uint32_t>(0, 15);
    max_io = 4096 * in.ConsumeIntegralInRange<uint32_t>(1, 1024);
    max_reads = in.ConsumeIntegralInRange<uint32_t>(1, 16);
    direct = in.ConsumeBool();
    batch = in.ConsumeBool();
    read_imm = in.ConsumeBool();
    keep_alive = in.ConsumeBool();
    push_writes = !read_only && in.ConsumeBool();  // negotiation never grants it on a read-only export
    auth = in.ConsumeBool();
  }

  // Connection's recv_slot_bytes_.
  size_t slot_bytes() const {
    size_t commands = batch ? wire::kMaxBatch * wire::kCommandSize : 64;
    return std::max(commands, auth ? (wire::kAuthRequestSize + 63) / 64 * 64 : 0);
  }

  server::PipelineConfig pipeline_config() const {
    server::PipelineConfig pc;
    pc.peer = "fuzz";
    pc.depth = depth;
    pc.max_reads = max_reads;
    pc.direct = direct;
    pc.read_imm = read_imm;
    pc.keep_alive = keep_alive;
    pc.limits = server::CommandLimits{export_size, block_size, read_only, supported_ops, max_io, depth, push_writes};
    pc.limits_nodata = pc.limits;
    pc.limits_nodata.max_io_bytes = UINT32_MAX;
    pc.limits_nodata.push_writes = false;
    return pc;
  }
};

// docs/protocol.md, "What the server checks before anything touches memory", written out.
bool passes_checks(const Command& c, const Setup& s) {
  bool read = c.opcode == Opcode::kRead, write = c.opcode == Opcode::kWrite, flush = c.opcode == Opcode::kFlush;
  bool discard = c.opcode == Opcode::kDiscard, zeroes = c.opcode == Opcode::kWriteZeroes;
  if (!(read || write || flush || discard || zeroes)) return false;
  if (c.tag >= s.depth) return false;
  if (c.flags & ~(wire::kCmdFlagFua | wire::kCmdFlagPushed)) return false;
  if ((c.flags & wire::kCmdFlagFua) && !(write && (s.supported_ops & server::kSupportsFua))) return false;
  if ((c.flags & wire::kCmdFlagPushed) && !(write && s.push_writes)) return false;
  if (!flush) {
    if (c.length == 0) return false;
    if ((read || write) && c.length > s.max_io) return false;
    if ((unsigned __int128)c.offset + c.length > s.export_size) return false;
    if (c.offset % s.block_size != 0 || c.length % s.block_size != 0) return false;
  }
  if ((write || discard || zeroes) && s.read_only) return false;
  if (flush && !(s.supported_ops & server::kSupportsFlush)) return false;
  if (discard && !(s.supported_ops & server::kSupportsDiscard)) return false;
  if (zeroes && !(s.supported_ops & server::kSupportsWriteZeroes)) return false;
  return true;
}

bool is_keep_alive(const Command& c, const Setup& s) {
  return s.keep_alive && c.tag == s.depth && c.flags == 0 && c.offset == 0 && c.length == 0 && c.rkey == 0 &&
         c.addr == 0;
}

bool same(const Command& a, const Command& b) {
  return a.opcode == b.opcode && a.flags == b.flags && a.tag == b.tag && a.generation == b.generation &&
         a.offset == b.offset && a.length == b.length && a.rkey == b.rkey && a.addr == b.addr;
}

// The connection's side: checks each request the pipeline makes against a model of every tag.
class FakeConnection final : public server::CommandIo {
 public:
  struct Tag {
    Command cmd{};
    bool busy = false;     // taken on, not answered yet
    bool reading = false;  // its credited RDMA READ is queued
    bool data_in = false;  // ... and completed
    bool backend = false;  // with the backend
  };

  FakeConnection(const Setup& s, const server::ConnectionStats& stats) : s_(s), stats_(stats), tags_(s.depth) {}
  void attach(const CommandPipeline& p) { pipeline_ = &p; }

  // Delivers one command as the connection does, and checks its one outcome.
  void deliver(CommandPipeline& p, const wire::Decoded<Command>& d, bool malformed, uint32_t byte_len) {
    if (p.failed()) {
      uint64_t before = outcomes();
      p.on_command(d, malformed, byte_len);
      FUZZ_CHECK(outcomes() == before);
      return;
    }
    const Command& c = d.value;
    enum { kRefused, kKeepAlive, kTaken, kUnanswered } expect;
    bool well_formed = d.ok() && !malformed;
    if (well_formed && c.opcode == Opcode::kKeepAlive)
      expect = is_keep_alive(c, s_) ? kKeepAlive : kRefused;
    else if (!well_formed || !passes_checks(c, s_) || tags_[c.tag].busy)
      expect = kRefused;
    else
      expect = p.draining() ? kUnanswered : kTaken;
    uint64_t refused = refused_, kept = keep_alives_, taken = taken_, unanswered = stats_.unanswered_at_stop.get();
    current_ = &c;
    p.on_command(d, malformed, byte_len);
    current_ = nullptr;
    // A WRITE that waits for an RDMA READ credit has asked for nothing yet.
    if (c.tag < s_.depth && p.state(c.tag) == server::CommandState::kNeedReadCredit && !tags_[c.tag].busy)
      take(c, true);
    FUZZ_CHECK(refused_ - refused == (expect == kRefused));
    FUZZ_CHECK(keep_alives_ - kept == (expect == kKeepAlive));
    FUZZ_CHECK(taken_ - taken == (expect == kTaken));
    FUZZ_CHECK(stats_.unanswered_at_stop.get() - unanswered == (expect == kUnanswered));
    check_counts(p);
  }

  void check_counts(const CommandPipeline& p) const {
    FUZZ_CHECK(p.inflight() == busy_ && p.read_credits_in_use() == reading_ && reading_ <= s_.max_reads);
  }

  // The pipeline frees the WRITEs waiting for a credit when the connection fails.
  void on_fail() {
    for (Tag& t : tags_)
      if (t.busy && !t.reading && !t.backend) put(t, Tag{});
  }
  // Completions the pipeline takes without answering once the connection failed.
  void forget(uint16_t tag) { put(tags_[tag], Tag{}); }
  // About to report a completion: the tag no longer waits for it.
  void read_completes(uint16_t tag) {
    Tag t = tags_[tag];
    t.reading = false;
    t.data_in = true;
    put(tags_[tag], t);
  }
  void backend_completes(uint16_t tag) { tags_[tag].backend = false; }

  const std::vector<Tag>& tags() const { return tags_; }

  void queue_rdma_read(const Command& cmd, ReadKind kind) override {
    FUZZ_CHECK(!pipeline_->failed());
    FUZZ_CHECK(cmd.opcode == Opcode::kWrite && !(cmd.flags & wire::kCmdFlagPushed));
    FUZZ_CHECK(kind == (s_.direct ? ReadKind::kDirect : ReadKind::kCredited));
    Tag& t = take(cmd, false);
    FUZZ_CHECK(!t.reading && !t.data_in && !t.backend);
    if (kind == ReadKind::kCredited) {
      Tag v = t;
      v.reading = true;
      put(t, v);
    }
  }

  void queue_rdma_write(const Command& cmd, bool read_done) override {
    FUZZ_CHECK(!pipeline_->failed());
    FUZZ_CHECK(cmd.opcode == Opcode::kRead && read_done == s_.read_imm);
    Tag& t = take(cmd, false);
    FUZZ_CHECK(!t.reading && !t.backend);
    if (read_done) finish(t);
  }

  void queue_answer(const Command& cmd, int err, AnswerKind kind) override {
    FUZZ_CHECK(!pipeline_->failed());
    FUZZ_CHECK(err == 0 || err == -EINVAL || err == -ERANGE || err == -EROFS || err == -EOPNOTSUPP || err == -EBUSY ||
               err == -EIO);
    switch (kind) {
      case AnswerKind::kRefusal:
        // Only while a command is delivered, to that command, as it was received.
        FUZZ_CHECK(current_ != nullptr && cmd.tag == current_->tag && cmd.generation == current_->generation);
        FUZZ_CHECK(err != 0);
        FUZZ_CHECK(err != -EBUSY || (cmd.tag < s_.depth && tags_[cmd.tag].busy));
        FUZZ_CHECK(err != -EIO || pipeline_->draining());
        ++refused_;
        return;
      case AnswerKind::kKeepAlive:
        FUZZ_CHECK(current_ != nullptr && same(cmd, *current_) && err == 0 && is_keep_alive(cmd, s_));
        ++keep_alives_;
        return;
      case AnswerKind::kAnswer:
      case AnswerKind::kFenced: {
        Tag& t = take(cmd, false);
        FUZZ_CHECK(!t.reading && !t.backend);
        // Fenced: a ram WRITE whose data the server's own RDMA READ brings in.
        bool fetched_direct = s_.direct && cmd.opcode == Opcode::kWrite && !(cmd.flags & wire::kCmdFlagPushed);
        FUZZ_CHECK((kind == AnswerKind::kFenced) == (fetched_direct && err == 0));
        FUZZ_CHECK(!(cmd.opcode == Opcode::kRead && err == 0 && s_.read_imm));
        finish(t);
        return;
      }
    }
    FUZZ_CHECK(false);
  }

  int submit_backend(const Command& cmd) override {
    Tag& t = take(cmd, false);
    FUZZ_CHECK(!t.reading && !t.backend);
    // ram: READ and WRITE data never goes through the backend.
    FUZZ_CHECK(!(s_.direct && (cmd.opcode == Opcode::kRead || cmd.opcode == Opcode::kWrite)));
    // A WRITE's data is in the tag's buffer first: pushed there, or fetched by a completed READ.
    FUZZ_CHECK(cmd.opcode != Opcode::kWrite || (cmd.flags & wire::kCmdFlagPushed) || t.data_in);
    if ((cmd.generation & 7) == 7) return -EIO;  // the backend refuses it at once (the input chooses)
    t.backend = true;  // busy and reading are unchanged
    return 0;
  }

 private:
  // The tag `cmd` names: taken on now (only while it is delivered, and only if every check
  // passes), or the command already on it.
  Tag& take(const Command& cmd, bool waiting) {
    FUZZ_CHECK(cmd.tag < s_.depth);
    Tag& t = tags_[cmd.tag];
    if (t.busy) {
      FUZZ_CHECK(same(t.cmd, cmd));
      return t;
    }
    FUZZ_CHECK(current_ != nullptr || waiting);
    FUZZ_CHECK(passes_checks(cmd, s_));
    put(t, Tag{cmd, true});
    ++taken_;
    return t;
  }
  void finish(Tag& t) { put(t, Tag{}); }
  // Every change of busy or reading goes through here, so that the counts stay O(1) to check.
  void put(Tag& t, const Tag& v) {
    busy_ += int(v.busy) - int(t.busy);
    reading_ += int(v.reading) - int(t.reading);
    t = v;
  }
  uint64_t outcomes() const { return refused_ + keep_alives_ + taken_ + stats_.unanswered_at_stop.get(); }

  const Setup& s_;
  const server::ConnectionStats& stats_;
  std::vector<Tag> tags_;
  const CommandPipeline* pipeline_ = nullptr;
  const Command* current_ = nullptr;  // the command being delivered
  uint64_t refused_ = 0, keep_alives_ = 0, taken_ = 0;
  uint32_t busy_ = 0, reading_ = 0;
};

// The index of the `pick`th tag in `tags` for which `pred` holds, or -1.
template <typename Pred>
int nth_tag(const std::vector<FakeConnection::Tag>& tags, size_t pick, Pred pred) {
  size_t n = 0;
  for (const auto& t : tags) n += pred(t);
  if (n == 0) return -1;
  pick %= n;
  for (size_t i = 0; i < tags.size(); ++i)
    if (pred(tags[i]) && pick-- == 0) return int(i);
  return -1;
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  FuzzedDataProvider in(data, size);
  const Setup s(in);
  server::ConnectionStats stats;
  FakeConnection conn(s, stats);
  server::CommandPipeline pipeline(s.pipeline_config(), conn, stats);
  conn.attach(pipeline);
  auto& tags = conn.tags();

  // One receive slot, as the connection sizes it; what a short message leaves of the one before
  // stays there, as in the real slot.
  std::array<uint8_t, wire::kMaxBatch * wire::kCommandSize> slot{};
  const size_t slot_bytes = s.slot_bytes();
  static_assert((wire::kAuthRequestSize + 63) / 64 * 64 <= slot.size());

  while (in.remaining_bytes() > 0) {
    switch (in.ConsumeIntegralInRange(0, 9)) {
      default: {  // a receive: mostly whole commands, sometimes any length (even one the slot cannot hold)
        uint8_t shape = in.ConsumeIntegral<uint8_t>();
        size_t len = shape < 224 ? wire::kCommandSize * (1 + shape % wire::kMaxBatch)
                                 : in.ConsumeIntegralInRange<size_t>(0, slot_bytes + wire::kCommandSize);
        std::vector<uint8_t> msg = in.ConsumeBytes<uint8_t>(std::min(len, slot_bytes));
        std::copy(msg.begin(), msg.end(), slot.begin());
        uint32_t byte_len = uint32_t(len > slot_bytes ? len : msg.size());
        server::ReceivedCommands r = server::decode_received({slot.data(), slot_bytes}, byte_len, s.batch);
        FUZZ_CHECK(r.count >= 1 && r.count <= wire::kMaxBatch);
        FUZZ_CHECK(r.malformed == (wire::messages_in(byte_len, wire::kCommandSize, s.batch) == 0 || byte_len > slot_bytes));
        FUZZ_CHECK(r.malformed ? r.count == 1 : r.count * wire::kCommandSize == byte_len);
        for (size_t i = 0; i < r.count; ++i) conn.deliver(pipeline, r.commands[i], r.malformed, byte_len);
        break;
      }
      case 1: {  // a credited RDMA READ completes
        int tag = nth_tag(tags, in.ConsumeIntegral<uint16_t>(), [](const auto& t) { return t.reading; });
        if (tag < 0) break;
        conn.read_completes(uint16_t(tag));
        pipeline.on_read_done(uint16_t(tag), ReadKind::kCredited, true);
        if (pipeline.failed() && !tags[tag].backend) conn.forget(uint16_t(tag));
        break;
      }
      case 2: {  // the backend completes
        int tag = nth_tag(tags, in.ConsumeIntegral<uint16_t>(), [](const auto& t) { return t.backend; });
        if (tag < 0) break;
        conn.backend_completes(uint16_t(tag));
        FUZZ_CHECK(pipeline.on_backend_done(uint16_t(tag), in.ConsumeBool() ? 0 : -EIO));
        if (pipeline.failed()) conn.forget(uint16_t(tag));
        break;
      }
      case 3: {  // completions that name nothing the pipeline waits for change nothing
        uint16_t tag = in.ConsumeIntegral<uint16_t>();
        bool backend_waits = tag < s.depth && tags[tag].backend;
        bool read_waits = tag < s.depth && tags[tag].reading;
        if (!backend_waits) FUZZ_CHECK(!pipeline.on_backend_done(tag, 0));
        pipeline.on_read_done(tag, ReadKind::kDirect, true);
        if (!read_waits && !pipeline.failed()) pipeline.on_read_done(tag, ReadKind::kCredited, true);
        break;
      }
      case 4:
        pipeline.start_draining();
        break;
      case 5: {  // an error completion: the connection fails, then the READ's flush comes back
        pipeline.fail();
        conn.on_fail();
        int tag = nth_tag(tags, in.ConsumeIntegral<uint16_t>(), [](const auto& t) { return t.reading; });
        if (tag >= 0) {
          pipeline.on_read_done(uint16_t(tag), ReadKind::kCredited, false);
          conn.forget(uint16_t(tag));
        }
        break;
      }
    }
    conn.check_counts(pipeline);
  }

  // Everything outstanding completes: then nothing is in flight, and every command was answered.
  for (bool more = true; more;) {
    more = false;
    for (size_t i = 0; i < tags.size(); ++i) {
      if (tags[i].reading) {
        conn.read_completes(uint16_t(i));
        pipeline.on_read_done(uint16_t(i), ReadKind::kCredited, !pipeline.failed());
        if (pipeline.failed() && !tags[i].backend) conn.forget(uint16_t(i));
        more = true;
      } else if (tags[i].backend) {
        conn.backend_completes(uint16_t(i));
        FUZZ_CHECK(pipeline.on_backend_done(uint16_t(i), 0));
        if (pipeline.failed()) conn.forget(uint16_t(i));
        more = true;
      }
    }
  }
  conn.check_counts(pipeline);
  FUZZ_CHECK(pipeline.inflight() == 0 && pipeline.read_credits_in_use() == 0);
  return 0;
}
