#include "targets/rdma_target.h"

#include <endian.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "base/counter.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/mapped_region.h"
#include "base/unique_fd.h"
#include "base/work_id.h"
#include "targets/connection_slots.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"
#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

using transport::Connection;

// Every kSignalEvery-th SEND is signaled; its completion retires the unsignaled ones before
// it. The send queue holds the in-flight commands plus two signaling windows, so a signaled
// send is always outstanding when the queue is close to full (no stall, no overflow).
constexpr uint32_t kSignalEvery = 16;
constexpr uint32_t kSqSlack = 2 * kSignalEvery;
// With PUSH_WRITES a WRITE takes two send-queue slots (its data's RDMA WRITE and its command);
// with PULL_READS a READ takes one (its RDMA READ, no command), and a fenced WRITE one (its RDMA
// WRITE; the chain's fence is the one slot more that a WRITE with a command would have taken).
constexpr uint32_t kWrsPerTag = 2;
static_assert(ublk::kMaxQueueDepth * kWrsPerTag + kSqSlack <= 0xffff, "send queue size must fit the QP limits we ask for");
static_assert(kSignalEvery >= 1 && kSqSlack >= 2 * kSignalEvery, "selective signaling needs two windows of slack");

constexpr int kPollBatch = 32;
// Hybrid polling spins for answers only while at most this many requests are out. At low depth
// the wait is one round trip and a wakeup would add to it; at high depth the answers come in
// batches, and spinning (sched_yield) takes CPU from the kernel work that produces them: 4k
// random IO at QD32 lost 7-16 % of its IOPS to it under emulation (ci/bench).
constexpr uint32_t kSpinMaxInflight = 4;
constexpr size_t kMsgSlot = 64;  // one cache line per command slot
// WorkId::op of the RDMA READ that fences a chain's fenced WRITEs (a pulled READ's op is kRead).
constexpr uint8_t kFenceOp = 0xff;
// What the fence reads: a few bytes of the last fenced WRITE's data, into that tag's command slot.
constexpr uint32_t kFenceBytes = 8;
static_assert(wire::kCommandSize <= kMsgSlot);
// A receive holds the largest answer message: kMaxBatch Responses once BATCH is negotiated
// (receives are posted before the server's answer says whether it is).
constexpr size_t kRecvSlot = wire::kMaxBatch * wire::kResponseSize;

// Watched fds (QueueContext::watch_fd_st tokens): the kind in the low two bits, the lane above.
constexpr uint8_t kTokenCq = 1;
constexpr uint8_t kTokenCm = 2;
constexpr uint8_t kTokenTimer = 3;
constexpr uint8_t lane_token(uint8_t kind, size_t lane) { return uint8_t(kind | (lane << 2)); }
static_assert(kMaxConnsPerQueue <= 64, "a lane's fd tokens must fit in a byte");

// Ticks of the IO timer per io_timeout: a request times out between 1x and 1.25x io_timeout.
constexpr uint32_t kTicksPerTimeout = 4;
// In busy mode the loop never arms fd watches: poll the cm channel and the timer ourselves.
constexpr uint32_t kHousekeepingEvery = 1024;

// One connection of a queue, made on the daemon's main thread and handed to the queue thread.
struct QueueLink {
  MappedRegion msgs;  // [depth receive slots][depth command slots], registered below
  std::unique_ptr<Connection> conn;  // declared after msgs: destroyed (and deregistered) first
  ibv_mr* msgs_mr = nullptr;
  wire::AcceptData accepted;
  uint16_t depth = 0;  // this connection's: how many of the queue's requests it may hold at once
};

struct RdmaCounters {
  RelaxedCounter rdma_bytes;         // data the server moved by RDMA for completed READ/WRITE
  RelaxedCounter copied_bytes;       // IO data copied in userspace (no such path exists: stays 0)
  RelaxedCounter commands;           // commands sent
  RelaxedCounter completed;          // responses matched to a command
  RelaxedCounter errors;             // requests completed with an error
  RelaxedCounter stale_completions;  // responses for a tag/generation no longer in flight
  RelaxedCounter timeouts;           // requests that exceeded io_timeout
  RelaxedCounter connection_lost;    // 1 once the connection is gone
  RelaxedCounter sq_depth_max;       // send-queue slots in use, high water
  RelaxedCounter recv_reposts;
  RelaxedCounter polls;              // ibv_poll_cq calls
  RelaxedCounter idle_polls;         // ... that found nothing
  RelaxedCounter max_poll_batch;     // most completions from one ibv_poll_cq
  RelaxedCounter doorbells;          // ibv_post_send calls
  RelaxedCounter max_post_batch;     // most commands in one ibv_post_send
  RelaxedCounter signaled_sends;
  RelaxedCounter inline_sends;
  RelaxedCounter command_sends;      // SENDs carrying commands (fewer than commands with BATCH)
  RelaxedCounter answers;            // Responses received (with BATCH, several per receive)
  RelaxedCounter cq_arms;            // ibv_req_notify_cq calls
  RelaxedCounter cq_events;          // completion channel wakeups
  RelaxedCounter read_done_imm;      // READs completed by the server's RDMA WRITE WITH IMMEDIATE
  RelaxedCounter pushed_writes;      // WRITEs whose data we put into the export by RDMA WRITE
  RelaxedCounter pulled_reads;       // READs whose data we took from the export by RDMA READ
  RelaxedCounter pulled_bytes;       // ... and their bytes (in rdma_bytes, but moved by us, not the server)
  RelaxedCounter fenced_writes;      // pushed WRITEs with no command, done by an RDMA READ fence
  RelaxedCounter fenced_bytes;       // ... and their bytes (in rdma_bytes; the server never sees them)
  RelaxedCounter fences;             // those RDMA READ fences (one per chain that has fenced WRITEs)
};

// One connection of a queue and the bookkeeping of its send queue. A queue has one lane or
// more (add --conns-per-queue); each request travels on the lane it was given at submission
// (the one holding the fewest requests), with its data, command, answer or fence all on that
// QP, so the RC ordering a fence relies on (an RDMA READ behind the RDMA WRITEs it proves) holds
// within the lane. Soft RDMA (rxe) caps what one QP has in flight (unacknowledged packets,
// packets queued at the responder), so more lanes let one queue keep more IO moving.
// On the wire a request is named by its slot on the lane (0..link.depth-1), not by its ublk tag:
// a connection negotiates only the depth it can carry, so the server's per-connection state (a
// file export's buffer pool) does not grow with the number of connections.
struct Lane {
  QueueLink link;
  ibv_mr* slab_mr = nullptr;      // the queue's IO slab on this connection's PD (owned by it)
  std::vector<uint16_t> pending;  // tags encoded but not yet posted
  ConnectionSlots slots;          // its requests (kQueued or kInFlight), by their wire tag
  bool cq_armed = false;
  // Send-queue accounting: slots used, and for each outstanding signaled send how many slots
  // its completion frees.
  size_t sq_capacity = 0;
  size_t sq_used = 0;
  uint32_t since_signal = 0;
  std::vector<uint32_t> signal_fifo;
  size_t fifo_head = 0, fifo_tail = 0;
  // Fenced WRITEs in posting order, and per outstanding fence how many of them it completes.
  std::vector<uint16_t> fenced_ring;
  size_t fenced_head = 0, fenced_tail = 0;
  std::vector<uint16_t> fence_sizes;
  size_t fence_head = 0, fence_tail = 0;

