#include "ublk/queue_loop.h"

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "ublk/sqe_retry.h"

namespace ublkrdma::ublk {
namespace {

size_t page_size() {
  static const size_t ps = size_t(::sysconf(_SC_PAGESIZE));
  return ps;
}

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

// CLOCK_MONOTONIC in ns: a vDSO read, no syscall.
uint64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

#ifndef IORING_URING_CMD_MULTISHOT
#define IORING_URING_CMD_MULTISHOT (1U << 1)  // 6.19+; older liburing headers lack it
#endif

// Batch IO: FETCH_IO_CMDS takes one of these buffers per completion it posts; each is recycled
// as soon as its tags are taken. If all are out at once the command ends (-ENOBUFS) with the
// undelivered tags kept by the driver, and is armed again.
constexpr uint16_t kFetchBufs = 16;
// The tag of a POLL_REMOVE's own completion (a watch's polls use tag 0).
constexpr uint16_t kPollRemoveTag = 1;
// The control polls' tags: the exit eventfd (forced teardown) and the device's deletion.
constexpr uint16_t kControlExit = 0, kControlStopping = 1;
constexpr unsigned kInitialCommitSlots = 4;

unsigned ring_entries(uint16_t depth) {
  // Every tag's FETCH must fit at once, plus room for target ops and fd polls.
  unsigned want = 2u * depth + 32, n = 1;
  while (n < want) n <<= 1;
  return n;
}

}  // namespace

QueueLoop::QueueLoop(const QueueLoopConfig& cfg)
    : cfg_(cfg), tags_(cfg.depth),
      tag_lengths_(cfg.depth, 0), tag_ops_(cfg.depth, 0), tag_zero_copy_(cfg.depth, 0),
      tag_start_ns_(cfg.depth, 0) {}

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
  // instead of being interrupted for it: a spinning pass then needs no syscall at all. With
  // DEFER_TASKRUN (what kublk uses) that work (the driver handing us requests, our ops'
  // completions) waits on the ring for the next io_uring_enter that asks for completions, which
  // every pass that finds the flag makes: no task_work_add and no signal-style wakeup per request.
  constexpr unsigned kCooperative =
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SINGLE_ISSUER;
  const unsigned entries = ring_entries(cfg_.depth);
  for (unsigned flags : {kCooperative | IORING_SETUP_DEFER_TASKRUN, kCooperative, 0u}) {
    try {
      ring_.init(entries, flags, 2 * entries);
      cooperative_taskrun_ = flags != 0;
      break;
    } catch (const SetupError& e) {
      if (e.errno_value() != EINVAL || flags == 0) throw;  // older kernels refuse flags: try fewer
    }
  }
  if (cfg_.batch_io) setup_batch_st();
}

void QueueLoop::setup_batch_st() {
  fetch_buf_count_ = kFetchBufs;
  fetch_buf_bytes_ = std::min<unsigned>(cfg_.depth, kBatchMaxTagsPerCqe) * sizeof(uint16_t);
  if (std::getenv("UBLK_RDMA_TEST_SMALL_FETCH")) {
    // Test hook: one buffer of two tags, so that the fetch command keeps running out of buffers
    // and is armed again (what a very deep queue might meet) while IO flows.
    fetch_buf_count_ = 1;
    fetch_buf_bytes_ = 2 * sizeof(uint16_t);
    log::ublk_io()->warn("queue {}: UBLK_RDMA_TEST_SMALL_FETCH: one fetch buffer of two tags", cfg_.queue_id);
  }
  const size_t ring_bytes = fetch_buf_count_ * sizeof(io_uring_buf);
  fetch_bufs_ = MappedRegion::anonymous(round_up(ring_bytes + fetch_buf_count_ * fetch_buf_bytes_, page_size()), true);
  fetch_ring_ = static_cast<io_uring_buf_ring*>(fetch_bufs_.get());
  io_uring_buf_ring_init(fetch_ring_);
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(fetch_ring_);
  reg.ring_entries = fetch_buf_count_;
  reg.bgid = 0;
  if (int rc = io_uring_register_buf_ring(ring_.get(), &reg, 0); rc < 0)
    throw_errno(rc, "queue {}: registering the provided-buffer ring for FETCH_IO_CMDS", cfg_.queue_id);
  for (unsigned i = 0; i < fetch_buf_count_; ++i)
    io_uring_buf_ring_add(fetch_ring_, fetch_buf(uint16_t(i)), fetch_buf_bytes_, uint16_t(i),
                          io_uring_buf_ring_mask(fetch_buf_count_), int(i));
  io_uring_buf_ring_advance(fetch_ring_, fetch_buf_count_);
  for (unsigned i = 0; i < kInitialCommitSlots; ++i) {
    commit_slots_.push_back(std::make_unique<BatchElem[]>(cfg_.depth));
    free_commit_slots_.push_back(uint16_t(i));
  }
}

