#pragma once
// `loop`: a regular file or block device through io_uring on the queue's own ring, O_DIRECT
// where the file system allows it. FLUSH = fdatasync, FUA = RWF_DSYNC write, DISCARD =
// fallocate(PUNCH_HOLE), WRITE_ZEROES = fallocate(ZERO_RANGE).
#include <memory>
#include <string>

#include "ublk/device.h"

namespace ublkrdma::targets {

struct LoopTargetOptions {
  std::string path;
  bool direct_io = true;  // try O_DIRECT, fall back to buffered IO if refused
};

// Opens the backing file (throws SetupError: missing file, not a file or block device, ...).
std::unique_ptr<ublk::TargetFactory> make_loop_target_factory(const LoopTargetOptions& opts);

}  // namespace ublkrdma::targets
