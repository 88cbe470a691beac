#pragma once
// The device table: the client devices a host attaches by name (`up`) and detaches (`down`),
// one TOML table per device whose keys are `add`'s options:
//   [vol0]
//   type = "rdma"
//   traddr = ["10.0.0.1", "10.0.1.1"]
//   export = "vol0"
// A device of the table survives its daemon: it gets -r 1 unless the entry says recovery = 0,
// and `up` recovers it when its daemon is gone (a service's restart).
#include <string>
#include <vector>

#include "cli/daemon.h"

namespace ublkrdma::cli {

inline constexpr const char* kDefaultDeviceTable = "/etc/ublk-rdma/devices.conf";

struct TableDevice {
  std::string name;
  std::string origin;  // "FILE:LINE" of its table
  DaemonPlan plan;
};

// Every entry of the table, checked as `add` checks its options; throws UsageError naming the
// file and line of the first bad one, before anything is touched.
std::vector<TableDevice> read_device_table(const std::string& path);

// `up`: attaches the named devices (all with `all`): adds one that does not exist, recovers one
// whose daemon is gone, leaves a live one alone. `foreground` (one device): serve it from this
// process. Returns the exit code.
int cmd_up(const std::string& table, const std::vector<std::string>& names, bool all, bool foreground);

// `down`: deletes the named devices (all with `all`) that are attached.
int cmd_down(const std::string& table, const std::vector<std::string>& names, bool all);

}  // namespace ublkrdma::cli
