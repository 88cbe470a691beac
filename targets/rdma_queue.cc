#include "targets/rdma_queue.h"

#include <sys/timerfd.h>

#include <algorithm>
#include <cerrno>

#include "base/errors.h"
#include "base/log.h"
#include "targets/rdma_queue_target.h"
#include "targets/rdma_queue_tokens.h"
#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

// Hybrid polling spins for answers only while at most this many requests are out. At low depth
// the wait is one round trip and a wakeup would add to it; at high depth the answers come in
// batches, and spinning (sched_yield) takes CPU from the kernel work that produces them.
constexpr uint32_t kSpinMaxInflight = 4;

// In busy mode the loop never arms fd watches: poll the cm channels and the timers ourselves.
constexpr uint32_t kHousekeepingEvery = 1024;

// A non-blocking timerfd that fires every `period`. Throws SetupError.
UniqueFd periodic_timer(std::chrono::milliseconds period, uint16_t queue_id) {
  UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd) throw_errno(errno, "rdma queue {}: timerfd_create", queue_id);
  itimerspec its{};
  its.it_interval.tv_sec = period.count() / 1000;
  its.it_interval.tv_nsec = (period.count() % 1000) * 1000000;
  its.it_value = its.it_interval;
  if (::timerfd_settime(fd.get(), 0, &its, nullptr) != 0) throw_errno(errno, "rdma queue {}: timerfd_settime", queue_id);
  return fd;
}

}  // namespace

RdmaQueueTarget::RdmaQueueTarget(std::vector<RdmaConnection> connections, const RdmaTargetOptions& opts,
                                 uint16_t conns_per_path, uint16_t queue_id, uint64_t session_id)
    : opts_(opts), queue_id_(queue_id), depth_(opts.queue_depth), session_id_(session_id),
      conns_per_path_(std::max<uint16_t>(conns_per_path, 1)) {
  for (RdmaConnection& c : connections) connections_.push_back(std::make_unique<RdmaConnection>(std::move(c)));
  recovery_ = std::make_unique<ConnectionRecovery[]>(connections_.size());
  for (size_t i = 0; i < connections_.size(); ++i) recovery_[i].set_policy(opts.recovery);
  live_ = connections_.size();
  if (!connections_.empty()) accepted_ = connections_.front()->accepted();
  active_path_ = opts_.multipath == MultipathPolicy::kRoundRobin || opts_.paths.size() < 2 ? kAllPaths : 0;
}

RdmaQueueTarget::~RdmaQueueTarget() {
  reconnector_.reset();  // its thread may still hand back a connection: join it first
  for (auto& c : connections_) c->close_st();
}

void RdmaQueueTarget::start_st(ublk::QueueContext& ctx) {
  ctx_ = &ctx;
  if (ctx.depth() != depth_)
    throw_setup("rdma queue {}: ublk queue depth {} differs from the negotiated {}", queue_id_, ctx.depth(), depth_);
  if (ctx.max_io_bytes() > accepted_.max_io_bytes)
    throw_setup("rdma queue {}: ublk max IO {} exceeds the negotiated {}", queue_id_, ctx.max_io_bytes(),
                accepted_.max_io_bytes);
  max_io_ = ctx.max_io_bytes();
  requests_.assign(depth_, RdmaRequest{});
  ios_.assign(depth_, ublk::IoRequest{});
  push_writes_ = accepted_.push_writes();
  pull_reads_ = accepted_.pull_reads();
  // A WRITE pushed into the export needs no answer when an RDMA READ after it on the same QP
  // can prove it placed: that takes the export window with remote read (PULL_READS).
  fence_writes_ = opts_.fence_writes && push_writes_ && pull_reads_ && !accepted_.push_slots();
  setup_ = RdmaQueueSetup{queue_id_,
                          ctx.io_slab(),
                          size_t(ctx.io_buffer(1) - ctx.io_buffer(0)),
                          accepted_.batch(),
                          accepted_.read_imm(),
                          push_writes_,
                          opts_.mr_per_io,
                          ctx.shared_buffers()};
  for (size_t i = 0; i < connections_.size(); ++i) {
    RdmaConnection& c = *connections_[i];
    if (c.depth() > depth_)
      throw_setup("rdma queue {}: connection {} has depth {} (queue: {})", queue_id_, i, c.depth(), depth_);
    c.start_st(setup_, i, counters_);
    ctx.watch_fd_st(c.cq_fd(), connection_token(kTokenCq, i));
    ctx.watch_fd_st(c.cm_fd(), connection_token(kTokenCm, i));
  }
  if (opts_.io_timeout.count() > 0) {
    io_timer_ = periodic_timer(std::max(opts_.io_timeout / kTicksPerTimeout, std::chrono::milliseconds(10)), queue_id_);
    ctx.watch_fd_st(io_timer_.get(), kTokenIoTimer);
  }
  if (opts_.keep_alive_tmo.count() > 0) {
    if (!accepted_.keep_alive() && queue_id_ == 0)
      log::rdma()->warn("the server speaks protocol v{}, without KEEP_ALIVE: a server that stops or vanishes without "
                        "a disconnect is detected only by --io-timeout, and only while IO is outstanding",
                        accepted_.version);
    keep_alive_timer_ = periodic_timer(
        std::max(opts_.keep_alive_tmo / kTicksPerKeepAlive, std::chrono::milliseconds(10)), queue_id_);
    ctx.watch_fd_st(keep_alive_timer_.get(), kTokenKeepAliveTimer);
  }
  recovery_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!recovery_timer_) throw_errno(errno, "rdma queue {}: timerfd_create", queue_id_);
  ctx.watch_fd_st(recovery_timer_.get(), kTokenRecoveryTimer);
  // A recovered device may predate a resize of its export; the device ignores the size it has.
  ctx.report_capacity_st(accepted_.export_size);
  const RdmaConnection& c0 = *connections_.front();
  log::rdma()->debug("queue {}: {} connection(s) to {} via {} (depth {}, {} per connection, max IO {}, "
                     "inline {} bytes)",
                     queue_id_, connections_.size(), c0.peer_address(), c0.device_name(), depth_, c0.depth(),
                     max_io_, c0.max_inline());
}

