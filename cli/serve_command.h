#pragma once
// `serve`: the RDMA target server, in the foreground (systemd-friendly).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "server/server_options.h"

namespace ublkrdma::cli {

struct ServeArgs {
  std::string config;                  // --config FILE
  std::string listen;                  // ADDR[:PORT]
  std::vector<std::string> exports;    // NAME=ram:SIZE | NAME=file:PATH | NAME=null:SIZE | NAME=rbd:...
  std::vector<std::string> read_only;  // export names
  std::vector<std::string> allow;      // CIDRs
  std::string stats_path;
  std::string stats_format = "json";  // json | prometheus
  unsigned threads = 0;
  uint32_t auth_backoff_s = 30;        // see ServerOptions::auth_backoff
  uint32_t spin_us = 50;               // see ServerOptions::spin
  uint32_t serial_spin_us = 1000;      // see ServerOptions::serial_spin
  bool no_push_writes = false;         // see ServerOptions::push_writes
  bool no_pull_reads = false;          // see ServerOptions::pull_reads
  uint64_t max_memory = 2ull << 30;  // --max-memory
  uint64_t max_host_memory = 0;     // --max-host-memory (0: half of --max-memory)
  uint32_t max_connections = 1024;
  std::string auth_keys;  // see ServerOptions::auth_keys_path
  std::string key_file;
  std::string server_id;  // default: the host name
  std::string ceph_conf;  // rbd exports without ?conf=
  std::string ceph_id;    // rbd exports without ?id=
  uint32_t export_retry_s = 10;
  uint32_t ceph_timeout_s = 20;
  uint32_t stop_timeout_s = 30;
};

void add_serve_options(CLI::App& cmd, ServeArgs& args);

// Checks every value; throws UsageError before anything touches the network or a file.
server::ServerOptions serve_options(const ServeArgs& args);

// Runs the server until SIGTERM or SIGINT; returns the exit code.
int run_serve(const server::ServerOptions& opts);

// `serve`: with --config, the file's options merged with the command line's (`command_line`, the
// arguments after "serve"; `given`, serve as parsed from them alone), which win.
int cmd_serve(const CLI::App& given, const ServeArgs& args, const std::vector<std::string>& command_line);

}  // namespace ublkrdma::cli
