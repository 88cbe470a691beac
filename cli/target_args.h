#pragma once
// A target is described by a JSON object ("type" plus its arguments). `add` builds it from the
// command line, the daemon records it in its state file, and `recover` rebuilds the same target
// from that record.
#include <memory>
#include <nlohmann/json.hpp>

#include "ublk/device.h"

namespace ublkrdma::cli {

// Throws SetupError (missing file, unknown export, ...) with a message fit for the user.
std::unique_ptr<ublk::TargetFactory> make_target_factory(const nlohmann::json& args,
                                                         const ublk::DeviceOptions& dev_opts);

}  // namespace ublkrdma::cli