  // Whether a completion may still come: only such lanes are polled and armed, so a queue at
  // low depth pays for one CQ, not for all of them.
  bool expects_completions() const { return slots.in_use() > 0 || fifo_head != fifo_tail; }
  uint16_t depth() const { return link.depth; }
};

class RdmaQueueTarget final : public ublk::QueueTarget {
 public:
  RdmaQueueTarget(std::vector<QueueLink> links, const RdmaTargetOptions& opts, uint16_t queue_id)
      : opts_(opts), queue_id_(queue_id), depth_(opts.queue_depth) {
    lanes_.resize(links.size());
    for (size_t l = 0; l < links.size(); ++l) lanes_[l].link = std::move(links[l]);
  }

  ~RdmaQueueTarget() override {
    for (Lane& lane : lanes_)
      if (lane.link.conn) lane.link.conn->close_st();
  }

  void start_st(ublk::QueueContext& ctx) override {
    ctx_ = &ctx;
    if (ctx.depth() != depth_)
      throw_setup("rdma queue {}: ublk queue depth {} differs from the negotiated {}", queue_id_, ctx.depth(), depth_);
    if (ctx.max_io_bytes() > lanes_.front().link.accepted.max_io_bytes)
      throw_setup("rdma queue {}: ublk max IO {} exceeds the negotiated {}", queue_id_, ctx.max_io_bytes(),
                  lanes_.front().link.accepted.max_io_bytes);
    max_io_ = ctx.max_io_bytes();
    auto slab = ctx.io_slab();
    const wire::AcceptData& accepted = lanes_.front().link.accepted;  // the same on every lane
    tags_.assign(depth_, TagSlot{});
    send_sges_.resize(depth_);
    recv_wrs_.resize(depth_);
    recv_sges_.resize(depth_);
    use_inline_ = lanes_.front().link.conn->max_inline() >= wire::kCommandSize;
    read_imm_ = accepted.read_imm();
    batch_ = accepted.batch();
    push_writes_ = accepted.push_writes();
    pull_reads_ = accepted.pull_reads();
    // A WRITE pushed into the export needs no answer when an RDMA READ after it on the same QP
    // can prove it placed: that takes the export window with remote read (PULL_READS).
    fence_writes_ = opts_.fence_writes && push_writes_ && pull_reads_ && !accepted.push_slots();
    send_wrs_.resize(size_t(depth_) * kWrsPerTag);
    push_sges_.resize(depth_);
    command_tags_.reserve(depth_);
    for (size_t l = 0; l < lanes_.size(); ++l) {
      Lane& lane = lanes_[l];
      // The server reads write data from and writes read data into the slab: one MR per
      // connection, remote read+write, covering only the slab.
      lane.slab_mr = lane.link.conn->register_memory(
          slab.data(), slab.size(), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE,
          fmt::format("queue {} IO slab (connection {})", queue_id_, l));
      uint16_t d = lane.depth();
      if (d == 0 || d > depth_)
        throw_setup("rdma queue {}: connection {} has depth {} (queue: {})", queue_id_, l, d, depth_);
      lane.pending.reserve(d);
      lane.slots = ConnectionSlots(d);
      lane.fenced_ring.assign(d, 0);
      lane.fence_sizes.assign(size_t(d) + 1, 0);
      lane.sq_capacity = size_t(d) * (push_writes_ ? kWrsPerTag : 1) + kSqSlack;
      lane.signal_fifo.assign(lane.sq_capacity, 0);
      ctx.watch_fd_st(lane.link.conn->cq_fd(), lane_token(kTokenCq, l));
      ctx.watch_fd_st(lane.link.conn->cm_fd(), lane_token(kTokenCm, l));
    }
    if (opts_.io_timeout.count() > 0) {
      timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
      if (!timer_) throw_errno(errno, "rdma queue {}: timerfd_create", queue_id_);
      auto period = std::max<int64_t>(opts_.io_timeout.count() / kTicksPerTimeout, 10);
      itimerspec its{};
      its.it_interval.tv_sec = period / 1000;
      its.it_interval.tv_nsec = (period % 1000) * 1000000;
      its.it_value = its.it_interval;
      if (::timerfd_settime(timer_.get(), 0, &its, nullptr) != 0)
        throw_errno(errno, "rdma queue {}: timerfd_settime", queue_id_);
      ctx.watch_fd_st(timer_.get(), kTokenTimer);
    }
    log::rdma()->debug("queue {}: {} connection(s) to {} via {} (depth {}, {} per connection, max IO {}, "
                       "inline {} bytes)",
                       queue_id_, lanes_.size(), lanes_.front().link.conn->peer_address(),
                       lanes_.front().link.conn->device_name(), depth_, lanes_.front().depth(), max_io_,
                       lanes_.front().link.conn->max_inline());
  }

  void submit_st(const ublk::IoRequest& req) override {
    if (dead_) return fail_now(req.tag, -EIO);
    TagSlot& t = tags_[req.tag];
    if (t.state != TagState::kFree) {
      log::rdma()->error("queue {}: tag {} submitted while in use (state {})", queue_id_, req.tag, int(t.state));
      return fail_now(req.tag, -EIO);
    }
    wire::Command cmd;
    bool pulled = false, fenced = false;
    cmd.offset = req.offset;
    cmd.length = req.length;
    switch (req.op) {
      case ublk::kOpRead:
        cmd.opcode = wire::Opcode::kRead;
        pulled = pull_reads_ && req.length <= opts_.pull_max_bytes;
        break;
      case ublk::kOpWrite:
        cmd.opcode = wire::Opcode::kWrite;
        if (req.flags & ublk::kIoFFua) cmd.flags = wire::kCmdFlagFua;
        if (push_writes_ && req.length <= opts_.push_max_bytes) cmd.flags |= wire::kCmdFlagPushed;
        fenced = fence_writes_ && (cmd.flags & wire::kCmdFlagPushed);
        break;
      case ublk::kOpFlush:
        cmd.opcode = wire::Opcode::kFlush;
        cmd.offset = 0;
        cmd.length = 0;
        break;
      case ublk::kOpDiscard:
        cmd.opcode = wire::Opcode::kDiscard;
        break;
      case ublk::kOpWriteZeroes:
        cmd.opcode = wire::Opcode::kWriteZeroes;
        break;
      default:
        return fail_now(req.tag, -EOPNOTSUPP);
    }
    if ((cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite) && req.length > max_io_)
      return fail_now(req.tag, -EINVAL);
    t.lane = pick_lane_st();
    Lane& lane = lanes_[t.lane];
    if (lane.slots.full()) {  // cannot happen: the least loaded lane has a free slot
      log::rdma()->error("queue {}: connection {} has no free slot for tag {}", queue_id_, t.lane, req.tag);
      return fail_now(req.tag, -EIO);
    }
    t.slot = lane.slots.take(req.tag);
    cmd.tag = t.slot;
    if (cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite) {
      cmd.addr = reinterpret_cast<uint64_t>(req.buffer);
      cmd.rkey = lane.slab_mr->rkey;
    }
    // One counter for the queue, not one per tag: a slot passes between tags, and an answer
    // must never match a later request in the same slot.
    next_generation_ = (next_generation_ + 1) & WorkId::kGenMask;
    t.generation = next_generation_;
    cmd.generation = t.generation;
    t.state = TagState::kQueued;
    t.op = uint8_t(cmd.opcode);
    t.length = cmd.length;
    t.tick = tick_;
    t.pushed = cmd.flags & wire::kCmdFlagPushed;
    t.pulled = pulled;
    t.fenced = fenced;
    if (t.pushed || t.pulled) {
      t.buffer = cmd.addr;
      t.offset = cmd.offset;
    }

    // A pulled READ is our RDMA READ alone, a fenced WRITE our RDMA WRITE alone: the server
    // hears nothing of either.
    if (t.sends_command()) {
      uint8_t* slot = command_slot(lane, t.slot);
      wire::encode_into(cmd, std::span<uint8_t, wire::kCommandSize>(slot, wire::kCommandSize));
    }
    lane.pending.push_back(req.tag);
    ++pending_;
    ++inflight_;
  }

