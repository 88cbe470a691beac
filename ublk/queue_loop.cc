#include "ublk/queue_loop.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>

#include "base/log.h"

namespace ublkrdma::ublk {
namespace {

size_t page_size() {
  static const size_t ps = size_t(::sysconf(_SC_PAGESIZE));
  return ps;
}

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

unsigned ring_entries(uint16_t depth) {
  // Every tag's FETCH must fit at once, plus room for target ops and fd polls.
  unsigned want = 2u * depth + 32, n = 1;
  while (n < want) n <<= 1;
  return n;
}

}  // namespace

QueueLoop::QueueLoop(const QueueLoopConfig& cfg)
    : cfg_(cfg), tags_(cfg.depth),
      tag_lengths_(cfg.depth, 0), tag_ops_(cfg.depth, 0) {}

QueueLoop::~QueueLoop() { published_target_.store(nullptr); }

std::string QueueLoop::target_stats_json() const {
  const QueueTarget* t = published_target_.load();
  return t ? t->stats_json() : "{}";
}

void QueueLoop::setup_st() {
  // The kernel lays out one descriptor array per queue at a fixed stride of the largest
  // possible array; we map just ours.
  size_t stride = round_up(kMaxQueueDepth * sizeof(IoDesc), page_size());
  size_t len = round_up(size_t(cfg_.depth) * sizeof(IoDesc), page_size());
  off_t off = off_t(kCmdBufOffset + cfg_.queue_id * stride);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, cfg_.char_fd, off);
  if (p == MAP_FAILED) throw_errno(errno, "queue {}: mmap of the IO descriptor array", cfg_.queue_id);
  descs_ = MappedRegion(p, len);

  slab_ = MappedRegion::anonymous(size_t(cfg_.depth) * cfg_.max_io_bytes, /*populate=*/true);
  // Only this thread submits, and it runs task work when the kernel flags it (IORING_SQ_TASKRUN)
  // instead of being interrupted for it: a spinning pass then needs no syscall at all.
  constexpr unsigned kPreferred = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER;
  const unsigned entries = ring_entries(cfg_.depth);
  try {
    ring_.init(entries, kPreferred, 2 * entries);
    cooperative_taskrun_ = true;
  } catch (const SetupError& e) {
    if (e.errno_value() != EINVAL) throw;  // older kernels refuse the flags: run without them
    ring_.init(entries, 0, 2 * entries);
  }
}

