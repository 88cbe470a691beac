#pragma once
// The contract between a ublk queue thread (QueueLoop) and the target that serves its IO.
//
// One QueueTarget instance per ublk queue, created on and used only by that queue's thread
// (functions ending in `_st` run on the owner thread only). The loop owns the io_uring, the
// tag table and the IO buffer slab; the target turns an IoRequest into work (a syscall-free
// completion for null, io_uring ops for loop, RDMA work requests for rdma) and reports the
// result with QueueContext::complete_st(tag, result). No locks, no heap allocation per IO.
#include <liburing.h>

#include <array>
#include <cstddef>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "base/counter.h"
#include "base/latency_histogram.h"
#include "base/work_id.h"
#include "ublk/uapi.h"

namespace ublkrdma::ublk {

// One block request as the kernel described it, plus where its data is.
struct IoRequest {
  uint16_t tag;
  uint8_t op;           // kOpRead, kOpWrite, kOpFlush, kOpDiscard, kOpWriteZeroes
  uint32_t flags;       // kIoFFua, kIoFNoUnmap, ...
  uint64_t offset;      // bytes
  uint32_t length;      // bytes (0 for flush)
  std::byte* buffer;    // the data: this tag's slice of the queue's slab, or the application's pages
                        // in a shared buffer; valid until complete_st(tag)
  int16_t shared_buffer = -1;  // zero copy: the index of the shared buffer `buffer` is in; -1: the slab
};

// A shared buffer registered with the device (add --shmem-buf): the application's O_DIRECT
// requests whose pages lie in it come with `buffer` pointing into it, copied by no one.
struct SharedRegion {
  std::byte* base = nullptr;  // null: no buffer has this index
  size_t size = 0;
  bool read_only = false;     // only WRITEs come from it: the daemon maps it read-only
};

// How a queue thread waits for work. Chosen per device (--poll).
enum class PollMode : uint8_t {
  kBusy,    // never sleep: spin on the ring and the target's poll_st()
  kEvent,   // always sleep in io_uring_submit_and_wait, woken by watched fds
  kHybrid,  // spin while the target has work in flight, sleep when idle (default)
};

// Hybrid mode keeps polling this long after the queue's last work before it sleeps: a request
// that follows soon (the next IO of a QD1 stream) is then taken without a wake-up. Measured:
// 100 us cut ublk-rdma's QD1 latency ratio to nvme-rdma by ~13 % in the emulated guest.
inline constexpr std::chrono::microseconds kDefaultHybridSpin{100};
// Hybrid mode polls for the answers to requests in flight at most this long without one, then
// sleeps until an answer wakes it: an export that answers in milliseconds (rbd, a disk) would
// otherwise keep a CPU busy for the whole wait, which a wake-up would cost a fraction of.
inline constexpr std::chrono::microseconds kDefaultInflightSpin{1000};

// How a queue thread waits for work.
struct PollPolicy {
  PollMode mode = PollMode::kHybrid;
  std::chrono::microseconds hybrid_spin = kDefaultHybridSpin;
  std::chrono::microseconds inflight_spin = kDefaultInflightSpin;
};

constexpr const char* poll_mode_name(PollMode m) {
  switch (m) {
    case PollMode::kBusy: return "busy";
    case PollMode::kEvent: return "event";
    case PollMode::kHybrid: return "hybrid";
  }
  return "?";
}

// The operations whose latency a queue measures, each in a histogram of its own; WRITE_SAME
// (which the driver never sends us) is not measured.
inline constexpr size_t kTimedOps = 5;
inline constexpr const char* kTimedOpNames[kTimedOps] = {"read", "write", "flush", "discard", "write_zeroes"};
// The histogram of a ublk operation (kOpRead, ...), or -1.
constexpr int timed_op_index(uint8_t op) {
  return op <= kOpDiscard ? int(op) : op == kOpWriteZeroes ? 4 : -1;
}

// Per-queue counters: single writer (the queue thread), read by the stats reporter with
// relaxed loads. Targets add their own under `target_*` via QueueTarget::stats_json().
struct QueueCounters {
  RelaxedCounter ios;            // requests completed
  RelaxedCounter errors;         // requests completed with a negative result
  RelaxedCounter bytes_read;
  RelaxedCounter bytes_written;
  RelaxedCounter loop_passes;    // iterations of the queue loop
  RelaxedCounter idle_sleeps;    // times the loop blocked waiting for events
  RelaxedCounter busy_sleeps;    // ... of them with requests out (hybrid: many, or waited for too long)
  RelaxedCounter busy_polls;     // passes that spun without blocking
  RelaxedCounter idle_polls;     // spinning passes that found nothing to do (and yielded)
  RelaxedCounter max_inflight;   // high-water mark of requests held by the target
  RelaxedCounter max_batch;      // most CQEs reaped in one pass
  RelaxedCounter commit_cmds;    // batch IO: COMMIT_IO_CMDS sent (ios / commit_cmds = results per command)
  RelaxedCounter fetch_cqes;     // batch IO: completions of FETCH_IO_CMDS (each a batch of new requests)
  RelaxedCounter fetch_rearms;   // batch IO: FETCH_IO_CMDS armed again after it ended (buffers ran out)
  // READs and WRITEs completed, and their bytes: by zero copy (the data in a shared buffer) or by
  // the driver's copy to or from the tag's buffer.
  RelaxedCounter zero_copy_ios;
  RelaxedCounter zero_copy_bytes;
  RelaxedCounter driver_copy_ios;
  RelaxedCounter driver_copy_bytes;
  // Each request's time in this daemon, by operation (timed_op_index): from the moment the queue
  // takes it from the driver to the moment it hands the driver its result (the commit is queued
  // then and leaves with the pass's submit). For rdma that includes the round trip to the server.
  std::array<LatencyHistogram, kTimedOps> latency;
};

// What the loop offers a target. Implemented by QueueLoop.
class QueueContext {
 public:
  virtual ~QueueContext() = default;
  virtual uint16_t queue_id() const = 0;
  virtual uint16_t depth() const = 0;
  virtual uint32_t max_io_bytes() const = 0;
  // The whole IO buffer slab of this queue: depth slices of max_io_bytes, page aligned.
  // Registered once (e.g. as one RDMA memory region) by targets that need it.
  virtual std::span<std::byte> io_slab() const = 0;
  virtual std::byte* io_buffer(uint16_t tag) const = 0;
  // The device's shared buffers by index (IoRequest::shared_buffer), registered once (e.g. as
  // RDMA memory regions) by targets that need it; fixed while the queue runs.
  virtual std::span<const SharedRegion> shared_buffers() const { return {}; }

