#include "targets/rdma_queue.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/errors.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

// Hybrid polling spins for answers only while at most this many requests are out. At low depth
// the wait is one round trip and a wakeup would add to it; at high depth the answers come in
// batches, and spinning (sched_yield) takes CPU from the kernel work that produces them.
constexpr uint32_t kSpinMaxInflight = 4;

// Watched fds (QueueContext::watch_fd_st tokens): the kind in the low two bits, the connection above.
constexpr uint8_t kTokenCq = 1;
constexpr uint8_t kTokenCm = 2;
constexpr uint8_t kTokenTimer = 3;
constexpr uint8_t connection_token(uint8_t kind, size_t connection) { return uint8_t(kind | (connection << 2)); }
static_assert(kMaxConnsPerQueue <= 64, "a connection's fd tokens must fit in a byte");

// Ticks of the IO timer per io_timeout: a request times out between 1x and 1.25x io_timeout.
constexpr uint32_t kTicksPerTimeout = 4;
// In busy mode the loop never arms fd watches: poll the cm channel and the timer ourselves.
constexpr uint32_t kHousekeepingEvery = 1024;

class RdmaQueueTarget final : public ublk::QueueTarget, private RdmaConnectionEvents {
 public:
  RdmaQueueTarget(std::vector<RdmaConnection> connections, const RdmaTargetOptions& opts, uint16_t queue_id)
      : opts_(opts), queue_id_(queue_id), depth_(opts.queue_depth), connections_(std::move(connections)) {}

  ~RdmaQueueTarget() override {
    for (RdmaConnection& c : connections_) c.close_st();
  }