std::byte* QueueLoop::fetch_buf(uint16_t bid) const {
  return static_cast<std::byte*>(fetch_bufs_.get()) + fetch_buf_count_ * sizeof(io_uring_buf) +
         size_t(bid) * fetch_buf_bytes_;
}

void QueueLoop::run_st(std::unique_ptr<QueueTarget> target, const std::function<void()>& on_fetched) {
  target_ = std::move(target);
  setup_st();
  target_->start_st(*this);
  published_target_.store(target_.get());
  if (cfg_.batch_io) {
    prep_batch_st();
    if (!arm_batch_fetch_st())
      throw_setup("queue {}: no room in the submission queue for FETCH_IO_CMDS", cfg_.queue_id);
  } else {
    for (uint16_t tag = 0; tag < cfg_.depth; ++tag) {
      if (!queue_io_cmd_st(kIoFetchReq, tag, 0))
        throw_setup("queue {}: no room in the submission queue for FETCH_REQ of tag {}", cfg_.queue_id, tag);
      tags_.transition(tag, TagState::kIdle, TagState::kInKernel);
    }
  }
  for (auto [fd, tag] : {std::pair{cfg_.exit_fd, kControlExit}, std::pair{cfg_.stopping_fd, kControlStopping}}) {
    if (fd < 0) continue;
    io_uring_sqe* sqe = get_sqe_st();
    if (!sqe) throw_setup("queue {}: no room in the submission queue for the control polls", cfg_.queue_id);
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    sqe->user_data = WorkId{WorkKind::kControl, cfg_.queue_id, tag, 0, 0}.encode();
  }
  int rc = io_uring_submit(ring_.get());
  if (rc < 0)
    throw_errno(rc, "queue {}: submitting {} for {} tags", cfg_.queue_id,
                cfg_.batch_io ? "FETCH_IO_CMDS" : "FETCH_REQ", cfg_.depth);
  log::ublk_io()->debug("queue {}: {} tags fetched{}, serving", cfg_.queue_id, cfg_.depth,
                        cfg_.batch_io ? " (batch IO)" : "");
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
    if (cfg_.batch_io) flush_batch_commits_st();
    if (tags_.all_retired() || exiting_) {
      if (cfg_.batch_io) io_uring_submit(ring);  // the last results
      break;
    }

    bool worked = reaped || polled;
    bool spin = cfg_.poll.mode == PollMode::kBusy;
    IdleAdvice advice = IdleAdvice::kNothingHeld;
    if (cfg_.poll.mode == PollMode::kHybrid) {
      advice = worked ? IdleAdvice::kSpin : target_->idle_advice_st();
      if (worked) idle_since_ns_ = 0;
      spin = worked || (advice == IdleAdvice::kSpin && within_spin_st(cfg_.poll.inflight_spin)) ||
             (advice == IdleAdvice::kNothingHeld && within_spin_st(cfg_.poll.hybrid_spin));
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
      if (exiting_) continue;  // a watch could not be armed: the queue failed
      if (!target_->prepare_to_sleep_st()) continue;
      counters_.idle_sleeps.add_st();
      if (advice != IdleAdvice::kNothingHeld) counters_.busy_sleeps.add_st();
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
  log::ublk_io()->debug("queue {}: {}, exiting", cfg_.queue_id,
                        failed_ ? "failed" : exiting_ ? "told to exit" : "all tags retired");
}

// Called on idle passes only: true until the queue has gone `limit` without work.
bool QueueLoop::within_spin_st(std::chrono::microseconds limit) {
  if (limit.count() <= 0) return false;
  const uint64_t now = monotonic_ns();
  if (idle_since_ns_ == 0) idle_since_ns_ = now;
  return now - idle_since_ns_ < uint64_t(std::chrono::nanoseconds(limit).count());
}

void QueueLoop::handle_cqe_st(const io_uring_cqe& cqe) {
  WorkId id = WorkId::decode(cqe.user_data);
  switch (id.kind) {
    case WorkKind::kUblkCmd:
      if (cfg_.batch_io) {
        handle_batch_cqe_st(cqe, id);
      } else {
        handle_ublk_cqe_st(id.tag, cqe.res);
      }
      break;
    case WorkKind::kTargetIo:
      target_->on_ring_cqe_st(id.tag, id.op, cqe.res);
      break;
    case WorkKind::kFdPoll: {
      if (id.tag == kPollRemoveTag) break;  // the removal of a replaced fd's poll
      auto w = std::find_if(watches_.begin(), watches_.end(), [&](const FdWatch& x) { return x.token == id.op; });
      if (w == watches_.end() || w->generation != id.generation) break;  // a replaced fd's poll
      w->armed = false;
      if (cqe.res < 0 && cqe.res != -ECANCELED)
        log::ublk_io()->warn("queue {}: poll on watched fd (token {}) failed: {}", cfg_.queue_id, id.op,
                             errno_text(cqe.res));
      target_->on_fd_ready_st(id.op);
      break;
    }
    case WorkKind::kControl:
      if (id.tag == kControlStopping) {
        if (cqe.res < 0) break;  // cancelled at teardown
        log::ublk_io()->debug("queue {}: the device is being deleted", cfg_.queue_id);
        target_->on_device_stopping_st();
        break;
      }
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
    take_request_st(tag);
  } else if (res == kIoResNeedGetData) {
    if (!queue_io_cmd_st(kIoNeedGetData, tag, 0)) fail_st("NEED_GET_DATA");
  } else {
    // ABORT (-ENODEV) when the device stops or the queue is torn down; anything else is
    // unexpected but equally final for this tag.
    if (res != kIoResAbort)
      log::ublk_io()->warn("queue {}: io command for tag {} failed: {}", cfg_.queue_id, tag, errno_text(res));
    tags_.retire(tag);
  }
}

// The kernel handed `tag` a request (its descriptor is in the mmap'd array): pass it to the target.
void QueueLoop::take_request_st(uint16_t tag) {
  if (!move_tag_st(tag, TagState::kInKernel, TagState::kInTarget)) return;
  tag_start_ns_[tag] = monotonic_ns();
  const IoDesc& d = static_cast<const IoDesc*>(descs_.get())[tag];
  IoRequest req{tag, d.op(), d.flags(), d.start_sector << 9, d.nr_sectors << 9, io_buffer(tag)};
  tag_lengths_[tag] = req.length;
  tag_ops_[tag] = req.op;
  tag_zero_copy_[tag] = (d.op_flags & kIoFShmemZc) != 0;
  if (tag_zero_copy_[tag] && !locate_shared_st(d, req)) return complete_st(tag, -EIO);
  counters_.max_inflight.max_st(tags_.in_target());
  SPDLOG_LOGGER_TRACE(log::ublk_io(), "q{} tag {} op {} off {} len {}", cfg_.queue_id, tag, req.op, req.offset,
                      req.length);
  target_->submit_st(req);
}

// A zero-copy request: its data is the application's, at (index, offset) of a shared buffer. The
// driver matched the pages to a buffer we registered; we still check that they lie in it.
bool QueueLoop::locate_shared_st(const IoDesc& d, IoRequest& req) {
  const uint32_t index = shmem_zc_index(d.addr), offset = shmem_zc_offset(d.addr);
  const SharedRegion* r = index < cfg_.shared.size() ? &cfg_.shared[index] : nullptr;
  if (!r || !r->base || uint64_t(offset) + req.length > r->size ||
      (r->read_only && req.op != kOpWrite)) {
    log::ublk_io()->error("queue {}: tag {}: zero-copy request (op {}, {} bytes) at offset {} of shared buffer {}, "
                          "which is not registered here or too small or read-only: failed",
                          cfg_.queue_id, req.tag, req.op, req.length, offset, index);
    return false;
  }
  req.buffer = r->base + offset;
  req.shared_buffer = int16_t(index);
  return true;
}

void QueueLoop::complete_st(uint16_t tag, int result) {
  if (!move_tag_st(tag, TagState::kInTarget, TagState::kInKernel)) return;
  counters_.ios.add_st();
  if (int t = timed_op_index(tag_ops_[tag]); t >= 0)
    counters_.latency[size_t(t)].record_st(monotonic_ns() - tag_start_ns_[tag]);
  const bool data = tag_ops_[tag] == kOpRead || tag_ops_[tag] == kOpWrite;
  if (result < 0) {
    counters_.errors.add_st();
  } else if (data) {
    (tag_ops_[tag] == kOpRead ? counters_.bytes_read : counters_.bytes_written).add_st(uint64_t(result));
    (tag_zero_copy_[tag] ? counters_.zero_copy_ios : counters_.driver_copy_ios).add_st();
    (tag_zero_copy_[tag] ? counters_.zero_copy_bytes : counters_.driver_copy_bytes).add_st(uint64_t(result));
  }
  if (!cfg_.batch_io) {
    if (!queue_io_cmd_st(kIoCommitAndFetchReq, tag, result)) fail_st("COMMIT_AND_FETCH_REQ");
    return;
  }
  queue_batch_commit_st(tag, result);
  if (fetch_aborted_) tags_.retire(tag);  // the queue is stopping: nothing will come for it
}

// ------------------------------------------------------------------ batch IO

// Every tag gets its buffer and is marked ready in one command; START_DEV waits for that.
void QueueLoop::prep_batch_st() {
  std::vector<BatchElem> elems(cfg_.depth);
  for (uint16_t tag = 0; tag < cfg_.depth; ++tag)
    elems[tag] = BatchElem{tag, 0, 0, reinterpret_cast<uint64_t>(io_buffer(tag))};
  BatchIoCmd cmd{cfg_.queue_id, kBatchFHasBufAddr, cfg_.depth, uint8_t(sizeof(BatchElem)), 0, 0};
  io_uring_sqe* sqe = uring_cmd_sqe_st(ioctl_batch_op(kIoPrepIoCmds), cmd);
  if (!sqe) throw_setup("queue {}: no room in the submission queue for PREP_IO_CMDS", cfg_.queue_id);
  sqe->addr = reinterpret_cast<uint64_t>(elems.data());
  sqe->len = uint32_t(elems.size() * sizeof(BatchElem));
  const uint64_t prep_id = WorkId{WorkKind::kUblkCmd, cfg_.queue_id, 0, uint8_t(kIoPrepIoCmds), 0}.encode();
  sqe->user_data = prep_id;
  int rc = io_uring_submit_and_wait(ring_.get(), 1);
  if (rc < 0) throw_errno(rc, "queue {}: submitting PREP_IO_CMDS for {} tags", cfg_.queue_id, cfg_.depth);
  // The elements must stay put until the kernel has answered: wait for this command's completion.
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    rc = io_uring_wait_cqe(ring_.get(), &cqe);
    if (rc < 0) throw_errno(rc, "queue {}: waiting for PREP_IO_CMDS", cfg_.queue_id);
    io_uring_cqe c = *cqe;
    io_uring_cqe_seen(ring_.get(), cqe);
    if (c.user_data != prep_id) {
      handle_cqe_st(c);
      continue;
    }
    if (c.res < 0) throw_errno(c.res, "queue {}: PREP_IO_CMDS for {} tags", cfg_.queue_id, cfg_.depth);
    break;
  }
  for (uint16_t tag = 0; tag < cfg_.depth; ++tag) tags_.transition(tag, TagState::kIdle, TagState::kInKernel);
}