void RdmaQueueTarget::submit_st(const ublk::IoRequest& req) {
  if (stopped_) return fail_now(req.tag, -EIO);
  if (requests_[req.tag].state != RequestState::kFree) {
    log::rdma()->error("queue {}: tag {} submitted while in use (state {})", queue_id_, req.tag,
                       int(requests_[req.tag].state));
    return fail_now(req.tag, -EIO);
  }
  switch (req.op) {
    case ublk::kOpRead:
    case ublk::kOpWrite:
      if (req.length > max_io_) return fail_now(req.tag, -EINVAL);
      break;
    case ublk::kOpFlush:
    case ublk::kOpDiscard:
    case ublk::kOpWriteZeroes:
      break;
    default:
      return fail_now(req.tag, -EOPNOTSUPP);
  }
  ios_[req.tag] = req;
  ++inflight_;
  if (held_.empty()) return dispatch_st(req.tag);
  hold_st(req.tag);  // behind the held ones
  drain_held_st();
}

void RdmaQueueTarget::dispatch_st(uint16_t tag) {
  size_t index;
  if (pick_connection_st(index)) return send_on_st(tag, index);
  if (live_ == 0 && fails_io_st(RecoveryClock::now())) return complete_tag_st(tag, -EIO);
  hold_st(tag);
}

bool RdmaQueueTarget::pick_connection_st(size_t& index) const {
  if (live_ == 0) return false;
  // The fewest requests, the lowest on a tie: a shallow queue stays on one connection (one CQ
  // to poll, and the server sees its commands back to back on one thread), a deep one spreads
  // over all of them. With failover, only over those of the active path.
  index = least_loaded(connections_.size(), [this](size_t i) {
    return recovery_[i].live() && (active_path_ == kAllPaths || path_of(i) == active_path_) ? connections_[i]->in_use()
                                                                                             : UINT32_MAX;
  });
  return recovery_[index].live() && !connections_[index]->full();
}

// Failover: the first path with a live connection (a path that comes back takes over again).
void RdmaQueueTarget::choose_active_path_st() {
  if (opts_.multipath == MultipathPolicy::kRoundRobin || opts_.paths.size() < 2) return;
  size_t was = active_path_;
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (recovery_[i].live()) {
      active_path_ = path_of(i);
      break;
    }
  }  // none live: the path stays, and what comes back first takes over
  active_path_gauge_.store(active_path_, std::memory_order_relaxed);
  if (active_path_ != was)
    log::rdma()->warn("queue {}: failing over from path {} to path {}", queue_id_, opts_.paths[was].text(),
                      opts_.paths[active_path_].text());
}