  void start_st(ublk::QueueContext& ctx) override {
    ctx_ = &ctx;
    const wire::AcceptData& accepted = connections_.front().accepted();  // the same on every connection
    if (ctx.depth() != depth_)
      throw_setup("rdma queue {}: ublk queue depth {} differs from the negotiated {}", queue_id_, ctx.depth(), depth_);
    if (ctx.max_io_bytes() > accepted.max_io_bytes)
      throw_setup("rdma queue {}: ublk max IO {} exceeds the negotiated {}", queue_id_, ctx.max_io_bytes(),
                  accepted.max_io_bytes);
    max_io_ = ctx.max_io_bytes();
    requests_.assign(depth_, RdmaRequest{});
    push_writes_ = accepted.push_writes();
    pull_reads_ = accepted.pull_reads();
    // A WRITE pushed into the export needs no answer when an RDMA READ after it on the same QP
    // can prove it placed: that takes the export window with remote read (PULL_READS).
    fence_writes_ = opts_.fence_writes && push_writes_ && pull_reads_ && !accepted.push_slots();
    RdmaQueueSetup setup{queue_id_, ctx.io_slab(), accepted.batch(), accepted.read_imm(), push_writes_};
    for (size_t i = 0; i < connections_.size(); ++i) {
      RdmaConnection& c = connections_[i];
      if (c.depth() > depth_)
        throw_setup("rdma queue {}: connection {} has depth {} (queue: {})", queue_id_, i, c.depth(), depth_);
      c.start_st(setup, i, counters_);
      ctx.watch_fd_st(c.cq_fd(), connection_token(kTokenCq, i));
      ctx.watch_fd_st(c.cm_fd(), connection_token(kTokenCm, i));
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
    const RdmaConnection& c0 = connections_.front();
    log::rdma()->debug("queue {}: {} connection(s) to {} via {} (depth {}, {} per connection, max IO {}, "
                       "inline {} bytes)",
                       queue_id_, connections_.size(), c0.peer_address(), c0.device_name(), depth_, c0.depth(),
                       max_io_, c0.max_inline());
  }

  void submit_st(const ublk::IoRequest& req) override {
    if (dead_) return fail_now(req.tag, -EIO);
    RdmaRequest& t = requests_[req.tag];
    if (t.state != RequestState::kFree) {
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
    // The connection holding the fewest requests, the lowest on a tie: a shallow queue stays on
    // one connection (one CQ to poll, and the server sees its commands back to back on one
    // thread), a deep one spreads over all of them.
    t.connection =
        uint8_t(least_loaded(connections_.size(), [this](size_t i) { return connections_[i].in_use(); }));
    RdmaConnection& c = connections_[t.connection];
    if (c.full()) {  // cannot happen: the least loaded connection has a free slot
      log::rdma()->error("queue {}: connection {} has no free slot for tag {}", queue_id_, t.connection, req.tag);
      return fail_now(req.tag, -EIO);
    }
    t.slot = c.take_slot_st(req.tag);
    cmd.tag = t.slot;
    if (cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite) {
      cmd.addr = reinterpret_cast<uint64_t>(req.buffer);
      cmd.rkey = c.slab_rkey();
    }
    next_generation_ = wire::next_generation(next_generation_);
    t.generation = next_generation_;
    cmd.generation = t.generation;
    t.state = RequestState::kQueued;
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
    if (t.sends_command())
      wire::encode_into(cmd, std::span<uint8_t, wire::kCommandSize>(c.command_slot(t.slot), wire::kCommandSize));
    c.queue_st(req.tag);
    ++pending_;
    ++inflight_;
  }

  int poll_st() override {
    if (pending_) post_all_st();
    int handled = poll_connections_st();
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
    if (pending_) post_all_st();
    if (dead_) return true;
    for (RdmaConnection& c : connections_) {
      if (int rc = c.arm_st(); rc < 0) {
        log::rdma()->error("queue {}: ibv_req_notify_cq: {}", queue_id_, errno_text(rc));
        return false;  // keep spinning rather than sleep without a wakeup
      }
    }
    // Armed before this last poll: a completion that lands after it raises the event.
    return poll_connections_st() == 0 && pending_ == 0;
  }

  void on_fd_ready_st(uint8_t token) override {
    size_t i = token >> 2;
    if ((token & 3) == kTokenTimer) return handle_timer_st();
    if (i >= connections_.size()) return;
    RdmaConnection& c = connections_[i];
    switch (token & 3) {
      case kTokenCq:
        counters_.cq_events.add_st(c.consume_cq_events_st());
        c.poll_st(requests_, *this);
        break;
      case kTokenCm:
        handle_cm_events_st(c, i);
        break;
      default:
        break;
    }
  }

  void stop_st() override {
    // The loop is done with the slab: make sure the device is too before it is unmapped.
    dead_ = true;
    for (RdmaConnection& c : connections_) c.close_st();
    log::rdma()->debug("queue {}: stopped ({} commands, {} errors, {} stale)", queue_id_, counters_.commands.get(),
                       counters_.errors.get(), counters_.stale_completions.get());
  }

  std::string stats_json() const override {
    const wire::AcceptData& a = connections_.front().accepted();
    nlohmann::json j = counters_.to_json();
    j["read_imm"] = a.read_imm();
    j["batch"] = a.batch();
    j["push_writes"] = push_writes_;
    j["push_slots"] = a.push_slots();
    j["connections"] = connections_.size();
    j["connection_depth"] = connections_.front().depth();
    j["pull_reads"] = pull_reads_;
    j["fence_writes"] = fence_writes_;
    return j.dump();
  }

 private:
  void fail_now(uint16_t tag, int err) {
    counters_.errors.add_st();
    ctx_->complete_st(tag, err);
  }

  void complete_tag_st(uint16_t tag, int result) {
    RdmaRequest& t = requests_[tag];
    t.state = RequestState::kFree;
    connections_[t.connection].release_slot_st(t.slot);
    --inflight_;
    if (result < 0) {
      counters_.errors.add_st();
    } else if (t.op == uint8_t(wire::Opcode::kRead) || t.op == uint8_t(wire::Opcode::kWrite)) {
      counters_.rdma_bytes.add_st(t.length);
    }
    ctx_->complete_st(tag, result);
  }

  void post_all_st() {
    for (RdmaConnection& c : connections_)
      if (c.pending() && !dead_) pending_ -= c.post_st(requests_, *this);
  }

  // Polls the CQ of every connection that may still get a completion; returns how many it reaped.
  int poll_connections_st() {
    int n = 0;
    for (RdmaConnection& c : connections_)
      if (c.expects_completions()) n += c.poll_st(requests_, *this);
    return n;
  }

  // Whether `tag` names a command of opcode `op` that waits for its answer (the caller checks
  // the generation); anything else is a stale or foreign answer.
  bool awaits_answer_st(uint16_t tag, uint8_t op) const {
    return tag < depth_ && requests_[tag].state == RequestState::kInFlight && requests_[tag].op == op;
  }

  void on_answer_st(const RdmaConnection& c, const wire::Response& r) override {
    // The answer names the connection's slot; a slot holding no request, or one of another
    // opcode or generation, makes it stale.
    uint16_t tag = c.tag_of(r.tag);
    if (tag == kNoTag || !awaits_answer_st(tag, uint8_t(r.opcode)) || requests_[tag].generation != r.generation) {
      counters_.stale_completions.add_st();
      SPDLOG_LOGGER_DEBUG(log::rdma_cq(), "queue {}: stale response slot {} generation {} on {}", queue_id_, r.tag,
                          r.generation, c.peer_address());
      return;
    }
    counters_.completed.add_st();
    int err = wire::status_to_errno(r.status);
    SPDLOG_LOGGER_TRACE(log::rdma_cq(), "q{} tag {} (slot {}) gen {} status {}", queue_id_, tag, r.tag, r.generation,
                        r.status);
    complete_tag_st(tag, err < 0 ? err : int(requests_[tag].length));
  }

  // A READ's data arrived with its answer in the immediate (status 0).
  void on_read_done_st(const RdmaConnection& c, const wire::ReadDone& d) override {
    uint16_t tag = c.tag_of(d.tag);
    if (tag == kNoTag || !awaits_answer_st(tag, uint8_t(wire::Opcode::kRead)) ||
        !wire::read_done_matches(d, requests_[tag].generation)) {
      counters_.stale_completions.add_st();
      SPDLOG_LOGGER_DEBUG(log::rdma_cq(), "queue {}: stale read completion slot {} generation {}", queue_id_, d.tag,
                          d.generation_low);
      return;
    }
    counters_.completed.add_st();
    counters_.read_done_imm.add_st();
    complete_tag_st(tag, int(requests_[tag].length));
  }

  // Our RDMA READ of a READ's data completed: the data is in the slab, the READ is done.
  void on_pull_done_st(const WorkId& id) override {
    if (!awaits_answer_st(id.tag, uint8_t(wire::Opcode::kRead)) || !requests_[id.tag].pulled ||
        requests_[id.tag].generation != id.generation) {
      counters_.stale_completions.add_st();
      log::rdma()->error("queue {}: RDMA READ completion for tag {} generation {} not in flight", queue_id_, id.tag,
                         id.generation);
      return;
    }
    counters_.completed.add_st();
    counters_.pulled_bytes.add_st(requests_[id.tag].length);
    complete_tag_st(id.tag, int(requests_[id.tag].length));
  }

  void on_fenced_write_done_st(uint16_t tag) override {
    counters_.completed.add_st();
    counters_.fenced_bytes.add_st(requests_[tag].length);
    complete_tag_st(tag, int(requests_[tag].length));
  }

  void on_connection_failed_st(const RdmaConnection&, const char* why) override { connection_lost_st(why); }

  void handle_cm_events_st(RdmaConnection& c, size_t index) {
    while (auto ev = c.poll_cm_event_st()) {
      switch (ev->type) {
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_ADDR_CHANGE:
          if (!dead_) {
            log::rdma()->warn("queue {}: connection {} to {}: {}", queue_id_, index, c.peer_address(),
                              rdma_event_str(ev->type));
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
      const RdmaRequest& t = requests_[tag];
      if (t.state != RequestState::kFree && tick_ - t.tick > kTicksPerTimeout) {
        counters_.timeouts.add_st();
        log::rdma()->error("queue {}: tag {} got no response within {} ms: failing the connection", queue_id_, tag,
                           opts_.io_timeout.count());
        return connection_lost_st("IO timeout");
      }
    }
  }

  void housekeeping_st() {
    for (size_t i = 0; i < connections_.size(); ++i) handle_cm_events_st(connections_[i], i);
    if (timer_) handle_timer_st();
  }

  // A connection is unusable: stop the device from touching our memory over any of the queue's
  // connections, then fail every request we hold, and every later one, with -EIO (no reconnect
  // yet). A request's buffer goes back to the kernel only once every QP that could reach it
  // is drained or destroyed; if one is neither, the requests stay held (the device may still
  // write into their buffers) until the queue stops.
  void connection_lost_st(const char* why) {
    if (dead_) return;
    dead_ = true;
    counters_.connection_lost.add_st();
    log::rdma()->warn("queue {}: connection to {} lost ({}): failing {} requests with EIO", queue_id_,
                      connections_.front().peer_address(), why, inflight_);
    bool safe = true;
    for (RdmaConnection& c : connections_) safe = c.fail_st() && safe;
    pending_ = 0;
    if (!safe) {
      log::rdma()->error("queue {}: a QP could be neither drained nor destroyed: holding {} requests whose buffers "
                         "the device may still write",
                         queue_id_, inflight_);
      return;
    }
    for (uint16_t tag = 0; tag < depth_; ++tag)
      if (requests_[tag].state != RequestState::kFree) complete_tag_st(tag, -EIO);
  }

  RdmaTargetOptions opts_;
  uint16_t queue_id_;
  uint16_t depth_;
  ublk::QueueContext* ctx_ = nullptr;
  uint32_t max_io_ = 0;
  bool push_writes_ = false;   // WRITE data goes by our RDMA WRITE into the export (PUSH_WRITES)
  bool pull_reads_ = false;    // READ data comes by our RDMA READ from the export (PULL_READS)
  bool fence_writes_ = false;  // pushed WRITEs send no command: an RDMA READ fence completes them
  bool dead_ = false;

  std::vector<RdmaRequest> requests_;  // by ublk tag
  uint32_t inflight_ = 0;              // tags in kQueued or kInFlight
  uint32_t next_generation_ = 0;       // one counter for the queue: a slot passes between tags

  std::vector<RdmaConnection> connections_;
  size_t pending_ = 0;  // tags encoded but not yet posted, over all connections

  UniqueFd timer_;
  uint32_t tick_ = 0;
  uint32_t polls_since_housekeeping_ = 0;
  RdmaCounters counters_;
};

}  // namespace

std::unique_ptr<ublk::QueueTarget> make_rdma_queue_target(std::vector<RdmaConnection> connections,
                                                          const RdmaTargetOptions& opts, uint16_t queue_id) {
  return std::make_unique<RdmaQueueTarget>(std::move(connections), opts, queue_id);
}

}  // namespace ublkrdma::targets