// One multishot command delivers every request of the queue, in arrays of tags.
bool QueueLoop::arm_batch_fetch_st() {
  BatchIoCmd cmd{cfg_.queue_id, 0, uint16_t(fetch_buf_bytes_ / sizeof(uint16_t)), uint8_t(sizeof(uint16_t)), 0, 0};
  io_uring_sqe* sqe = uring_cmd_sqe_st(ioctl_batch_op(kIoFetchIoCmds), cmd);
  if (!sqe) return false;
  sqe->uring_cmd_flags = IORING_URING_CMD_MULTISHOT;
  sqe->flags = IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  sqe->user_data = WorkId{WorkKind::kUblkCmd, cfg_.queue_id, 0, uint8_t(kIoFetchIoCmds), 0}.encode();
  return true;
}

void QueueLoop::handle_batch_cqe_st(const io_uring_cqe& cqe, const WorkId& id) {
  switch (id.op) {
    case kIoFetchIoCmds:
      on_batch_fetch_st(cqe);
      break;
    case kIoCommitIoCmds: {
      // tag = the slot, generation = how many elements it carried; the answer is the bytes of
      // elements committed (the driver stops at the first it refuses).
      const uint32_t n = id.generation;
      if (id.tag < commit_slots_.size()) free_commit_slots_.push_back(id.tag);
      if (cqe.res != int(n * sizeof(BatchElem))) {
        int done = cqe.res < 0 ? 0 : cqe.res / int(sizeof(BatchElem));
        auto level = fetch_aborted_ ? spdlog::level::debug : spdlog::level::err;
        log::ublk_io()->log(level, "queue {}: COMMIT_IO_CMDS took {} of {} results ({})", cfg_.queue_id, done, n,
                            cqe.res < 0 ? errno_text(cqe.res) : std::string("stopped at a refused tag"));
      }
      break;
    }
    default:
      if (cqe.res < 0)
        log::ublk_io()->error("queue {}: batch command {:#x} failed: {}", cfg_.queue_id, id.op, errno_text(cqe.res));
  }
}