  // Reports the result of the request on `tag`: bytes transferred (>= 0) or -errno.
  virtual void complete_st(uint16_t tag, int result) = 0;

  // An SQE on the queue's ring for the target's own IO; its user_data must be made with
  // target_user_data(). Flushes the SQ if it is full; null if it stays full (the flushes keep
  // failing; logged): complete the request with an error then.
  virtual io_uring_sqe* get_sqe_st() = 0;
  static uint64_t target_user_data(uint16_t queue, uint16_t tag, uint8_t op) {
    return WorkId{WorkKind::kTargetIo, queue, tag, op, 0}.encode();
  }
  // Registers buffers as the ring's fixed buffers (for READ_FIXED/WRITE_FIXED); -errno on failure.
  virtual int register_fixed_buffers_st(std::span<const iovec> bufs) = 0;

  // Asks the loop to watch `fd` for POLLIN while it sleeps; on readiness it calls
  // QueueTarget::on_fd_ready_st(token). The watch is re-armed automatically. Another fd under
  // a token in use replaces the old one, and -1 ends the watch; a poll armed on the old fd is
  // removed (it would hold its file open) and its readiness is no longer reported.
  virtual void watch_fd_st(int fd, uint8_t token) = 0;

  // The storage behind the device is `bytes` long now (resized): the daemon's main thread sets
  // the device's capacity to it where the driver can (UPDATE_SIZE). Any queue may report it.
  virtual void report_capacity_st(uint64_t bytes) = 0;
};

// Hybrid polling asks the target, on each pass that found no work, whether waiting by spinning
// pays off.
enum class IdleAdvice : uint8_t {
  kNothingHeld,  // the target holds no requests: the queue's hybrid spin time applies
  kSpin,         // an answer is due shortly (few requests out): keep polling, up to the
                 // queue's in-flight spin time without work
  kSleep,        // many requests out: the CPU is better left to the work that answers them;
                 // sleep until the next completion (answers then come in batches)
};

class QueueTarget {
 public:
  virtual ~QueueTarget() = default;

  // Called once on the queue thread before any FETCH is issued. Throws SetupError on failure.
  virtual void start_st(QueueContext& ctx) = 0;

  // A new request. The target must call ctx.complete_st(req.tag, ...) exactly once, now or later.
  virtual void submit_st(const IoRequest& req) = 0;

  // A completion of an io_uring op the target submitted (user_data from target_user_data()).
  virtual void on_ring_cqe_st(uint16_t /*tag*/, uint8_t /*op*/, int /*res*/) {}

  // Polls the target's own completion sources (e.g. an RDMA CQ) without blocking.
  // Returns how many events it handled.
  virtual int poll_st() { return 0; }

  // What hybrid polling does on a pass that found no work (see IdleAdvice).
  virtual IdleAdvice idle_advice_st() const { return IdleAdvice::kNothingHeld; }

  // Called right before the loop sleeps; arm notifications (e.g. ibv_req_notify_cq) here.
  // Returns false if work arrived while arming, so the loop polls again instead of sleeping.
  virtual bool prepare_to_sleep_st() { return true; }

  // A watched fd became readable.
  virtual void on_fd_ready_st(uint8_t /*token*/) {}

  // The device is being stopped and deleted (the daemon got SIGTERM or `del`): requests that
  // wait for something that may never come back (a lost connection) should fail now, or the
  // kernel's deletion waits for them.
  virtual void on_device_stopping_st() {}

  // The queue is shutting down (all tags retired): release per-queue resources in order.
  virtual void stop_st() {}

  // Target-specific counters for `list --json`, as a JSON object text ("{}" if none).
  // Called from the stats thread: read only relaxed atomics or immutable state.
  virtual std::string stats_json() const { return "{}"; }
};

}  // namespace ublkrdma::ublk
