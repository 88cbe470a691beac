#include "ublk/served_device.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <latch>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/log.h"

namespace ublkrdma::ublk {
namespace {

UniqueFd make_eventfd() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw_errno(errno, "eventfd");
  return UniqueFd(fd);
}

}  // namespace

Params make_params(const DeviceGeometry& g, uint32_t max_io_bytes) {
  Params p{};
  p.len = sizeof(p);
  p.types = kParamTypeBasic;
  p.basic.attrs = (g.read_only ? kAttrReadOnly : 0) | (g.rotational ? kAttrRotational : 0) |
                  (g.volatile_cache ? kAttrVolatileCache : 0) | (g.fua ? kAttrFua : 0);
  p.basic.logical_bs_shift = g.logical_bs_shift;
  p.basic.physical_bs_shift = g.physical_bs_shift;
  p.basic.io_min_shift = g.logical_bs_shift;
  p.basic.io_opt_shift = g.physical_bs_shift;
  p.basic.max_sectors = max_io_bytes >> 9;
  p.basic.dev_sectors = g.size_bytes >> 9;
  if (g.discard || g.write_zeroes) {
    p.types |= kParamTypeDiscard;
    p.discard.discard_granularity = g.discard_granularity;
    p.discard.max_discard_sectors = g.discard ? (UINT32_MAX >> 9) : 0;
    p.discard.max_write_zeroes_sectors = g.write_zeroes ? (UINT32_MAX >> 9) : 0;
    p.discard.max_discard_segments = 1;
  }
  return p;
}

void ServedDevice::open_char_device() {
  std::string path = fmt::format("/dev/ublkc{}", info_.dev_id);
  // devtmpfs creates the node right after ADD_DEV; allow a moment for it (and for udev, if any).
  for (int i = 0; i < 300; ++i) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      char_fd_.reset(fd);
      return;
    }
    if (errno != ENOENT) throw_errno(errno, "cannot open {}", path);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw_setup("{} did not appear within 3 s of ADD_DEV", path);
}

void ServedDevice::start_queues(ControlDevice& ctrl, TargetFactory& factory, PollPolicy poll) {
  done_fd_ = make_eventfd();
  exit_fd_ = make_eventfd();
  stopping_fd_ = make_eventfd();
  capacity_fd_ = make_eventfd();
  uint16_t nq = info_.nr_hw_queues;
  tids_ = std::vector<std::atomic<pid_t>>(nq);
  for (uint16_t q = 0; q < nq; ++q) loops_.push_back(nullptr);
  fetched_ = std::make_unique<std::latch>(nq);

  for (uint16_t q = 0; q < nq; ++q) {
    cpu_set_t cpus;
    int rc = ctrl.get_queue_affinity(info_.dev_id, q, cpus);
    bool pin = rc == 0 && CPU_COUNT(&cpus) > 0;
    if (rc < 0) log::ctrl()->warn("dev {} queue {}: GET_QUEUE_AFFINITY failed: {}", info_.dev_id, q, errno_text(rc));
    QueueLoopConfig cfg{info_.dev_id, q, info_.queue_depth, info_.max_io_buf_bytes, char_fd_.get(),
                        ctrl.kernel().ioctl_encode(), poll, exit_fd_.get(), stopping_fd_.get(),
                        (info_.flags & kFBatchIo) != 0,
                        shared_ ? std::span<const SharedRegion>(shared_->regions()) : std::span<const SharedRegion>(),
                        &capacity_, capacity_fd_.get()};
    loops_[q] = std::make_unique<QueueLoop>(cfg);
    threads_.emplace_back([&, q, nq, cpus, pin] {
      tids_[q] = pid_t(::syscall(SYS_gettid));
      pthread_setname_np(pthread_self(), fmt::format("ublk-q{}", q).c_str());
      if (pin) pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
      // The thread writes back for the device it serves: reclaim from it must not wait on that
      // device's own writeback (a file system or swap on /dev/ublkbN would deadlock).
      if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0)
        log::ctrl()->warn("dev {} queue {}: PR_SET_IO_FLUSHER: {}", info_.dev_id, q, errno_text(errno));
      bool counted = false;
      try {
        loops_[q]->run_st(factory.make_queue_target(q), [&] {
          counted = true;
          fetched_->count_down();
        });
      } catch (const std::exception& e) {
        log::ctrl()->error("dev {} queue {}: {}", info_.dev_id, q, e.what());
        if (!counted) {
          std::lock_guard lk(setup_mu_);
          if (!setup_error_) setup_error_ = std::current_exception();
          fetched_->count_down();
        }
      }
      if (++exited_ == nq) {
        uint64_t one = 1;
        (void)!::write(done_fd_.get(), &one, sizeof(one));
      }
    });
  }
  fetched_->wait();
  std::lock_guard lk(setup_mu_);
  if (setup_error_) std::rethrow_exception(setup_error_);
}

