#pragma once
// The device daemon: serves one ublk device until it is stopped. `add` and `recover` run it,
// either in the foreground or detached (fork before any io_uring or verbs resource exists).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ublk/device.h"

namespace ublkrdma::cli {

struct DaemonPlan {
  ublk::DeviceOptions dev_opts;
  nlohmann::json target_args;            // see target_args.h
  std::optional<uint32_t> recover_id;    // set: take over this device instead of creating one
  bool foreground = false;
  std::string name;                      // the device table's name for it ("" = none)
};

// Returns the process exit code. On success prints `list -n ID` for the device once it is live
// (from the foreground process or from the parent of a detached daemon).
int run_device_daemon(const DaemonPlan& plan);

}  // namespace ublkrdma::cli
