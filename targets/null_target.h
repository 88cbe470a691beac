#pragma once
// `null`: completes every request at once without touching data. Shows the cost of the ublk
// layer alone.
#include <memory>

#include "ublk/device.h"

namespace ublkrdma::targets {

std::unique_ptr<ublk::TargetFactory> make_null_target_factory(uint64_t size_bytes);

}  // namespace ublkrdma::targets