std::unique_ptr<ServedDevice> ServedDevice::create(ControlDevice& ctrl, const DeviceOptions& opts,
                                                   TargetFactory& factory) {
  DeviceGeometry geo = factory.geometry();
  std::unique_ptr<ServedDevice> dev(new ServedDevice());
  CtrlDevInfo& info = dev->info_;
  info.nr_hw_queues = opts.nr_queues;
  info.queue_depth = opts.queue_depth;
  info.max_io_buf_bytes = opts.max_io_bytes;
  info.dev_id = opts.dev_id < 0 ? UINT32_MAX : uint32_t(opts.dev_id);
  // UPDATE_SIZE where the driver has it: the storage may be resized under the device (an rbd
  // image), and the device follows (apply_capacity).
  info.flags = ctrl.kernel().features & (kFCmdIoctlEncode | kFUpdateSize);
  const bool user_recovery = opts.recovery != RecoveryMode::kNone;
  if (user_recovery) {
    uint64_t want = kFUserRecovery | (opts.recovery == RecoveryMode::kReissue ? kFUserRecoveryReissue : 0) |
                    (opts.recovery == RecoveryMode::kFailIo ? kFUserRecoveryFailIo : 0);
    if (ctrl.kernel().get_features_supported && (ctrl.kernel().features & want) != want)
      throw_setup("this kernel's ublk driver lacks {}: cannot use -r 1 this way",
                  opts.recovery == RecoveryMode::kFailIo ? "USER_RECOVERY_FAIL_IO (6.13+) for --recovery-fail-io"
                  : opts.recovery == RecoveryMode::kReissue ? "USER_RECOVERY(_REISSUE)"
                                                              : "USER_RECOVERY");
    info.flags |= want;
  }
  if (!opts.shared_buffers.empty()) {
    if (!(ctrl.kernel().features & kFShmemZc))
      throw_setup("this kernel's ublk driver lacks SHMEM_ZC (Linux 7.1+): --shmem-buf cannot be used here; "
                  "without it every request is copied");
    dev->shared_ = std::make_unique<SharedBuffers>(opts.shared_buffers);  // a bad file fails before ADD_DEV
    info.flags |= kFShmemZc;
  }
  const bool batch_offered = (ctrl.kernel().features & kFBatchIo) != 0;
  if (opts.batch_io == BatchIoMode::kOn) {
    if (!batch_offered) throw_setup("this kernel's ublk driver lacks BATCH_IO (7.0+): cannot use --batch-io on");
    // Recovery with batch IO is not something we have tested against the driver.
    if (user_recovery) throw_setup("--batch-io on cannot be combined with -r 1");
  }
  if (opts.batch_io != BatchIoMode::kOff && batch_offered && !user_recovery) info.flags |= kFBatchIo;
  const bool batch_asked = (info.flags & kFBatchIo) != 0;
  int rc = ctrl.add_dev(info);
  if (rc == -EEXIST) throw SetupError(fmt::format("ublk device {} already exists", opts.dev_id), EEXIST);
  if (rc < 0) throw_errno(rc, "ADD_DEV (queues {}, depth {}, max io {})", opts.nr_queues, opts.queue_depth,
                          opts.max_io_bytes);
  log::ctrl()->debug("added ublk device {} (flags {:#x})", info.dev_id, info.flags);
  if (batch_asked && !(info.flags & kFBatchIo)) {
    // The driver may drop a flag it cannot combine; per-tag commands then serve the device.
    log::ctrl()->info("device {}: the driver did not grant BATCH_IO; using per-request commands", info.dev_id);
    if (opts.batch_io == BatchIoMode::kOn) {
      uint32_t id = info.dev_id;
      ctrl.del_dev(id);
      throw_setup("the driver did not grant BATCH_IO for device {}", id);
    }
  }
  if (dev->shared_ && !(info.flags & kFShmemZc)) {
    uint32_t id = info.dev_id;
    ctrl.del_dev(id);
    throw_setup("the driver did not grant SHMEM_ZC for device {} (needed by --shmem-buf)", id);
  }
  if (info.nr_hw_queues != opts.nr_queues || info.queue_depth != opts.queue_depth) {
    uint32_t id = info.dev_id;
    ctrl.del_dev(id);
    throw_setup("the kernel changed the queue layout ({} queues x {} deep requested, {} x {} granted); "
                "use at most as many queues as CPUs",
                opts.nr_queues, opts.queue_depth, info.nr_hw_queues, info.queue_depth);
  }

  uint32_t id = info.dev_id;
  try {
    Params params = make_params(geo, info.max_io_buf_bytes);
    rc = ctrl.set_params(id, params);
    if (rc < 0) throw_errno(rc, "SET_PARAMS on device {}", id);
    // Before START_DEV: no disk yet, so the driver need not freeze its queue.
    if (dev->shared_) dev->shared_->register_all(ctrl, id);
    dev->applied_capacity_ = params.basic.dev_sectors << 9;
    dev->open_char_device();
    dev->start_queues(ctrl, factory, opts.poll);
    rc = ctrl.start_dev(id, ::getpid());
    if (rc < 0) throw_errno(rc, "START_DEV on device {}", id);
    ctrl.get_dev_info(id, info);
  } catch (...) {
    dev->force_exit();
    dev.reset();  // joins threads, closes /dev/ublkcN so DEL_DEV can finish
    int drc = ctrl.del_dev(id);
    if (drc < 0) log::ctrl()->warn("cleanup: DEL_DEV {} failed: {}", id, errno_text(drc));
    throw;
  }
  return dev;
}

