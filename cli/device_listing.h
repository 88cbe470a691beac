#pragma once
// `list`: one JSON object per device, built from the kernel (GET_DEV_INFO, GET_PARAMS), the
// daemon's state file and, when the daemon is alive, its live statistics.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ublk/control_device.h"

namespace ublkrdma::cli {

// nullopt if the kernel does not know `dev_id`.
std::optional<nlohmann::json> describe_device(ublk::ControlDevice& ctrl, uint32_t dev_id);

// ublksrv-style text for one device.
std::string format_device_text(const nlohmann::json& dev);

}  // namespace ublkrdma::cli