void RdmaQueueTarget::hold_st(uint16_t tag) {
  requests_[tag].state = RequestState::kHeld;
  held_.push_back(tag);
  held_gauge_.store(uint32_t(held_.size()), std::memory_order_relaxed);
}

void RdmaQueueTarget::send_on_st(uint16_t tag, size_t index) {
  RdmaRequest& t = requests_[tag];
  const ublk::IoRequest& req = ios_[tag];
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
    default:
      cmd.opcode = wire::Opcode::kWriteZeroes;
      break;
  }
  t.connection = uint8_t(index);
  RdmaConnection& c = *connections_[index];
  t.slot = c.take_slot_st(tag);
  cmd.tag = t.slot;
  bool windowed = false;
  if (cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite) {
    cmd.addr = reinterpret_cast<uint64_t>(req.buffer);
    // A pushed WRITE's data and a pulled READ's move by our own RDMA: the server needs no key.
    windowed = opts_.mr_per_io && !pulled && !(cmd.flags & wire::kCmdFlagPushed);
    cmd.rkey = !opts_.mr_per_io ? c.rkey_for(req.shared_buffer) : windowed ? c.next_window_rkey_st(t.slot) : 0;
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
  t.windowed = windowed;
  t.shared_buffer = req.shared_buffer;
  t.buffer = cmd.addr;
  t.offset = cmd.offset;
  // A pulled READ is our RDMA READ alone, a fenced WRITE our RDMA WRITE alone: the server
  // hears nothing of either.
  if (t.sends_command())
    wire::encode_into(cmd, std::span<uint8_t, wire::kCommandSize>(c.command_slot(t.slot), wire::kCommandSize));
  c.queue_st(tag);
  ++pending_;
}

int RdmaQueueTarget::poll_st() {
  if (pending_) post_all_st();
  int handled = poll_connections_st();
  if (++polls_since_housekeeping_ >= kHousekeepingEvery) {
    polls_since_housekeeping_ = 0;
    housekeeping_st();
  }
  return handled;
}

ublk::IdleAdvice RdmaQueueTarget::idle_advice_st() const {
  if (pending_) return ublk::IdleAdvice::kSpin;  // sends wait for send-queue room
  uint32_t out = held_.empty() ? inflight_ : inflight_ - uint32_t(held_.size());
  if (out == 0) return ublk::IdleAdvice::kNothingHeld;  // held ones wait for the recovery timer
  return out <= kSpinMaxInflight ? ublk::IdleAdvice::kSpin : ublk::IdleAdvice::kSleep;
}

bool RdmaQueueTarget::prepare_to_sleep_st() {
  if (pending_) post_all_st();
  if (stopped_) return true;
  for (auto& c : connections_) {
    if (c->failed()) continue;
    if (int rc = c->arm_st(); rc < 0) {
      log::rdma()->error("queue {}: ibv_req_notify_cq: {}", queue_id_, errno_text(rc));
      return false;  // keep spinning rather than sleep without a wakeup
    }
  }
  // Armed before this last poll: a completion that lands after it raises the event.
  return poll_connections_st() == 0 && pending_ == 0;
}

void RdmaQueueTarget::on_fd_ready_st(uint8_t token) {
  size_t i = token_index(token);
  switch (token_kind(token)) {
    case kTokenCq:
      if (i < connections_.size()) {
        counters_.cq_events.add_st(connections_[i]->consume_cq_events_st());
        connections_[i]->poll_st(requests_, *this);
      }
      break;
    case kTokenCm:
      if (i < connections_.size()) handle_cm_events_st(i);
      break;
    default:
      if (token == kTokenIoTimer) handle_io_timer_st();
      if (token == kTokenKeepAliveTimer) handle_keep_alive_timer_st();
      if (token == kTokenRecoveryTimer) handle_recovery_timer_st();
      if (token == kTokenReconnected) handle_reconnected_st();
      break;
  }
}

void RdmaQueueTarget::stop_st() {
  // The loop is done with the slab: make sure the device is too before it is unmapped.
  stopped_ = true;
  reconnector_.reset();
  for (auto& c : connections_) c->close_st();
  log::rdma()->debug("queue {}: stopped ({} commands, {} errors, {} stale)", queue_id_, counters_.commands.get(),
                     counters_.errors.get(), counters_.stale_completions.get());
}

void RdmaQueueTarget::fail_now(uint16_t tag, int err) {
  counters_.errors.add_st();
  ctx_->complete_st(tag, err);
}