std::unique_ptr<ServedDevice> ServedDevice::recover(ControlDevice& ctrl, uint32_t dev_id, const DeviceOptions& opts,
                                                    TargetFactory& factory) {
  std::unique_ptr<ServedDevice> dev(new ServedDevice());
  int rc = ctrl.get_dev_info(dev_id, dev->info_);
  if (rc < 0) throw_errno(rc, "device {} not found", dev_id);
  if (!(dev->info_.flags & kFUserRecovery))
    throw_setup("device {} was not created with -r 1 (USER_RECOVERY): it cannot be recovered", dev_id);
  if (!opts.shared_buffers.empty()) {
    if (!(dev->info_.flags & kFShmemZc))
      throw_setup("device {} has no SHMEM_ZC, yet shared buffers are recorded for it", dev_id);
    // The registrations outlived the daemon (the driver keeps the pages pinned until UNREG_BUF or
    // DEL_DEV). They cannot be made again now: (un)registering freezes the queue, which would wait
    // for the requests the quiesced device holds for us. The same files are mapped again under
    // the recorded indices instead.
    dev->shared_ = std::make_unique<SharedBuffers>(opts.shared_buffers);
    dev->shared_->adopt_recorded();
  }
  // The old daemon's teardown may still be finishing in the kernel: retry while busy.
  for (int i = 0;; ++i) {
    rc = ctrl.start_user_recovery(dev_id);
    if (rc != -EBUSY || i >= 100) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (rc < 0)
    throw_errno(rc, "START_USER_RECOVERY on device {} (state {}; is its daemon still alive?)", dev_id,
                device_state_name(dev->info_.state));
  // The capacity the device has: the target's storage may have been resized while no daemon ran.
  if (Params p{}; ctrl.get_params(dev_id, p) == 0) dev->applied_capacity_ = p.basic.dev_sectors << 9;
  dev->open_char_device();
  try {
    dev->start_queues(ctrl, factory, opts.poll);
  } catch (...) {
    dev->force_exit();
    throw;
  }
  rc = ctrl.end_user_recovery(dev_id, ::getpid());
  if (rc < 0) {
    dev->force_exit();
    throw_errno(rc, "END_USER_RECOVERY on device {}", dev_id);
  }
  ctrl.get_dev_info(dev_id, dev->info_);
  return dev;
}

ServedDevice::~ServedDevice() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  loops_.clear();
  char_fd_.reset();
}

std::vector<pid_t> ServedDevice::queue_tids() const {
  std::vector<pid_t> out;
  for (auto& t : tids_) out.push_back(t.load());
  return out;
}