  int poll_st() override {
    if (pending_) flush_all_st();
    int handled = poll_lanes_st();
    if (++polls_since_housekeeping_ >= kHousekeepingEvery) {
      polls_since_housekeeping_ = 0;
      housekeeping_st();
    }
    return handled;
  }

  ublk::IdleAdvice idle_advice_st() const override {
    if (pending_) return ublk::IdleAdvice::kSpin;  // sends wait for send-queue room
    if (inflight_ == 0) return ublk::IdleAdvice::kNothingHeld;
    return inflight_ <= kSpinMaxInflight ? ublk::IdleAdvice::kSpin : ublk::IdleAdvice::kSleep;
  }

  bool prepare_to_sleep_st() override {
    if (pending_) flush_all_st();
    if (dead_) return true;
    for (Lane& lane : lanes_) {
      if (lane.cq_armed || !lane.expects_completions()) continue;
      if (int rc = lane.link.conn->arm_cq_st(); rc < 0) {
        log::rdma()->error("queue {}: ibv_req_notify_cq: {}", queue_id_, errno_text(rc));
        return false;  // keep spinning rather than sleep without a wakeup
      }
      lane.cq_armed = true;
      counters_.cq_arms.add_st();
    }
    // Armed before this last poll: a completion that lands after it raises the event.
    return poll_lanes_st() == 0 && pending_ == 0;
  }

  void on_fd_ready_st(uint8_t token) override {
    size_t l = token >> 2;
    if (l >= lanes_.size()) return;
    Lane& lane = lanes_[l];
    switch (token & 3) {
      case kTokenCq:
        while (lane.link.conn->consume_cq_event_st()) counters_.cq_events.add_st();
        lane.cq_armed = false;
        poll_cq_st(lane);
        break;
      case kTokenCm:
        handle_cm_events_st(lane);
        break;
      case kTokenTimer:
        handle_timer_st();
        break;
      default:
        break;
    }
  }

  void stop_st() override {
    // The loop is done with the slab: make sure the device is too before it is unmapped.
    dead_ = true;
    for (Lane& lane : lanes_)
      if (lane.link.conn) lane.link.conn->close_st();
    log::rdma()->debug("queue {}: stopped ({} commands, {} errors, {} stale)", queue_id_, counters_.commands.get(),
                       counters_.errors.get(), counters_.stale_completions.get());
  }

  std::string stats_json() const override {
    const RdmaCounters& c = counters_;
    nlohmann::json j = {
        {"rdma_bytes", c.rdma_bytes.get()},
        {"copied_bytes", c.copied_bytes.get()},
        {"commands", c.commands.get()},
        {"completed", c.completed.get()},
        {"errors", c.errors.get()},
        {"stale_completions", c.stale_completions.get()},
        {"timeouts", c.timeouts.get()},
        {"connection_lost", c.connection_lost.get()},
        {"sq_depth_max", c.sq_depth_max.get()},
        {"recv_reposts", c.recv_reposts.get()},
        {"polls", c.polls.get()},
        {"idle_polls", c.idle_polls.get()},
        {"max_poll_batch", c.max_poll_batch.get()},
        {"doorbells", c.doorbells.get()},
        {"max_post_batch", c.max_post_batch.get()},
        {"signaled_sends", c.signaled_sends.get()},
        {"inline_sends", c.inline_sends.get()},
        {"command_sends", c.command_sends.get()},
        {"answers", c.answers.get()},
        {"cq_arms", c.cq_arms.get()},
        {"cq_events", c.cq_events.get()},
        {"read_done_imm", c.read_done_imm.get()},
        {"pushed_writes", c.pushed_writes.get()},
        {"pulled_reads", c.pulled_reads.get()},
        {"pulled_bytes", c.pulled_bytes.get()},
        {"fenced_writes", c.fenced_writes.get()},
        {"fenced_bytes", c.fenced_bytes.get()},
        {"fences", c.fences.get()},
        {"read_imm", read_imm_},
        {"batch", batch_},
        {"push_writes", push_writes_},
        {"push_slots", lanes_.front().link.accepted.push_slots()},
        {"connections", lanes_.size()},
        {"connection_depth", lanes_.front().depth()},
        {"pull_reads", pull_reads_},
        {"fence_writes", fence_writes_},
    };
    return j.dump();
  }

 private:
  enum class TagState : uint8_t { kFree, kQueued, kInFlight };
  struct TagSlot {
    uint32_t generation = 0;
    uint32_t length = 0;
    uint32_t tick = 0;
    TagState state = TagState::kFree;
    uint8_t op = 0;
    uint8_t lane = 0;     // the connection it travels on (set at submission) ...
    uint16_t slot = 0;    // ... and its slot there: its tag on the wire
    bool pushed = false;  // a WRITE whose data goes out by our RDMA WRITE before its command
    bool pulled = false;  // a READ that is our RDMA READ of the export, with no command
    bool fenced = false;  // a pushed WRITE with no command, done when the fence READ behind it is
    uint64_t buffer = 0;  // pushed or pulled: where its data is in the slab ...
    uint64_t offset = 0;  // ... and where it is in the export

    bool sends_command() const { return !pulled && !fenced; }
  };

  Lane& lane_of(uint16_t tag) { return lanes_[tags_[tag].lane]; }