void QueueLoop::on_batch_fetch_st(const io_uring_cqe& cqe) {
  counters_.fetch_cqes.add_st();
  if (cqe.flags & IORING_CQE_F_BUFFER) {
    const uint16_t bid = uint16_t(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (bid >= fetch_buf_count_) {
      log::ublk_io()->error("queue {}: FETCH_IO_CMDS used unknown buffer {}", cfg_.queue_id, bid);
    } else {
      // Tags out of range are refused (and logged) by take_request_st's state check.
      const auto* tags = reinterpret_cast<const uint16_t*>(fetch_buf(bid));
      const unsigned n = cqe.res > 0 ? std::min<unsigned>(unsigned(cqe.res), fetch_buf_bytes_) / sizeof(uint16_t) : 0;
      for (unsigned i = 0; i < n; ++i) take_request_st(tags[i]);
      // Taken (even for zero tags): give it back.
      io_uring_buf_ring_add(fetch_ring_, fetch_buf(bid), fetch_buf_bytes_, bid, io_uring_buf_ring_mask(fetch_buf_count_),
                            0);
      io_uring_buf_ring_advance(fetch_ring_, 1);
    }
  }
  if (cqe.flags & IORING_CQE_F_MORE) return;
  if (cqe.res >= 0 || cqe.res == -ENOBUFS) {
    counters_.fetch_rearms.add_st();
    // Ended with its buffers all out (or the CQ full): the driver kept the tags.
    if (!arm_batch_fetch_st()) fail_st("FETCH_IO_CMDS");
    return;
  }
  if (cqe.res != kIoResAbort)
    log::ublk_io()->error("queue {}: FETCH_IO_CMDS failed: {}", cfg_.queue_id, errno_text(cqe.res));
  log::ublk_io()->debug("queue {}: fetching ended ({}), {} requests still with the target", cfg_.queue_id,
                        errno_text(cqe.res), tags_.in_target());
  fetch_aborted_ = true;
  retire_idle_tags_st();
}

void QueueLoop::retire_idle_tags_st() {
  for (uint16_t tag = 0; tag < cfg_.depth; ++tag) {
    TagState st = tags_.state(tag);
    if (st == TagState::kInKernel || st == TagState::kIdle) tags_.retire(tag);
  }
}

// A completion joins this pass's COMMIT_IO_CMDS (sent by flush_batch_commits_st at the end of
// the pass). A slot's elements stay untouched until the command's completion comes back;
// more slots are made if many commands are out at once (rare: the driver answers at submit).
void QueueLoop::queue_batch_commit_st(uint16_t tag, int result) {
  if (commit_slot_ < 0) {
    if (free_commit_slots_.empty()) {
      commit_slots_.push_back(std::make_unique<BatchElem[]>(cfg_.depth));
      free_commit_slots_.push_back(uint16_t(commit_slots_.size() - 1));
    }
    commit_slot_ = free_commit_slots_.back();
    free_commit_slots_.pop_back();
    commit_len_ = 0;
  }
  commit_slots_[size_t(commit_slot_)][commit_len_++] =
      BatchElem{tag, 0, result, reinterpret_cast<uint64_t>(io_buffer(tag))};
  if (commit_len_ == cfg_.depth) flush_batch_commits_st();
}

void QueueLoop::flush_batch_commits_st() {
  if (commit_slot_ < 0) return;
  const auto slot = uint16_t(commit_slot_);
  const uint16_t n = commit_len_;
  commit_slot_ = -1;
  commit_len_ = 0;
  if (n == 0) {
    free_commit_slots_.push_back(slot);
    return;
  }
  BatchIoCmd cmd{cfg_.queue_id, kBatchFHasBufAddr, n, uint8_t(sizeof(BatchElem)), 0, 0};
  io_uring_sqe* sqe = uring_cmd_sqe_st(ioctl_batch_op(kIoCommitIoCmds), cmd);
  if (!sqe) {
    free_commit_slots_.push_back(slot);
    fail_st("COMMIT_IO_CMDS");
    return;
  }
  sqe->addr = reinterpret_cast<uint64_t>(commit_slots_[slot].get());
  sqe->len = uint32_t(n * sizeof(BatchElem));
  sqe->user_data = WorkId{WorkKind::kUblkCmd, cfg_.queue_id, slot, uint8_t(kIoCommitIoCmds), n}.encode();
  counters_.commit_cmds.add_st();
}

bool QueueLoop::move_tag_st(uint16_t tag, TagState from, TagState to) {
  if (tags_.transition(tag, from, to)) return true;
  log::ublk_io()->error("queue {}: tag {} cannot move from {} to {} (it is {}): dropped", cfg_.queue_id, tag,
                        tag_state_name(from), tag_state_name(to),
                        tag < cfg_.depth ? tag_state_name(tags_.state(tag)) : "out of range");
  return false;
}

// A URING_CMD SQE on the char device with `cmd` in its command area; the caller adds the rest.
// Null if the SQ has no room (see get_sqe_st).
template <typename Cmd>
io_uring_sqe* QueueLoop::uring_cmd_sqe_st(uint32_t cmd_op, const Cmd& cmd) {
  static_assert(sizeof(Cmd) <= 16, "an IO command must fit a 64-byte SQE's command area");
  io_uring_sqe* sqe = get_sqe_st();
  if (!sqe) return nullptr;
  std::memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = cfg_.char_fd;
  sqe->cmd_op = cmd_op;
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  return sqe;
}

bool QueueLoop::queue_io_cmd_st(uint32_t cmd_nr, uint16_t tag, int result) {
  IoCmd cmd{cfg_.queue_id, tag, result, reinterpret_cast<uint64_t>(io_buffer(tag))};
  io_uring_sqe* sqe = uring_cmd_sqe_st(cfg_.ioctl_encode ? ioctl_io_op(cmd_nr) : cmd_nr, cmd);
  if (!sqe) return false;
  sqe->user_data = WorkId{WorkKind::kUblkCmd, cfg_.queue_id, tag, uint8_t(cmd_nr), 0}.encode();
  SPDLOG_LOGGER_TRACE(log::ublk_io(), "q{} tag {} {} result {}", cfg_.queue_id, tag, op_name(cmd_nr), result);
  return true;
}

io_uring_sqe* QueueLoop::get_sqe_st() {
  if (failed_) return nullptr;  // the ring already refused: do not retry (and log) per request
  io_uring* ring = ring_.get();
  int err = 0;
  io_uring_sqe* sqe = get_entry_flushing([ring] { return io_uring_get_sqe(ring); },
                                         [ring] { return io_uring_submit(ring); }, kMaxSqFlushes, &err);
  if (!sqe)
    log::ublk_io()->error("queue {}: the submission queue stays full ({} flushes): {}", cfg_.queue_id, kMaxSqFlushes,
                          errno_text(err));
  return sqe;
}

// The ring cannot take a command the queue's tags depend on (a commit, a fetch, a watch it
// would sleep on): waiting for it would hang the thread, so the queue stops serving now, loudly.
// Its requests in the kernel get no answer until the device is stopped.
void QueueLoop::fail_st(const char* what) {
  if (!failed_)
    log::ublk_io()->error("queue {}: no room in the submission queue for {}: this queue stops serving",
                          cfg_.queue_id, what);
  failed_ = true;
  exiting_ = true;
}

int QueueLoop::register_fixed_buffers_st(std::span<const iovec> bufs) {
  return io_uring_register_buffers(ring_.get(), bufs.data(), unsigned(bufs.size()));
}

uint64_t QueueLoop::poll_user_data(const FdWatch& w) const {
  return WorkId{WorkKind::kFdPoll, cfg_.queue_id, 0, w.token, w.generation}.encode();
}

void QueueLoop::report_capacity_st(uint64_t bytes) {
  if (!cfg_.capacity) return;
  cfg_.capacity->store(bytes, std::memory_order_relaxed);
  uint64_t one = 1;
  (void)!::write(cfg_.capacity_fd, &one, sizeof(one));  // the eventfd orders the store for its reader
}

void QueueLoop::watch_fd_st(int fd, uint8_t token) {
  auto w = std::find_if(watches_.begin(), watches_.end(), [&](const FdWatch& x) { return x.token == token; });
  if (w == watches_.end()) return watches_.push_back(FdWatch{fd, token, false, 0});
  // The poll on the old fd would hold its file open and could fire for it: remove it.
  if (w->armed) {
    if (io_uring_sqe* sqe = get_sqe_st()) {
      io_uring_prep_poll_remove(sqe, poll_user_data(*w));
      sqe->user_data = WorkId{WorkKind::kFdPoll, cfg_.queue_id, kPollRemoveTag, token, 0}.encode();
    } else {
      log::ublk_io()->warn("queue {}: no room to remove the poll on a replaced fd (token {}): its file stays "
                           "open until the poll fires or the queue stops",
                           cfg_.queue_id, token);
    }
  }
  w->fd = fd;
  w->armed = false;
  w->generation = (w->generation + 1) & WorkId::kGenMask;
}

void QueueLoop::arm_watches_st() {
  for (auto& w : watches_) {
    if (w.armed || w.fd < 0) continue;
    io_uring_sqe* sqe = get_sqe_st();
    if (!sqe) {
      fail_st("a poll on a watched fd");  // sleeping without it could miss the target's wake-up
      return;
    }
    io_uring_prep_poll_add(sqe, w.fd, POLLIN);
    sqe->user_data = poll_user_data(w);
    w.armed = true;
  }
}

}  // namespace ublkrdma::ublk