int ServedDevice::stop(ControlDevice& ctrl) {
  if (stopping_fd_) {
    uint64_t one = 1;
    (void)!::write(stopping_fd_.get(), &one, sizeof(one));
  }
  return ctrl.stop_dev(info_.dev_id);
}

void ServedDevice::force_exit() {
  if (!exit_fd_) return;
  uint64_t one = 1;
  (void)!::write(exit_fd_.get(), &one, sizeof(one));
}

nlohmann::json ServedDevice::shared_buffers_json() const {
  return shared_ ? shared_->describe() : nlohmann::json::array();
}

size_t ServedDevice::unregister_shared_buffers(ControlDevice& ctrl) {
  return shared_ ? shared_->unregister_all(ctrl, info_.dev_id) : 0;
}

void ServedDevice::apply_capacity(ControlDevice& ctrl) {
  uint64_t n;
  (void)!::read(capacity_fd_.get(), &n, sizeof(n));
  uint64_t bytes = capacity_.load(std::memory_order_relaxed);
  if (bytes == 0 || bytes == applied_capacity_) return;
  applied_capacity_ = bytes;
  if (!(info_.flags & kFUpdateSize)) {
    log::ctrl()->warn("dev {}: its storage is {} bytes now, but this kernel's ublk driver cannot resize a device "
                      "(UPDATE_SIZE, Linux 6.16+): it keeps its size until it is deleted and added again",
                      info_.dev_id, bytes);
    return;
  }
  if (int rc = ctrl.update_size(info_.dev_id, bytes >> 9); rc < 0) {
    log::ctrl()->error("dev {}: UPDATE_SIZE to {} bytes failed: {}", info_.dev_id, bytes, errno_text(rc));
    return;
  }
  log::ctrl()->info("dev {}: resized to {} bytes (its storage was resized)", info_.dev_id, bytes);
}

namespace {

// The queue's latency histograms: the buckets' inclusive upper bounds in microseconds, then per
// operation the count of each bucket (not cumulative; the last one counts what is above every
// bound), their total and the sum of the latencies in ns.
nlohmann::json latency_json(const QueueCounters& c) {
  nlohmann::json bounds = nlohmann::json::array();
  for (size_t i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) bounds.push_back(LatencyHistogram::upper_bound_us(i));
  nlohmann::json j = {{"bucket_le_us", std::move(bounds)}};
  for (size_t op = 0; op < kTimedOps; ++op) {
    const LatencyHistogram& h = c.latency[op];
    nlohmann::json buckets = nlohmann::json::array();
    uint64_t count = 0;
    for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
      buckets.push_back(h.bucket(i));
      count += h.bucket(i);
    }
    j[kTimedOpNames[op]] = {{"buckets", std::move(buckets)}, {"count", count}, {"sum_ns", h.sum_ns()}};
  }
  return j;
}

}  // namespace

std::string ServedDevice::stats_json() const {
  nlohmann::json arr = nlohmann::json::array();
  for (size_t q = 0; q < loops_.size(); ++q) {
    const QueueCounters& c = loops_[q]->counters();
    nlohmann::json j = {{"queue", q},
                        {"tid", tids_[q].load()},
                        {"ios", c.ios.get()},
                        {"errors", c.errors.get()},
                        {"bytes_read", c.bytes_read.get()},
                        {"bytes_written", c.bytes_written.get()},
                        {"loop_passes", c.loop_passes.get()},
                        {"idle_sleeps", c.idle_sleeps.get()},
                        {"busy_sleeps", c.busy_sleeps.get()},
                        {"busy_polls", c.busy_polls.get()},
                        {"idle_polls", c.idle_polls.get()},
                        {"max_inflight", c.max_inflight.get()},
                        {"max_batch", c.max_batch.get()},
                        {"commit_cmds", c.commit_cmds.get()},
                        {"fetch_cqes", c.fetch_cqes.get()},
                        {"fetch_rearms", c.fetch_rearms.get()},
                        {"zero_copy_ios", c.zero_copy_ios.get()},
                        {"zero_copy_bytes", c.zero_copy_bytes.get()},
                        {"driver_copy_ios", c.driver_copy_ios.get()},
                        {"driver_copy_bytes", c.driver_copy_bytes.get()}};
    j["latency"] = latency_json(c);
    j["target"] = nlohmann::json::parse(loops_[q]->target_stats_json(), nullptr, false);
    arr.push_back(std::move(j));
  }
  return arr.dump();
}

}  // namespace ublkrdma::ublk
