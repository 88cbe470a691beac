#pragma once
// One ublk queue, served by one thread: its io_uring, the mmap'd IO descriptor array, the tag
// table and the IO buffer slab all belong to that thread. The loop is:
//   reap CQEs -> dispatch by tag (new request -> target, target op -> target) -> poll target
//   -> commit completions (COMMIT_AND_FETCH) -> submit, and sleep in exactly one place
//   (io_uring_submit_and_wait) when there is nothing to spin for.
// With UBLK_F_BATCH_IO (7.0+) the per-tag commands give way to per-queue arrays: one multishot
// FETCH_IO_CMDS delivers tags into provided buffers, and the completions of a pass leave in one
// COMMIT_IO_CMDS.
#include <atomic>
#include <cstdint>
#include <string>
#include <functional>
#include <memory>
#include <vector>

#include "base/io_ring.h"
#include "base/mapped_region.h"
#include "ublk/queue_target.h"
#include "ublk/tag_table.h"
#include "ublk/uapi.h"

namespace ublkrdma::ublk {

struct QueueLoopConfig {
  uint32_t dev_id = 0;
  uint16_t queue_id = 0;
  uint16_t depth = 0;
  uint32_t max_io_bytes = 0;
  int char_fd = -1;          // /dev/ublkcN, owned by the device
  bool ioctl_encode = true;  // UBLK_U_IO_* vs legacy opcodes
  PollPolicy poll;
  int exit_fd = -1;          // eventfd: readable when the loop must exit now (forced teardown)
  int stopping_fd = -1;      // eventfd: readable once the device is being stopped and deleted
  bool batch_io = false;     // the device has UBLK_F_BATCH_IO: PREP / multishot FETCH / COMMIT arrays
  std::span<const SharedRegion> shared;  // the device's shared buffers by index (SHMEM_ZC), owned by it
  std::atomic<uint64_t>* capacity = nullptr;  // report_capacity_st stores the size here ...
  int capacity_fd = -1;                       // ... and makes this eventfd readable (the device's)
};

class QueueLoop final : public QueueContext {
 public:
  explicit QueueLoop(const QueueLoopConfig& cfg);
  ~QueueLoop() override;

  // Runs on the owner thread: takes `target`, sets up, issues FETCH for every tag, calls
  // `on_fetched` (the device then starts or recovers), and serves IO until the kernel retires
  // every tag. Throws SetupError if setup fails (before on_fetched).
  void run_st(std::unique_ptr<QueueTarget> target, const std::function<void()>& on_fetched);

  const QueueCounters& counters() const { return counters_; }
  // The target's stats ("{}" before the target is running); safe from any thread.
  std::string target_stats_json() const;

  // QueueContext
  uint16_t queue_id() const override { return cfg_.queue_id; }
  uint16_t depth() const override { return cfg_.depth; }
  uint32_t max_io_bytes() const override { return cfg_.max_io_bytes; }
  std::span<std::byte> io_slab() const override { return slab_.bytes(); }
  std::byte* io_buffer(uint16_t tag) const override {
    return static_cast<std::byte*>(slab_.get()) + size_t(tag) * cfg_.max_io_bytes;
  }
  std::span<const SharedRegion> shared_buffers() const override { return cfg_.shared; }
  void complete_st(uint16_t tag, int result) override;
  io_uring_sqe* get_sqe_st() override;
  int register_fixed_buffers_st(std::span<const iovec> bufs) override;
  void watch_fd_st(int fd, uint8_t token) override;
  void report_capacity_st(uint64_t bytes) override;

 private:
  struct FdWatch {
    int fd;
    uint8_t token;
    bool armed;
    uint32_t generation;  // bumped when the token's fd is replaced: older polls' completions are dropped
  };

  void setup_st();
  void fetch_all_st();
  template <typename Cmd>
  io_uring_sqe* uring_cmd_sqe_st(uint32_t cmd_op, const Cmd& cmd);
  bool queue_io_cmd_st(uint32_t cmd_nr, uint16_t tag, int result);  // false: no room in the SQ
  void fail_st(const char* what);
  void take_request_st(uint16_t tag);
  bool locate_shared_st(const IoDesc& d, IoRequest& req);
  // Batch IO
  void setup_batch_st();
  void prep_batch_st();
  bool arm_batch_fetch_st();  // false: no room in the SQ
  void handle_batch_cqe_st(const io_uring_cqe& cqe, const WorkId& id);
  void on_batch_fetch_st(const io_uring_cqe& cqe);
  void queue_batch_commit_st(uint16_t tag, int result);
  void flush_batch_commits_st();
  void retire_idle_tags_st();
  std::byte* fetch_buf(uint16_t bid) const;
  void handle_cqe_st(const io_uring_cqe& cqe);
  void handle_ublk_cqe_st(uint16_t tag, int res);
  void arm_watches_st();
  uint64_t poll_user_data(const FdWatch& w) const;
  bool within_spin_st(std::chrono::microseconds limit);
  bool move_tag_st(uint16_t tag, TagState from, TagState to);

  QueueLoopConfig cfg_;
  // Destroyed in reverse: the target (its QP and the MR over the slab, its ring work) goes first,
  // then the ring (cancelling what is left in flight), and only then the memory they point at.
  MappedRegion slab_;   // depth x max_io_bytes IO buffers
  MappedRegion descs_;  // const IoDesc[depth], written by the kernel
  // Batch IO: the provided-buffer ring FETCH_IO_CMDS fills with tags (registered with the ring,
  // so it outlives it), and the element arrays of COMMIT_IO_CMDS in flight.
  MappedRegion fetch_bufs_;  // [io_uring_buf_ring of kFetchBufs entries][kFetchBufs x fetch_buf_bytes_]
  std::vector<std::unique_ptr<BatchElem[]>> commit_slots_;  // each depth elements
  std::vector<uint16_t> free_commit_slots_;
  IoRing ring_;
  std::unique_ptr<QueueTarget> target_;
  std::atomic<const QueueTarget*> published_target_{nullptr};  // for the stats reader
  TagTable tags_;
  std::vector<uint32_t> tag_lengths_;  // length of the request the target holds, for counters
  std::vector<uint8_t> tag_ops_;
  std::vector<uint8_t> tag_zero_copy_;  // the request the target holds has its data in a shared buffer
  std::vector<uint64_t> tag_start_ns_;  // when the queue took the request (CLOCK_MONOTONIC), for its latency
  std::vector<FdWatch> watches_;
  bool exiting_ = false;
  bool failed_ = false;  // stopped by fail_st
  uint64_t idle_since_ns_ = 0;  // hybrid: when the current run of passes without work began (0: busy)
  bool cooperative_taskrun_ = false;  // ring set up with COOP_TASKRUN + TASKRUN_FLAG
  // Batch IO state
  io_uring_buf_ring* fetch_ring_ = nullptr;
  uint16_t fetch_buf_count_ = 0;  // a power of two
  uint32_t fetch_buf_bytes_ = 0;
  bool fetch_aborted_ = false;  // the driver ended FETCH_IO_CMDS for good: the queue is stopping
  int commit_slot_ = -1;        // slot collecting this pass's completions (-1: none yet)
  uint16_t commit_len_ = 0;
  QueueCounters counters_;
};

}  // namespace ublkrdma::ublk