  // The lane holding the fewest requests, the lowest on a tie: a shallow queue stays on one
  // connection (one CQ to poll, and the server sees its commands back to back on one thread),
  // a deep one spreads over all of them.
  uint8_t pick_lane_st() const {
    return uint8_t(least_loaded(lanes_.size(), [this](size_t l) { return lanes_[l].slots.in_use(); }));
  }
  size_t lane_index(const Lane& lane) const { return size_t(&lane - lanes_.data()); }

  // A lane's link.msgs: [lane depth receive slots][lane depth command slots]
  uint8_t* response_slot(const Lane& lane, uint16_t i) const {
    return static_cast<uint8_t*>(lane.link.msgs.get()) + size_t(i) * kRecvSlot;
  }
  uint8_t* command_slot(const Lane& lane, uint16_t slot) const {
    return static_cast<uint8_t*>(lane.link.msgs.get()) + size_t(lane.depth()) * kRecvSlot + size_t(slot) * kMsgSlot;
  }

  void fail_now(uint16_t tag, int err) {
    counters_.errors.add_st();
    ctx_->complete_st(tag, err);
  }

  void complete_tag_st(uint16_t tag, int result) {
    TagSlot& t = tags_[tag];
    t.state = TagState::kFree;
    lane_of(tag).slots.release(t.slot);
    --inflight_;
    if (result < 0) {
      counters_.errors.add_st();
    } else if (t.op == uint8_t(wire::Opcode::kRead) || t.op == uint8_t(wire::Opcode::kWrite)) {
      counters_.rdma_bytes.add_st(t.length);
    }
    ctx_->complete_st(tag, result);
  }

  // Posts every queued request with one ibv_post_send (one doorbell): one SEND per command, or
  // with BATCH up to kMaxBatch commands per SEND (one scatter/gather entry each). Our own RDMA
  // lead the chain: with PUSH_WRITES the RDMA WRITEs of the WRITEs' data (RC places them before
  // the server sees any SEND behind them, so the data is in the export when its command
  // arrives), with PULL_READS the READs' RDMA READs (signaled: their completion is the READ's).
  // Fenced WRITEs send no command: after the chain's RDMA WRITEs one signaled RDMA READ of the
  // export (the fence) completes only once the responder has executed every earlier RDMA WRITE
  // on this QP (an RDMA READ never passes an RDMA WRITE), so their data is in the export's
  // memory, where any later READ, from any queue, finds it; its completion completes them all.
  void flush_all_st() {
    for (Lane& lane : lanes_)
      if (!lane.pending.empty()) flush_sends_st(lane);
  }

  void flush_sends_st(Lane& lane) {
    if (dead_) return;
    size_t per_send = batch_ ? wire::kMaxBatch : 1;
    size_t room = lane.sq_capacity - lane.sq_used;
    // As many requests as their SENDs and our RDMA fit the send queue.
    size_t taken = 0, cmds = 0, own = 0;
    bool fence = false;
    while (taken < lane.pending.size()) {
      const TagSlot& t = tags_[lane.pending[taken]];
      size_t o = own + (t.pushed || t.pulled ? 1 : 0) + (t.fenced && !fence ? 1 : 0);
      size_t c = cmds + (t.sends_command() ? 1 : 0);
      if (o + (c + per_send - 1) / per_send > room) break;
      own = o;
      cmds = c;
      fence = fence || t.fenced;
      ++taken;
    }
    if (taken == 0) return;  // wait for a signaled completion to free slots
    size_t n = (cmds + per_send - 1) / per_send;  // SENDs
    size_t total = own + n;                       // work requests in this chain
    command_tags_.clear();
    size_t w = 0, pushes = 0, pulls = 0, fenced = 0;
    uint16_t last_fenced = 0;
    for (size_t i = 0; i < taken; ++i) {
      uint16_t tag = lane.pending[i];
      TagSlot& t = tags_[tag];
      if (t.sends_command()) command_tags_.push_back(tag);
      if (!t.pushed && !t.pulled) continue;
      ibv_send_wr& wr = send_wrs_[w];
      wr = ibv_send_wr{};
      push_sges_[w] = ibv_sge{t.buffer, t.length, lane.slab_mr->lkey};
      wr.sg_list = &push_sges_[w];
      wr.num_sge = 1;
      wr.next = w + 1 < total ? &send_wrs_[w + 1] : nullptr;
      ++lane.since_signal;
      if (t.pulled) {
        wr.wr_id = WorkId{WorkKind::kRdmaRead, queue_id_, tag, t.op, t.generation}.encode();
        wr.opcode = IBV_WR_RDMA_READ;
        wr.wr.rdma.remote_addr = lane.link.accepted.pull_source(t.offset);
        wr.send_flags = IBV_SEND_SIGNALED;
        signal_slots_st(lane);
        t.state = TagState::kInFlight;
        ++pulls;
      } else {
        wr.wr_id = WorkId{WorkKind::kRdmaWrite, queue_id_, tag, t.op, t.generation}.encode();
        wr.opcode = IBV_WR_RDMA_WRITE;
        wr.wr.rdma.remote_addr = lane.link.accepted.push_target(t.slot, t.offset);
        ++pushes;
        if (t.fenced) {
          t.state = TagState::kInFlight;
          lane.fenced_ring[lane.fenced_tail] = tag;
          lane.fenced_tail = (lane.fenced_tail + 1) % lane.fenced_ring.size();
          last_fenced = tag;
          ++fenced;
        }
      }
      wr.wr.rdma.rkey = lane.link.accepted.window_rkey;
      ++w;
    }
    if (fenced) {
      const TagSlot& t = tags_[last_fenced];
      ibv_send_wr& wr = send_wrs_[w];
      wr = ibv_send_wr{};
      fence_sge_ = ibv_sge{reinterpret_cast<uint64_t>(command_slot(lane, t.slot)), kFenceBytes,
                           lane.link.msgs_mr->lkey};
      wr.sg_list = &fence_sge_;
      wr.num_sge = 1;
      wr.wr_id = WorkId{WorkKind::kRdmaRead, queue_id_, last_fenced, kFenceOp, t.generation}.encode();
      wr.opcode = IBV_WR_RDMA_READ;
      wr.wr.rdma.remote_addr = lane.link.accepted.push_target(t.slot, t.offset);
      wr.wr.rdma.rkey = lane.link.accepted.window_rkey;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.next = w + 1 < total ? &send_wrs_[w + 1] : nullptr;
      ++lane.since_signal;
      signal_slots_st(lane);
      lane.fence_sizes[lane.fence_tail] = uint16_t(fenced);
      lane.fence_tail = (lane.fence_tail + 1) % lane.fence_sizes.size();
      ++w;
    }
    size_t next = 0;
    for (size_t i = 0; i < n; ++i) {
      size_t k = std::min(per_send, cmds - next);
      ibv_send_wr& wr = send_wrs_[w + i];
      wr = ibv_send_wr{};
      wr.sg_list = &send_sges_[next];
      for (size_t j = 0; j < k; ++j, ++next) {
        uint16_t tag = command_tags_[next];
        send_sges_[next] = ibv_sge{reinterpret_cast<uint64_t>(command_slot(lane, tags_[tag].slot)),
                                   uint32_t(wire::kCommandSize),
                                   lane.link.msgs_mr->lkey};
        tags_[tag].state = TagState::kInFlight;
      }
      uint16_t tag = command_tags_[next - k];
      wr.wr_id = WorkId{WorkKind::kRdmaSend, queue_id_, tag, tags_[tag].op, tags_[tag].generation}.encode();
      wr.num_sge = int(k);
      wr.opcode = IBV_WR_SEND;
      wr.next = i + 1 < n ? &send_wrs_[w + i + 1] : nullptr;
      if (use_inline_ && k * wire::kCommandSize <= lane.link.conn->max_inline()) {
        wr.send_flags |= IBV_SEND_INLINE;
        counters_.inline_sends.add_st();
      }
      ++lane.since_signal;
      bool last = i + 1 == n;
      // Signal every kSignalEvery-th work request, and the last of a batch when the queue is
      // filling up, so that a completion is always on its way to free slots.
      if (lane.since_signal >= kSignalEvery || (last && lane.sq_used + total + kSignalEvery > lane.sq_capacity)) {
        wr.send_flags |= IBV_SEND_SIGNALED;
        signal_slots_st(lane);
      }
    }
    ibv_send_wr* bad = nullptr;
    int rc = ibv_post_send(lane.link.conn->qp(), &send_wrs_[0], &bad);
    counters_.doorbells.add_st();
    counters_.max_post_batch.max_st(taken);
    counters_.commands.add_st(cmds);
    counters_.command_sends.add_st(n);
    counters_.pushed_writes.add_st(pushes);
    counters_.pulled_reads.add_st(pulls);
    counters_.fenced_writes.add_st(fenced);
    counters_.fences.add_st(fenced ? 1 : 0);
    lane.sq_used += total;
    counters_.sq_depth_max.max_st(lane.sq_used);
    lane.pending.erase(lane.pending.begin(), lane.pending.begin() + ptrdiff_t(taken));
    pending_ -= taken;
    if (rc != 0) {
      log::rdma()->error("queue {}: ibv_post_send of {} requests failed: {}", queue_id_, taken, errno_text(rc));
      connection_lost_st("posting commands failed");
    }
  }