void RdmaQueueTarget::complete_tag_st(uint16_t tag, int result) {
  RdmaRequest& t = requests_[tag];
  if (t.state == RequestState::kQueued || t.state == RequestState::kInFlight || t.state == RequestState::kClosing)
    connections_[t.connection]->release_slot_st(t.slot);
  t.state = RequestState::kFree;
  --inflight_;
  if (result < 0) {
    counters_.errors.add_st();
  } else if (t.op == uint8_t(wire::Opcode::kRead) || t.op == uint8_t(wire::Opcode::kWrite)) {
    counters_.rdma_bytes.add_st(t.length);
  }
  ctx_->complete_st(tag, result);
  // A slot came free: the oldest held request takes it (degraded: fewer connections than the
  // depth was spread over).
  if (!held_.empty() && live_ > 0) drain_held_st();
}

void RdmaQueueTarget::post_all_st() {
  for (auto& c : connections_)
    if (c->pending()) pending_ -= c->post_st(requests_, *this);
}

// Polls the CQ of every connection that may still get a completion; returns how many it reaped.
int RdmaQueueTarget::poll_connections_st() {
  int n = 0;
  for (auto& c : connections_)
    if (c->expects_completions()) n += c->poll_st(requests_, *this);
  return n;
}

// Whether `tag` names a command of opcode `op` that waits for its answer (the caller checks
// the generation); anything else is a stale or foreign answer.
bool RdmaQueueTarget::awaits_answer_st(uint16_t tag, uint8_t op) const {
  return tag < depth_ && requests_[tag].state == RequestState::kInFlight && requests_[tag].op == op;
}

void RdmaQueueTarget::on_answer_st(const RdmaConnection& c, const wire::Response& r) {
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
  answered_st(tag, err < 0 ? err : int(requests_[tag].length));
}

// The server is done with request `tag`; with a window over its buffer the request completes
// only once that is invalidated (on_window_closed_st).
void RdmaQueueTarget::answered_st(uint16_t tag, int result) {
  RdmaRequest& t = requests_[tag];
  if (!t.windowed) return complete_tag_st(tag, result);
  t.state = RequestState::kClosing;
  t.result = result;
  connections_[t.connection]->queue_close_st(tag);
  ++pending_;
}

// Every connection's KEEP_ALIVE answers carry the size: the device hears of a change once.
void RdmaQueueTarget::on_export_size_st(uint64_t bytes) {
  if (bytes == accepted_.export_size) return;
  log::rdma()->info("queue {}: export '{}' is {} bytes now (was {}): resizing the device", queue_id_,
                    opts_.export_name, bytes, accepted_.export_size);
  accepted_.export_size = bytes;
  ctx_->report_capacity_st(bytes);
}

void RdmaQueueTarget::on_window_closed_st(const WorkId& id) {
  if (id.tag >= depth_ || requests_[id.tag].state != RequestState::kClosing ||
      requests_[id.tag].generation != id.generation) {
    counters_.stale_completions.add_st();
    log::rdma()->error("queue {}: window invalidation for tag {} generation {} not asked for", queue_id_, id.tag,
                       id.generation);
    return;
  }
  complete_tag_st(id.tag, requests_[id.tag].result);
}

// A READ's data arrived with its answer in the immediate (status 0).
void RdmaQueueTarget::on_read_done_st(const RdmaConnection& c, const wire::ReadDone& d) {
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
  answered_st(tag, int(requests_[tag].length));
}

// Our RDMA READ of a READ's data completed: the data is in the slab, the READ is done.
void RdmaQueueTarget::on_pull_done_st(const WorkId& id) {
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

void RdmaQueueTarget::on_fenced_write_done_st(uint16_t tag) {
  counters_.completed.add_st();
  counters_.fenced_bytes.add_st(requests_[tag].length);
  complete_tag_st(tag, int(requests_[tag].length));
}

void RdmaQueueTarget::on_connection_failed_st(const RdmaConnection& c, const char* why) {
  connection_lost_st(c.index(), why);
}

std::unique_ptr<ublk::QueueTarget> make_rdma_queue_target(std::vector<RdmaConnection> connections,
                                                          const RdmaTargetOptions& opts, uint16_t conns_per_path,
                                                          uint16_t queue_id, uint64_t session_id) {
  return std::make_unique<RdmaQueueTarget>(std::move(connections), opts, conns_per_path, queue_id, session_id);
}

}  // namespace ublkrdma::targets
