#include "cli/stats_command.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "cli/client_metrics.h"
#include "cli/device_listing.h"
#include "cli/usage_error.h"
#include "ublk/control_device.h"

namespace ublkrdma::cli {

void add_stats_options(CLI::App& cmd, StatsArgs& a) {
  cmd.add_option("-n,--number", a.dev_id, "Device id (default: every device)")->check(device_id_range());
  cmd.add_flag("--prometheus", a.prometheus,
               "Prometheus text format (for node_exporter's textfile collector) instead of JSON");
  cmd.add_option("-o,--output", a.output,
                 "Write to this file instead of stdout, replacing it atomically (for the textfile collector: "
                 "a name ending in .prom in its directory)");
}

int run_stats(const StatsArgs& a) {
  ublk::ControlDevice ctrl;
  std::vector<uint32_t> ids;
  if (a.dev_id >= 0) {
    ids.push_back(uint32_t(a.dev_id));
  } else {
    ids = ublk::ControlDevice::list_dev_ids();
  }
  nlohmann::json devices = nlohmann::json::array();
  for (uint32_t id : ids) {
    auto d = describe_device(ctrl, id);
    if (d) {
      devices.push_back(std::move(*d));
    } else if (a.dev_id >= 0) {
      std::cerr << "ublk-rdma: device " << id << " does not exist\n";
      return 1;
    }  // else it vanished between the directory scan and the query
  }
  const std::string text =
      a.prometheus ? client_metrics_text(devices) : client_metrics_json(devices).dump(2) + "\n";
  if (a.output.empty()) {
    std::cout << text << std::flush;
  } else {
    write_file_atomically(a.output, text);
  }
  return 0;
}

}  // namespace ublkrdma::cli
