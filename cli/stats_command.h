#pragma once
// `stats`: the client devices' metrics, as JSON or (--prometheus) in the Prometheus text format
// for node_exporter's textfile collector, on stdout or written atomically to a file (-o).
#include <CLI/CLI.hpp>
#include <string>

namespace ublkrdma::cli {

struct StatsArgs {
  int dev_id = -1;  // -1: every device
  bool prometheus = false;
  std::string output;  // "" = stdout
};

void add_stats_options(CLI::App& cmd, StatsArgs& args);
int run_stats(const StatsArgs& args);  // exit code; throws SetupError

}  // namespace ublkrdma::cli
