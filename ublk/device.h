#pragma once
// A ublk device served by this process: control-plane setup (ADD_DEV, SET_PARAMS, START_DEV or
// the USER_RECOVERY handshake), one QueueLoop thread per queue, and orderly teardown.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ublk/queue_target.h"
#include "ublk/shared_buffers.h"

namespace ublkrdma::ublk {

// What the target tells the block layer about itself.
struct DeviceGeometry {
  uint64_t size_bytes = 0;
  uint8_t logical_bs_shift = 9;    // 512-byte sectors
  uint8_t physical_bs_shift = 12;  // 4 KiB
  bool read_only = false;
  bool rotational = false;
  bool volatile_cache = false;     // the target has a cache: the kernel sends FLUSH
  bool fua = false;                // the target honours FUA on writes
  bool discard = false;
  bool write_zeroes = false;
  uint32_t discard_granularity = 4096;
};

// UBLK_F_BATCH_IO (7.0+): requests and results travel in per-queue arrays (one multishot fetch,
// one commit per pass) instead of one io_uring command per request and direction.
enum class BatchIoMode : uint8_t {
  kAuto,  // when the driver offers it and the device is not recoverable (-r 1)
  kOn,    // required: adding the device fails without it
  kOff,
};

// -r 1: the device survives its daemon's crash (UBLK_F_USER_RECOVERY) until `recover` starts a
// new one; what happens to IO meanwhile is the driver's, as ublksrv and kublk offer it.
enum class RecoveryMode : uint8_t {
  kNone,     // the device goes away with its daemon
  kReissue,  // requests the daemon held are handed to the next one again (+ RECOVERY_REISSUE)
  kRequeue,  // requests the daemon held fail with EIO; new ones wait for the next daemon
  kFailIo,   // while no daemon runs every request fails at once (+ RECOVERY_FAIL_IO, 6.13+)
};

struct DeviceOptions {
  int dev_id = -1;                 // -1: let the kernel choose
  uint16_t nr_queues = 1;
  uint16_t queue_depth = 128;
  uint32_t max_io_bytes = 512 * 1024;
  RecoveryMode recovery = RecoveryMode::kNone;  // what a daemon crash does to the device
  BatchIoMode batch_io = BatchIoMode::kOff;  // measured: no gain in the emulated guest (yet)
  PollPolicy poll;
  std::vector<SharedBufferSpec> shared_buffers;  // --shmem-buf: zero copy (SHMEM_ZC, 7.1+)
};

// Creates the per-queue targets of one device. Lives as long as the device.
class TargetFactory {
 public:
  virtual ~TargetFactory() = default;
  virtual std::string type_name() const = 0;       // "null", "loop", "rdma"
  virtual DeviceGeometry geometry() const = 0;
  // Called on queue thread `queue_id`; the result is owned and used only by that thread.
  virtual std::unique_ptr<QueueTarget> make_queue_target(uint16_t queue_id) = 0;
  // The target's own JSON description (for `list`, and to restart it on `recover`).
  virtual std::string describe_json() const = 0;
};

}  // namespace ublkrdma::ublk
