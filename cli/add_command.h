#pragma once
// `add`: its options, and the plan of the daemon it starts, checked in full before anything
// touches /dev/ublk-control (a device table's entries go through the same checks).
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "cli/daemon.h"
#include "targets/rdma_target.h"
#include "transport/protocol.h"
#include "ublk/device.h"

namespace ublkrdma::cli {

struct AddArgs {
  std::string type;
  int dev_id = -1;
  int queues = 1;
  int depth = 128;
  std::string size;
  std::string file;
  int recovery = 0;
  int recovery_reissue = -1;  // -1: not given (1 with -r 1)
  bool recovery_fail_io = false;
  std::string batch_io = "off";
  bool foreground = false;
  std::string max_io = "512K";
  std::string poll = "hybrid";
  int spin_us = int(ublk::kDefaultHybridSpin.count());
  int inflight_spin_us = int(ublk::kDefaultInflightSpin.count());
  bool buffered = false;
  std::vector<std::string> traddr;  // ADDR[:PORT], one per path
  int trsvcid = wire::kDefaultPort;
  std::string multipath = "failover";
  std::string export_name;
  int io_timeout_ms = 30000;
  std::string push_max = fmt::format("{}K", targets::kDefaultPushMaxBytes / 1024);
  std::string pull_max;  // empty: every READ
  std::string write_ack = "fence";
  std::string mr_per_io;  // on|off; empty: not given
  int conns_per_queue = targets::kDefaultConnsPerQueue;
  int reconnect_delay_s = 2;
  int ctrl_loss_tmo_s = 600;
  int fast_io_fail_tmo_s = -1;
  int keep_alive_tmo_s = 5;
  std::string host_id;  // default: the host name
  std::string key_file;
  std::string server_key_file;
  std::vector<std::string> shmem_bufs;     // zero copy: shared buffers the daemon reads and writes
  std::vector<std::string> shmem_bufs_ro;  // ... and ones it only reads (WRITEs alone come from them)
};

// Registers add's options on `cmd`, bound to `a`.
void add_add_options(CLI::App& cmd, AddArgs& a);

// Checks every value of a parsed `add` (`cmd` tells which options were given) and returns the
// daemon's plan; throws UsageError. Reads key files and checks shared buffer files, nothing else.
DaemonPlan plan_add(const CLI::App& cmd, const AddArgs& a);

// Creates the device: refuses an id in use, then runs the daemon. Returns the exit code.
int run_add(const DaemonPlan& plan);

ublk::PollMode poll_mode_option(const std::string& s);

}  // namespace ublkrdma::cli