void QueueLoop::run_st(std::unique_ptr<QueueTarget> target, const std::function<void()>& on_fetched) {
  target_ = std::move(target);
  setup_st();
  target_->start_st(*this);
  published_target_.store(target_.get());
  for (uint16_t tag = 0; tag < cfg_.depth; ++tag) {
    queue_io_cmd_st(kIoFetchReq, tag, 0);
    tags_.transition(tag, TagState::kIdle, TagState::kInKernel);
  }
  if (cfg_.exit_fd >= 0) {
    io_uring_sqe* sqe = get_sqe_st();
    io_uring_prep_poll_add(sqe, cfg_.exit_fd, POLLIN);
    sqe->user_data = WorkId{WorkKind::kControl, cfg_.queue_id, 0, 0, 0}.encode();
  }
  int rc = io_uring_submit(ring_.get());
  if (rc < 0) throw_errno(rc, "queue {}: submitting FETCH_REQ for {} tags", cfg_.queue_id, cfg_.depth);
  log::ublk_io()->debug("queue {}: {} tags fetched, serving", cfg_.queue_id, cfg_.depth);
  on_fetched();

  io_uring* ring = ring_.get();
  while (!tags_.all_retired() && !exiting_) {
    counters_.loop_passes.add_st();
    unsigned head, reaped = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(ring, head, cqe) {
      handle_cqe_st(*cqe);
      ++reaped;
    }
    io_uring_cq_advance(ring, reaped);
    counters_.max_batch.max_st(reaped);
    int polled = target_->poll_st();
    if (tags_.all_retired() || exiting_) break;

    bool worked = reaped || polled;
    bool spin = cfg_.poll.mode == PollMode::kBusy;
    IdleAdvice advice = IdleAdvice::kNothingHeld;
    if (cfg_.poll.mode == PollMode::kHybrid) {
      advice = worked ? IdleAdvice::kSpin : target_->idle_advice_st();
      if (advice != IdleAdvice::kNothingHeld) idle_since_ns_ = 0;
      spin = advice == IdleAdvice::kSpin || (advice == IdleAdvice::kNothingHeld && within_hybrid_spin_st());
    }
    if (spin || worked) {
      counters_.busy_polls.add_st();
      if (!worked) {
        // An idle spin hands the CPU to whoever is runnable here: with soft RDMA (rxe) that is
        // the kernel work that moves our packets, which would otherwise wait for the next tick.
        counters_.idle_polls.add_st();
        ::sched_yield();
      }
      rc = 0;
      if (!cooperative_taskrun_ || io_uring_sq_ready(ring) ||
          (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
        rc = io_uring_submit_and_get_events(ring);
    } else {
      arm_watches_st();
      if (!target_->prepare_to_sleep_st()) continue;
      counters_.idle_sleeps.add_st();
      if (advice == IdleAdvice::kSleep) counters_.busy_sleeps.add_st();
      rc = io_uring_submit_and_wait(ring, 1);
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      // Not recoverable for this queue: the kernel will abort our commands when the device
      // stops; keep reaping so in-flight target work drains.
      log::ublk_io()->error("queue {}: io_uring_enter failed: {}", cfg_.queue_id, errno_text(rc));
      ::usleep(1000);
    }
  }
  target_->stop_st();
  log::ublk_io()->debug("queue {}: {}, exiting", cfg_.queue_id, exiting_ ? "told to exit" : "all tags retired");
}

// Called on idle passes only: true until the queue has been idle for the hybrid spin time.
bool QueueLoop::within_hybrid_spin_st() {
  if (cfg_.poll.hybrid_spin.count() <= 0) return false;
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: no syscall
  uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
  if (idle_since_ns_ == 0) idle_since_ns_ = now;
  return now - idle_since_ns_ < uint64_t(std::chrono::nanoseconds(cfg_.poll.hybrid_spin).count());
}

void QueueLoop::handle_cqe_st(const io_uring_cqe& cqe) {
  WorkId id = WorkId::decode(cqe.user_data);
  switch (id.kind) {
    case WorkKind::kUblkCmd:
      handle_ublk_cqe_st(id.tag, cqe.res);
      break;
    case WorkKind::kTargetIo:
      target_->on_ring_cqe_st(id.tag, id.op, cqe.res);
      break;
    case WorkKind::kFdPoll:
      for (auto& w : watches_) {
        if (w.token == id.op) w.armed = false;
      }
      if (cqe.res < 0 && cqe.res != -ECANCELED)
        log::ublk_io()->warn("queue {}: poll on watched fd (token {}) failed: {}", cfg_.queue_id, id.op,
                             errno_text(cqe.res));
      target_->on_fd_ready_st(id.op);
      break;
    case WorkKind::kControl:
      log::ublk_io()->debug("queue {}: asked to exit with {} tags still in the kernel", cfg_.queue_id,
                            cfg_.depth - tags_.retired());
      exiting_ = true;
      break;
    default:
      log::ublk_io()->error("queue {}: completion with unexpected user_data {:#x}", cfg_.queue_id, cqe.user_data);
  }
}

void QueueLoop::handle_ublk_cqe_st(uint16_t tag, int res) {
  if (tag >= cfg_.depth) {
    log::ublk_io()->error("queue {}: completion for tag {} beyond depth {}", cfg_.queue_id, tag, cfg_.depth);
    return;
  }
  if (res == kIoResOk) {
    if (!move_tag_st(tag, TagState::kInKernel, TagState::kInTarget)) return;
    const IoDesc& d = static_cast<const IoDesc*>(descs_.get())[tag];
    IoRequest req{tag, d.op(), d.flags(), d.start_sector << 9, d.nr_sectors << 9, io_buffer(tag)};
    tag_lengths_[tag] = req.length;
    tag_ops_[tag] = req.op;
    counters_.max_inflight.max_st(tags_.in_target());
    SPDLOG_LOGGER_TRACE(log::ublk_io(), "q{} tag {} op {} off {} len {}", cfg_.queue_id, tag, req.op, req.offset,
                        req.length);
    target_->submit_st(req);
  } else if (res == kIoResNeedGetData) {
    queue_io_cmd_st(kIoNeedGetData, tag, 0);
  } else {
    // ABORT (-ENODEV) when the device stops or the queue is torn down; anything else is
    // unexpected but equally final for this tag.
    if (res != kIoResAbort)
      log::ublk_io()->warn("queue {}: io command for tag {} failed: {}", cfg_.queue_id, tag, errno_text(res));
    tags_.retire(tag);
  }
}

void QueueLoop::complete_st(uint16_t tag, int result) {
  if (!move_tag_st(tag, TagState::kInTarget, TagState::kInKernel)) return;
  counters_.ios.add_st();
  if (result < 0) {
    counters_.errors.add_st();
  } else if (tag_ops_[tag] == kOpRead) {
    counters_.bytes_read.add_st(uint64_t(result));
  } else if (tag_ops_[tag] == kOpWrite) {
    counters_.bytes_written.add_st(uint64_t(result));
  }
  queue_io_cmd_st(kIoCommitAndFetchReq, tag, result);
}

bool QueueLoop::move_tag_st(uint16_t tag, TagState from, TagState to) {
  if (tags_.transition(tag, from, to)) return true;
  log::ublk_io()->error("queue {}: tag {} cannot move from {} to {} (it is {}): dropped", cfg_.queue_id, tag,
                        tag_state_name(from), tag_state_name(to),
                        tag < cfg_.depth ? tag_state_name(tags_.state(tag)) : "out of range");
  return false;
}

void QueueLoop::queue_io_cmd_st(uint32_t cmd_nr, uint16_t tag, int result) {
  io_uring_sqe* sqe = get_sqe_st();
  std::memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = cfg_.char_fd;
  sqe->cmd_op = cfg_.ioctl_encode ? ioctl_io_op(cmd_nr) : cmd_nr;
  IoCmd cmd{cfg_.queue_id, tag, result, reinterpret_cast<uint64_t>(io_buffer(tag))};
  static_assert(sizeof(IoCmd) <= 16, "IO command must fit a 64-byte SQE's command area");
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  sqe->user_data = WorkId{WorkKind::kUblkCmd, cfg_.queue_id, tag, uint8_t(cmd_nr), 0}.encode();
  SPDLOG_LOGGER_TRACE(log::ublk_io(), "q{} tag {} {} result {}", cfg_.queue_id, tag, op_name(cmd_nr), result);
}

io_uring_sqe* QueueLoop::get_sqe_st() {
  io_uring* ring = ring_.get();
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  while (!sqe) {
    int rc = io_uring_submit(ring);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR)
      log::ublk_io()->error("queue {}: flushing a full SQ failed: {}", cfg_.queue_id, errno_text(rc));
    sqe = io_uring_get_sqe(ring);
  }
  return sqe;
}

int QueueLoop::register_fixed_buffers_st(std::span<const iovec> bufs) {
  return io_uring_register_buffers(ring_.get(), bufs.data(), unsigned(bufs.size()));
}

void QueueLoop::watch_fd_st(int fd, uint8_t token) { watches_.push_back(FdWatch{fd, token, false}); }

void QueueLoop::arm_watches_st() {
  for (auto& w : watches_) {
    if (w.armed) continue;
    io_uring_sqe* sqe = get_sqe_st();
    io_uring_prep_poll_add(sqe, w.fd, POLLIN);
    sqe->user_data = WorkId{WorkKind::kFdPoll, cfg_.queue_id, 0, w.token, 0}.encode();
    w.armed = true;
  }
}

}  // namespace ublkrdma::ublk
