#pragma once
// A ublk device served by this process: the control-plane handshake (create: ADD_DEV,
// SET_PARAMS, START_DEV; recover: START_USER_RECOVERY .. END_USER_RECOVERY), one QueueLoop
// thread per queue (pinned per GET_QUEUE_AFFINITY), and teardown in order.
#include <sys/types.h>

#include <atomic>
#include <exception>
#include <latch>
#include <mutex>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "ublk/control_device.h"
#include "ublk/device.h"
#include "ublk/queue_loop.h"
#include "ublk/shared_buffers.h"

namespace ublkrdma::ublk {

class ServedDevice {
 public:
  // ADD_DEV + SET_PARAMS + queue threads + START_DEV. On failure the half-made device is
  // deleted again and SetupError is thrown.
  static std::unique_ptr<ServedDevice> create(ControlDevice& ctrl, const DeviceOptions& opts, TargetFactory& factory);

  // Takes over a device whose daemon died (state QUIESCED) with a fresh set of queue threads.
  // Of `opts` it takes the poll policy and the shared buffers (with their recorded registrations).
  static std::unique_ptr<ServedDevice> recover(ControlDevice& ctrl, uint32_t dev_id, const DeviceOptions& opts,
                                               TargetFactory& factory);

  ~ServedDevice();  // joins the queue threads (after asking them to exit) and closes /dev/ublkcN

  uint32_t dev_id() const { return info_.dev_id; }
  const CtrlDevInfo& info() const { return info_; }
  std::vector<pid_t> queue_tids() const;

  // Readable (eventfd) once every queue thread has exited: the device was stopped.
  int done_fd() const { return done_fd_.get(); }
  bool done() const { return exited_.load() == threads_.size(); }

  // Tells the queues the device is being deleted (QueueTarget::on_device_stopping_st), then
  // STOP_DEV: the kernel aborts our commands and the queue threads drain and exit.
  int stop(ControlDevice& ctrl);
  // Makes the queue threads exit now, even with commands still in the kernel.
  void force_exit();

  // Per-queue counters and target statistics as a JSON array text.
  std::string stats_json() const;

  // The shared buffers (add --shmem-buf) and their registrations, for the state file.
  nlohmann::json shared_buffers_json() const;
  size_t shared_buffer_count() const { return shared_ ? shared_->size() : 0; }
  // UNREG_BUF of every shared buffer, once the queues are gone; returns how many were released.
  size_t unregister_shared_buffers(ControlDevice& ctrl);

  // Readable (eventfd) when a queue reported that the storage was resized; then call
  // apply_capacity(), which sets the device's capacity to it (UPDATE_SIZE, 6.16+) or, on a
  // kernel without it, says once per size that the device keeps its old one.
  int capacity_fd() const { return capacity_fd_.get(); }
  void apply_capacity(ControlDevice& ctrl);

 private:
  ServedDevice() = default;
  void open_char_device();
  void start_queues(ControlDevice& ctrl, TargetFactory& factory, PollPolicy poll);

  CtrlDevInfo info_{};
  std::unique_ptr<SharedBuffers> shared_;  // mapped before, and unmapped after, the queues that use it
  UniqueFd char_fd_;
  UniqueFd done_fd_;
  UniqueFd exit_fd_;
  UniqueFd stopping_fd_;
  UniqueFd capacity_fd_;
  std::atomic<uint64_t> capacity_{0};  // bytes, as the queues last reported
  uint64_t applied_capacity_ = 0;      // what apply_capacity() last acted on
  std::vector<std::unique_ptr<QueueLoop>> loops_;
  std::vector<std::thread> threads_;
  std::vector<std::atomic<pid_t>> tids_;
  std::atomic<size_t> exited_{0};
  std::unique_ptr<std::latch> fetched_;  // counts queues whose FETCHes are in the kernel
  std::mutex setup_mu_;
  std::exception_ptr setup_error_;       // first queue setup failure
};

// Translates a target's geometry into SET_PARAMS parameters.
Params make_params(const DeviceGeometry& g, uint32_t max_io_bytes);

}  // namespace ublkrdma::ublk