  // Polls the CQ of every lane that may still get a completion; returns how many it reaped.
  int poll_lanes_st() {
    int n = 0;
    for (Lane& lane : lanes_)
      if (lane.expects_completions()) n += poll_cq_st(lane);
    return n;
  }

  // The work request just marked signaled retires itself and the unsignaled ones before it.
  void signal_slots_st(Lane& lane) {
    lane.signal_fifo[lane.fifo_tail] = lane.since_signal;
    lane.fifo_tail = (lane.fifo_tail + 1) % lane.signal_fifo.size();
    lane.since_signal = 0;
    counters_.signaled_sends.add_st();
  }

  int poll_cq_st(Lane& lane) {
    if (!lane.link.conn || lane.link.conn->closed()) return 0;
    ibv_wc wcs[kPollBatch];
    int n = ibv_poll_cq(lane.link.conn->cq(), kPollBatch, wcs);
    counters_.polls.add_st();
    if (n <= 0) {
      if (n < 0) {
        log::rdma()->error("queue {}: ibv_poll_cq: {}", queue_id_, errno_text(-n));
        connection_lost_st("polling the CQ failed");
      }
      counters_.idle_polls.add_st();
      return 0;
    }
    counters_.max_poll_batch.max_st(uint64_t(n));
    size_t reposts = 0;
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      WorkId id = WorkId::decode(wc.wr_id);
      if (wc.status != IBV_WC_SUCCESS) {
        if (!dead_) {
          log::rdma()->error("queue {}: {} completion failed: {} (vendor error {:#x})", queue_id_,
                             id.kind == WorkKind::kRdmaRecv    ? "receive"
                             : id.kind == WorkKind::kRdmaWrite ? "RDMA WRITE of write data"
                             : id.kind == WorkKind::kRdmaRead  ? (id.op == kFenceOp ? "RDMA READ fencing WRITEs"
                                                                                   : "RDMA READ of read data")
                                                               : "send",
                             ibv_wc_status_str(wc.status),
                             wc.vendor_err);
          connection_lost_st("work request failed");
        }
        continue;
      }
      if (id.kind == WorkKind::kRdmaSend || id.kind == WorkKind::kRdmaRead) {
        // Send-queue completions come in posting order: this is the oldest signaled one.
        if (lane.fifo_head != lane.fifo_tail) {
          lane.sq_used -= lane.signal_fifo[lane.fifo_head];
          lane.fifo_head = (lane.fifo_head + 1) % lane.signal_fifo.size();
        }
        if (id.kind == WorkKind::kRdmaRead) {
          if (id.op == kFenceOp) {
            handle_fence_done_st(lane);
          } else {
            handle_pull_done_st(id);
          }
        }
      } else if (id.kind == WorkKind::kRdmaRecv) {
        if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
          handle_read_done_st(lane, wc);
        } else {
          handle_response_st(lane, wc);
        }
        if (!dead_ && id.tag < lane.depth()) {
          ibv_recv_wr& wr = recv_wrs_[reposts];
          ibv_sge& sge = recv_sges_[reposts];
          sge.addr = reinterpret_cast<uint64_t>(response_slot(lane, id.tag));
          sge.length = kRecvSlot;
          sge.lkey = lane.link.msgs_mr->lkey;
          wr = ibv_recv_wr{};
          wr.wr_id = wc.wr_id;
          wr.sg_list = &sge;
          wr.num_sge = 1;
          if (reposts > 0) recv_wrs_[reposts - 1].next = &wr;
          ++reposts;
        }
      }
    }
    if (reposts && !dead_) {
      ibv_recv_wr* bad = nullptr;
      if (int rc = ibv_post_recv(lane.link.conn->qp(), &recv_wrs_[0], &bad)) {
        log::rdma()->error("queue {}: reposting {} receives failed: {}", queue_id_, reposts, errno_text(rc));
        connection_lost_st("reposting receives failed");
      } else {
        counters_.recv_reposts.add_st(reposts);
      }
    }
    return n;
  }

  // One receive: a Response, or with BATCH up to kMaxBatch of them back to back.
  void handle_response_st(const Lane& lane, const ibv_wc& wc) {
    WorkId id = WorkId::decode(wc.wr_id);
    size_t n = wire::messages_in(wc.byte_len, wire::kResponseSize, batch_);
    if (id.tag >= lane.depth() || n == 0) {
      log::rdma()->error("queue {}: answer of {} bytes in slot {}: protocol error", queue_id_, wc.byte_len, id.tag);
      return connection_lost_st("malformed response");
    }
    for (size_t i = 0; i < n && !dead_; ++i)
      handle_one_response_st(lane, response_slot(lane, id.tag) + i * wire::kResponseSize);
  }

  void handle_one_response_st(const Lane& lane, const uint8_t* p) {
    counters_.answers.add_st();
    auto d = wire::decode_response(std::span<const uint8_t>(p, wire::kResponseSize));
    if (!d.ok()) {
      log::rdma()->error("queue {}: malformed response: {}", queue_id_, wire::decode_error_text(d.error));
      return connection_lost_st("malformed response");
    }
    const wire::Response& r = d.value;
    // The answer names the lane's slot; a slot holding no request, or one of another opcode or
    // generation, makes it stale.
    uint16_t tag = lane.slots.tag_of(r.tag);
    if (tag == kNoTag || !awaits_answer_st(tag, uint8_t(r.opcode)) || tags_[tag].generation != r.generation) {
      counters_.stale_completions.add_st();
      SPDLOG_LOGGER_DEBUG(log::rdma_cq(), "queue {}: stale response slot {} generation {} on connection {}", queue_id_,
                          r.tag, r.generation, lane_index(lane));
      return;
    }
    counters_.completed.add_st();
    int err = wire::status_to_errno(r.status);
    SPDLOG_LOGGER_TRACE(log::rdma_cq(), "q{} tag {} (slot {}) gen {} status {}", queue_id_, tag, r.tag, r.generation,
                        r.status);
    complete_tag_st(tag, err < 0 ? err : int(tags_[tag].length));
  }

  // Whether `tag` names a command of opcode `op` that waits for its answer (the caller checks
  // the generation); anything else is a stale or foreign answer.
  bool awaits_answer_st(uint16_t tag, uint8_t op) const {
    return tag < depth_ && tags_[tag].state == TagState::kInFlight && tags_[tag].op == op;
  }

  // A READ's data arrived with its answer in the immediate (status 0).
  void handle_read_done_st(const Lane& lane, const ibv_wc& wc) {
    if (!read_imm_ || !(wc.wc_flags & IBV_WC_WITH_IMM)) {
      log::rdma()->error("queue {}: RDMA WRITE WITH IMMEDIATE the server did not negotiate: protocol error", queue_id_);
      return connection_lost_st("unexpected immediate");
    }
    wire::ReadDone d = wire::decode_read_done(be32toh(wc.imm_data));
    uint16_t tag = lane.slots.tag_of(d.tag);
    if (tag == kNoTag || !awaits_answer_st(tag, uint8_t(wire::Opcode::kRead)) ||
        !wire::read_done_matches(d, tags_[tag].generation)) {
      counters_.stale_completions.add_st();
      SPDLOG_LOGGER_DEBUG(log::rdma_cq(), "queue {}: stale read completion slot {} generation {} on connection {}",
                          queue_id_, d.tag, d.generation_low, lane_index(lane));
      return;
    }
    counters_.completed.add_st();
    counters_.read_done_imm.add_st();
    SPDLOG_LOGGER_TRACE(log::rdma_cq(), "q{} tag {} (slot {}) read done (immediate)", queue_id_, tag, d.tag);
    complete_tag_st(tag, int(tags_[tag].length));
  }

  // Our RDMA READ of a READ's data completed: the data is in the slab, the READ is done.
  void handle_pull_done_st(const WorkId& id) {
    if (!awaits_answer_st(id.tag, uint8_t(wire::Opcode::kRead)) || !tags_[id.tag].pulled ||
        tags_[id.tag].generation != id.generation) {
      counters_.stale_completions.add_st();
      log::rdma()->error("queue {}: RDMA READ completion for tag {} generation {} not in flight", queue_id_, id.tag,
                         id.generation);
      return;
    }
    counters_.completed.add_st();
    counters_.pulled_bytes.add_st(tags_[id.tag].length);
    SPDLOG_LOGGER_TRACE(log::rdma_cq(), "q{} tag {} read done (pulled)", queue_id_, id.tag);
    complete_tag_st(id.tag, int(tags_[id.tag].length));
  }

  // The fence behind a chain's fenced WRITEs completed: their data is in the export. Fences
  // complete in posting order, so the oldest outstanding fence's WRITEs are the next in the ring.
  void handle_fence_done_st(Lane& lane) {
    if (lane.fence_head == lane.fence_tail) {
      log::rdma()->error("queue {}: a write fence completed with none outstanding", queue_id_);
      return connection_lost_st("unexpected fence completion");
    }
    uint16_t n = lane.fence_sizes[lane.fence_head];
    lane.fence_head = (lane.fence_head + 1) % lane.fence_sizes.size();
    for (uint16_t i = 0; i < n && !dead_; ++i) {
      uint16_t tag = lane.fenced_ring[lane.fenced_head];
      lane.fenced_head = (lane.fenced_head + 1) % lane.fenced_ring.size();
      const TagSlot& t = tags_[tag];
      if (t.state != TagState::kInFlight || !t.fenced) {
        log::rdma()->error("queue {}: fenced WRITE tag {} not in flight (state {})", queue_id_, tag, int(t.state));
        return connection_lost_st("write fence out of step");
      }
      counters_.completed.add_st();
      counters_.fenced_bytes.add_st(t.length);
      complete_tag_st(tag, int(t.length));
    }
  }

  void handle_cm_events_st(Lane& lane) {
    while (auto ev = lane.link.conn->poll_cm_event_st()) {
      switch (ev->type) {
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_ADDR_CHANGE:
          if (!dead_) {
            log::rdma()->warn("queue {}: connection {} to {}: {}", queue_id_, lane_index(lane),
                              lane.link.conn->peer_address(), rdma_event_str(ev->type));
            connection_lost_st(rdma_event_str(ev->type));
          }
          break;
        default:
          log::rdma()->debug("queue {}: rdma_cm event {}", queue_id_, rdma_event_str(ev->type));
      }
    }
  }

  void handle_timer_st() {
    uint64_t expirations = 0;
    if (::read(timer_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return;
    tick_ += uint32_t(expirations);
    if (dead_ || inflight_ == 0) return;
    for (uint16_t tag = 0; tag < depth_; ++tag) {
      const TagSlot& t = tags_[tag];
      if (t.state != TagState::kFree && tick_ - t.tick > kTicksPerTimeout) {
        counters_.timeouts.add_st();
        log::rdma()->error("queue {}: tag {} got no response within {} ms: failing the connection", queue_id_, tag,
                           opts_.io_timeout.count());
        return connection_lost_st("IO timeout");
      }
    }
  }

  void housekeeping_st() {
    for (Lane& lane : lanes_) handle_cm_events_st(lane);
    if (timer_) handle_timer_st();
  }

  // A connection is unusable: stop the device from touching our memory over any of the queue's
  // connections, then fail every request we hold, and every later one, with -EIO (no reconnect
  // yet).
  void connection_lost_st(const char* why) {
    if (dead_) return;
    dead_ = true;
    counters_.connection_lost.add_st();
    log::rdma()->warn("queue {}: connection to {} lost ({}): failing {} requests with EIO", queue_id_,
                      lanes_.front().link.conn->peer_address(), why, inflight_);
    // After the drain every QP is in error and flushed: no RDMA from the server lands in the
    // slab any more, so the kernel may reuse the buffers of the requests failed below.
    for (Lane& lane : lanes_) lane.link.conn->disconnect_st();
    for (Lane& lane : lanes_) {
      lane.link.conn->drain_st(nullptr, std::chrono::milliseconds(1000));
      lane.pending.clear();
    }
    pending_ = 0;
    for (uint16_t tag = 0; tag < depth_; ++tag)
      if (tags_[tag].state != TagState::kFree) complete_tag_st(tag, -EIO);
  }

  RdmaTargetOptions opts_;
  uint16_t queue_id_;
  uint16_t depth_;
  ublk::QueueContext* ctx_ = nullptr;
  uint32_t max_io_ = 0;
  bool use_inline_ = false;
  bool read_imm_ = false;  // the server completes successful READs with ReadDone immediates
  bool batch_ = false;     // SENDs carry up to kMaxBatch commands / Responses
  bool push_writes_ = false;  // WRITE data goes by our RDMA WRITE into the export (PUSH_WRITES)
  bool pull_reads_ = false;   // READ data comes by our RDMA READ from the export (PULL_READS)
  bool fence_writes_ = false;  // pushed WRITEs send no command: an RDMA READ fence completes them
  bool dead_ = false;

  std::vector<TagSlot> tags_;
  uint32_t inflight_ = 0;  // tags in kQueued or kInFlight
  uint32_t next_generation_ = 0;

  std::vector<Lane> lanes_;
  size_t pending_ = 0;  // tags encoded but not yet posted, over all lanes
  // Scratch for building one lane's chain of work requests and its receive reposts.
  std::vector<ibv_send_wr> send_wrs_;
  std::vector<ibv_sge> send_sges_;
  std::vector<ibv_sge> push_sges_;   // one per RDMA WRITE / RDMA READ of a chain
  std::vector<uint16_t> command_tags_;  // the tags of a chain that send a command
  ibv_sge fence_sge_{};
  std::vector<ibv_recv_wr> recv_wrs_;
  std::vector<ibv_sge> recv_sges_;

  UniqueFd timer_;
  uint32_t tick_ = 0;
  uint32_t polls_since_housekeeping_ = 0;
  RdmaCounters counters_;
};

// ------------------------------------------------------------------------------ factory

// IB CM reject reasons rdma_cm reports in REJECTED events.
constexpr int kIbCmRejInvalidServiceId = 8;   // nothing listens on that port
constexpr int kIbCmRejConsumerDefined = 28;  // the server called rdma_reject

[[noreturn]] void throw_rejected(const RdmaTargetOptions& o, const transport::ConnectOutcome& out) {
  std::string where = fmt::format("{}:{}", o.traddr, o.trsvcid);
  auto d = wire::decode_reject_data(out.private_data);
  if (d.ok()) {
    const wire::RejectData& r = d.value;
    switch (r.status) {
      case wire::ConnectStatus::kUnknownExport:
        throw SetupError(fmt::format("server {} has no export named '{}'", where, o.export_name), ENOENT);
      case wire::ConnectStatus::kAccessDenied:
        throw SetupError(fmt::format("server {} denies access to this client (check its --allow)", where), EACCES);
      case wire::ConnectStatus::kBadVersion:
        throw SetupError(fmt::format("server {} speaks protocol versions {}..{}, this client {}..{}", where,
                                     r.min_version, r.version, wire::kMinVersion, wire::kVersion),
                         EPROTO);
      default:
        throw SetupError(fmt::format("server {} refused the connection: {}", where, wire::connect_status_text(r.status)),
                         ECONNREFUSED);
    }
  }
  if (out.reject_status == kIbCmRejInvalidServiceId)
    throw SetupError(fmt::format("connection refused by {}: nothing listens there (is `ublk-rdma serve` running?)", where),
                     ECONNREFUSED);
  throw SetupError(fmt::format("connection to {} rejected (rdma_cm reason {}{})", where, out.reject_status,
                               out.reject_status == kIbCmRejConsumerDefined ? ", by the peer" : ""),
                   ECONNREFUSED);
}

// One of the `conns` connections of queue `queue_id`: it carries at most its share of the depth.
QueueLink connect_queue(const RdmaTargetOptions& o, uint16_t queue_id, uint16_t conns, uint64_t session_id) {
  uint16_t depth = connection_depth(o.queue_depth, conns);
  wire::ConnectRequest req;
  req.queue_id = queue_id;
  req.queue_depth = depth;
  req.max_io_bytes = o.max_io_bytes;
  req.session_id = session_id;
  req.flags = wire::kConnectReadImm | wire::kConnectBatch |
              (o.push_max_bytes ? wire::kConnectPushWrites | wire::kConnectPushSlots : 0) |
              (o.pull_max_bytes || (o.fence_writes && o.push_max_bytes) ? wire::kConnectPullReads : 0);
  if (!req.set_name(o.export_name))
    throw SetupError(fmt::format("export name '{}' is invalid: use 1..32 of [A-Za-z0-9._-]", o.export_name), EINVAL);
  auto pdata = wire::encode(req);

  QueueLink link;
  link.depth = depth;
  link.msgs = MappedRegion::anonymous(size_t(depth) * (kRecvSlot + kMsgSlot), true);

  transport::ClientConnectParams p;
  p.address = o.traddr;
  p.port = o.trsvcid;
  p.connect_timeout = o.connect_timeout;
  // Room for PUSH_WRITES (an RDMA WRITE per WRITE): the QP exists before the server answers.
  p.sizes.send_wrs = uint32_t(depth) * kWrsPerTag + kSqSlack;
  p.sizes.recv_wrs = depth;
  p.sizes.max_inline = 64;
  p.sizes.max_send_sge = wire::kMaxBatch;  // a batched SEND: one entry per command
  p.private_data = pdata;
  p.responder_resources = 128;  // the server's RDMA READs of write data run against us
  // Ours (pulled READs, write fences) against it, with PULL_READS.
  p.initiator_depth = (req.flags & wire::kConnectPullReads) ? 128 : 0;

  auto before_connect = [&](Connection& conn) {
    link.msgs_mr = conn.register_memory(link.msgs.get(), link.msgs.size(), IBV_ACCESS_LOCAL_WRITE,
                                        fmt::format("queue {} message slots", queue_id));
    // One receive per slot, posted before CONNECT so no response can find the queue empty.
    std::vector<ibv_recv_wr> wrs(depth);
    std::vector<ibv_sge> sges(depth);
    for (uint16_t i = 0; i < depth; ++i) {
      sges[i] = ibv_sge{reinterpret_cast<uint64_t>(link.msgs.get()) + uint64_t(i) * kRecvSlot, uint32_t(kRecvSlot),
                        link.msgs_mr->lkey};
      wrs[i].wr_id = WorkId{WorkKind::kRdmaRecv, queue_id, i, 0, 0}.encode();
      wrs[i].sg_list = &sges[i];
      wrs[i].num_sge = 1;
      wrs[i].next = i + 1 < depth ? &wrs[i + 1] : nullptr;
    }
    ibv_recv_wr* bad = nullptr;
    if (int rc = ibv_post_recv(conn.qp(), wrs.data(), &bad)) throw_errno(rc, "posting {} receives", depth);
  };

  transport::ConnectOutcome out = transport::connect_client(p, before_connect);
  if (out.rejected) throw_rejected(o, out);
  auto d = wire::decode_accept_data(out.private_data);
  if (!d.ok())
    throw SetupError(fmt::format("server {}:{} sent an invalid accept: {}", o.traddr, o.trsvcid,
                                 wire::decode_error_text(d.error)),
                     EPROTO);
  link.accepted = d.value;
  if ((link.accepted.push_writes() && !(req.flags & wire::kConnectPushWrites)) ||
      (link.accepted.push_slots() && !(req.flags & wire::kConnectPushSlots)) ||
      (link.accepted.pull_reads() && !(req.flags & wire::kConnectPullReads)))
    throw SetupError(fmt::format("server {}:{} granted {}, which this client did not ask for", o.traddr, o.trsvcid,
                                 link.accepted.pull_reads() ? "PULL_READS" : "PUSH_WRITES"),
                     EPROTO);
  if (link.accepted.queue_depth != depth || link.accepted.max_io_bytes != o.max_io_bytes) {
    // The server's limit is per connection; -d spreads over the queue's connections.
    throw SetupError(fmt::format("server {}:{} limits a connection's depth to {} and max IO to {} bytes (asked for {} "
                                 "and {}): use -d {} --max-io {}",
                                 o.traddr, o.trsvcid, link.accepted.queue_depth, link.accepted.max_io_bytes, depth,
                                 o.max_io_bytes, std::min<uint32_t>(uint32_t(link.accepted.queue_depth) * conns, o.queue_depth),
                                 link.accepted.max_io_bytes),
                     EINVAL);
  }
  link.conn = std::move(out.conn);
  return link;
}

class RdmaTargetFactory final : public ublk::TargetFactory {
 public:
  explicit RdmaTargetFactory(const RdmaTargetOptions& o) : opts_(o) {
    if (o.traddr.empty()) throw SetupError("rdma target: no server address (--traddr)", EINVAL);
    if (o.nr_queues == 0 || o.queue_depth == 0) throw SetupError("rdma target: queues and depth must be > 0", EINVAL);
    if (o.conns_per_queue < 1 || o.conns_per_queue > kMaxConnsPerQueue)
      throw SetupError(fmt::format("rdma target: {} connections per queue (1..{})", o.conns_per_queue,
                                   kMaxConnsPerQueue),
                       EINVAL);
    if (transport::rdma_device_names().empty())
      throw SetupError("no RDMA device found (load a driver, e.g. `modprobe rdma_rxe` and "
                       "`rdma link add rxe0 type rxe netdev IFACE`)",
                       ENODEV);
    std::random_device rd;
    uint64_t session = (uint64_t(rd()) << 32) | rd();
    // More connections than requests would carry nothing.
    conns_ = std::min<uint16_t>(o.conns_per_queue, o.queue_depth);
    links_.resize(o.nr_queues);
    for (uint16_t q = 0; q < o.nr_queues; ++q) {
      for (uint16_t c = 0; c < conns_; ++c) {
        links_[q].push_back(connect_queue(o, q, conns_, session));
        const wire::AcceptData& a = links_[q].back().accepted;
        const wire::AcceptData& a0 = links_.front().front().accepted;
        // Every connection of every queue must be granted alike: a queue's lanes share its
        // tags' paths, and the device has one geometry.
        if (a.export_size != a0.export_size || a.block_shift != a0.block_shift || a.export_flags != a0.export_flags ||
            a.features != a0.features)
          throw SetupError(fmt::format("server {}:{} described export '{}' differently on queue {} connection {}",
                                       o.traddr, o.trsvcid, o.export_name, q, c),
                           EPROTO);
      }
    }
    conn_depth_ = links_.front().front().depth;  // connect_queue checked each one was granted it
    const wire::AcceptData& a = links_.front().front().accepted;
    geo_.size_bytes = a.export_size;
    geo_.logical_bs_shift = a.block_shift;
    geo_.physical_bs_shift = std::max<uint8_t>(a.block_shift, 12);
    geo_.read_only = a.read_only();
    geo_.volatile_cache = a.flush();
    geo_.fua = a.fua() && a.flush();
    geo_.discard = a.discard();
    geo_.write_zeroes = a.write_zeroes();
    geo_.discard_granularity = std::max<uint32_t>(4096, 1u << a.block_shift);
    log::target()->info("rdma: export '{}' on {}:{}: {} bytes, {}-byte blocks{}, {} queue(s) x depth {}, {} "
                        "connection(s) per queue (depth {} each)",
                        o.export_name, o.traddr, o.trsvcid, a.export_size, 1u << a.block_shift,
                        a.read_only() ? ", read-only" : "", o.nr_queues, o.queue_depth, conns_, conn_depth_);
  }

  std::string type_name() const override { return "rdma"; }
  ublk::DeviceGeometry geometry() const override { return geo_; }

  std::unique_ptr<ublk::QueueTarget> make_queue_target(uint16_t queue_id) override {
    if (queue_id >= links_.size() || links_[queue_id].empty() || !links_[queue_id].front().conn)
      throw_setup("rdma: no connection for queue {} (have {})", queue_id, links_.size());
    return std::make_unique<RdmaQueueTarget>(std::move(links_[queue_id]), opts_, queue_id);
  }

  std::string describe_json() const override {
    nlohmann::json j = {{"type", "rdma"},
                        {"traddr", opts_.traddr},
                        {"trsvcid", opts_.trsvcid},
                        {"export", opts_.export_name},
                        {"poll", ublk::poll_mode_name(opts_.poll_mode)},
                        {"conns_per_queue", conns_},
                        {"connection_depth", conn_depth_},
                        {"io_timeout_ms", opts_.io_timeout.count()},
                        {"size", geo_.size_bytes},
                        {"block_size", 1u << geo_.logical_bs_shift},
                        {"read_only", geo_.read_only},
                        {"flush", geo_.volatile_cache},
                        {"fua", geo_.fua},
                        {"discard", geo_.discard},
                        {"write_zeroes", geo_.write_zeroes},
                        {"protocol_version", wire::kVersion}};
    return j.dump();
  }

 private:
  RdmaTargetOptions opts_;
  std::vector<std::vector<QueueLink>> links_;  // [queue][connection]
  uint16_t conns_ = 0;       // per queue
  uint16_t conn_depth_ = 0;  // what each of them carries at most
  ublk::DeviceGeometry geo_;
};

}  // namespace

std::unique_ptr<ublk::TargetFactory> make_rdma_target_factory(const RdmaTargetOptions& opts) {
  return std::make_unique<RdmaTargetFactory>(opts);
}

}  // namespace ublkrdma::targets
