#pragma once
// The command line's contract with scripts: 0 success, 1 failure, 2 usage error. A usage error
// is found before anything touches /dev/ublk-control, the network or a device.
#include <CLI/CLI.hpp>
#include <stdexcept>

namespace ublkrdma::cli {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// -n ID: a ublk device id (the driver's limit).
inline constexpr int kMaxDeviceId = (1 << 20) - 1;
inline CLI::Range device_id_range() { return CLI::Range(0, kMaxDeviceId, "DEVICE ID"); }

}  // namespace ublkrdma::cli
