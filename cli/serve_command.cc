#include "cli/serve_command.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <iostream>

#include "base/errors.h"
#include "base/host_port.h"
#include "base/log.h"
#include "base/size.h"
#include "cli/config_file.h"
#include "cli/usage_error.h"
#include "server/export_spec.h"
#include "server/rdma_server.h"
#include "transport/auth.h"

namespace ublkrdma::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_stop_signal(int) { g_stop.store(true); }
void on_reload_signal(int) { g_reload.store(true); }

}  // namespace

void add_serve_options(CLI::App& cmd, ServeArgs& a) {
  cmd.add_option("--config", a.config,
                 "Read options from this TOML file: keys are the long options without '--' (listen = \"ADDR\", "
                 "export = [\"NAME=ram:1G\", ...], no-push-writes = true); the command line wins over it");
  cmd.add_option("--listen", a.listen,
                 fmt::format("ADDR[:PORT] to listen on (port default {}; required)", wire::kDefaultPort));
  cmd.add_option("--export", a.exports, std::string(server::kExportSpecHelp) + " (repeatable; at least one)");
  cmd.add_option("--read-only", a.read_only, "Export NAME refuses writes (repeatable)");
  cmd.add_option("--allow", a.allow, "Only peers in this CIDR may connect (repeatable)");
  cmd.add_option("--stats", a.stats_path,
                               "Write statistics to this file (every second and at exit), replacing it atomically");
  cmd.add_option("--stats-format", a.stats_format,
                 "What --stats writes: json, or prometheus (the text format of node_exporter's textfile "
                 "collector: name the file *.prom in its directory)")
      ->check(CLI::IsMember({"json", "prometheus"}))
      ->capture_default_str();
  cmd.add_option("--threads", a.threads,
                 "Poll group threads that serve all connections between them, each connection on one for "
                 "its life (0 = one per CPU this process may run on)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd.add_option("--spin-us", a.spin_us,
                 "Microseconds a poll group keeps polling after its last completion before it sleeps "
                 "(lower latency for more CPU; 0 = sleep at once)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_option("--serial-spin-us", a.serial_spin_us,
                 "Microseconds a poll group keeps polling instead while its client sends one command at a "
                 "time and waits for each answer (QD1), except while the answer waits on an rbd cluster; used only if "
                 "longer than --spin-us")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_flag("--no-push-writes", a.no_push_writes,
               "Never let clients put WRITE data into the server's memory by RDMA WRITE (a ram export, "
               "or a file/null export's buffer slots); fetch it with RDMA READ instead");
  cmd.add_flag("--no-pull-reads", a.no_pull_reads,
               "Never let clients read a ram export's memory by RDMA READ themselves; answer every READ "
               "with our RDMA WRITE instead");
  auto size_opt = [&cmd](const char* name, uint64_t& out, const std::string& help) {
    cmd.add_option_function<std::string>(
        name,
        [&out, name](const std::string& s) {
          auto v = parse_size(s);
          if (!v || v.value() == 0) throw CLI::ValidationError(name, "'" + s + "' is not a size such as 512M or 2G");
          out = v.value();
        },
        help);
  };
  size_opt("--max-memory,--max-buffer-memory", a.max_memory,
           "Bound on the memory of all connections together: buffer pools (file and null exports), message "
           "slots and queue pairs; a connection that does not fit is refused as busy (default 2G)");
  size_opt("--max-host-memory", a.max_host_memory,
           "Bound on the memory of the connections from one client address (default: half of --max-memory)");
  cmd.add_option("--max-connections", a.max_connections, "Bound on connections (one per client queue)")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--auth-keys", a.auth_keys,
                 "Authenticate every client: a file of mode 0600 with lines 'HOST KEY EXPORT[,EXPORT...]' "
                 "(EXPORT '*' = all; keys from `ublk-rdma gen-key`); without it any peer that passes --allow "
                 "may attach every export");
  cmd.add_option("--auth-backoff", a.auth_backoff_s,
                 "Seconds an address is refused after 5 failed authentications within that time")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  cmd.add_option("--key-file", a.key_file,
                 "The server's own key, for clients that check it (add --server-key-file); needs --auth-keys");
  cmd.add_option("--server-id", a.server_id, "The identity the server proves to clients (default: the host name)");
  cmd.add_option("--ceph-conf", a.ceph_conf,
                 "Ceph configuration for rbd exports without ?conf= (default: librados' search, e.g. "
                 "/etc/ceph/ceph.conf); the keyring is found through it");
  cmd.add_option("--ceph-id", a.ceph_id,
                 "Ceph client name (without \"client.\") for rbd exports without ?id= (default: admin)");
  cmd.add_option("--ceph-timeout", a.ceph_timeout_s,
                 "Seconds an rbd export may take to reach its cluster before it counts as unavailable")
      ->check(CLI::Range(1, 600))
      ->capture_default_str();
  cmd.add_option("--export-retry", a.export_retry_s,
                 "Seconds between attempts to open an rbd export that is unavailable (its cluster down)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd.add_option("--stop-timeout", a.stop_timeout_s,
                 "Seconds a stopping server waits for the IO its backends hold before it exits without it "
                 "(status 1)")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
}

server::ServerOptions serve_options(const ServeArgs& a) {
  server::ServerOptions opts;
  if (a.listen.empty()) throw UsageError("serve needs an address to listen on: --listen ADDR[:PORT]");
  if (a.exports.empty()) throw UsageError("serve needs at least one export: --export NAME=KIND:...");
  if (a.stats_path.empty() && a.stats_format != "json") throw UsageError("--stats-format needs --stats FILE");
  server::ExportConfig cfg;
  try {
    HostPort listen = parse_host_port(a.listen, opts.port, "--listen");
    opts.listen_addr = listen.host;
    opts.port = listen.port;
    cfg = server::build_export_config(a.exports, a.read_only, a.allow);
  } catch (const SetupError& e) {
    throw UsageError(e.what());
  }
  opts.exports = cfg.exports;
  if (!a.ceph_id.empty() && !server::is_valid_ceph_id(a.ceph_id))
    throw UsageError(fmt::format("invalid --ceph-id '{}': {}", log::escaped(a.ceph_id), server::kCephIdRule));
  for (server::ExportSpec& e : opts.exports) {
    if (e.kind != server::BackendKind::kRbd) continue;
    if (e.rbd.ceph_conf.empty()) e.rbd.ceph_conf = a.ceph_conf;
    if (e.rbd.ceph_id.empty()) e.rbd.ceph_id = a.ceph_id;
    e.rbd.connect_timeout_s = a.ceph_timeout_s;
  }
  opts.export_retry = std::chrono::seconds(a.export_retry_s);
  opts.stop_timeout = std::chrono::seconds(a.stop_timeout_s);
  opts.allow = cfg.allow;
  opts.stats_path = a.stats_path;
  opts.stats_format = a.stats_format == "prometheus" ? server::StatsFormat::kPrometheus : server::StatsFormat::kJson;
  opts.threads = a.threads;
  opts.spin = std::chrono::microseconds(a.spin_us);
  opts.serial_spin = std::chrono::microseconds(a.serial_spin_us);
  opts.push_writes = !a.no_push_writes;
  opts.pull_reads = !a.no_pull_reads;
  opts.max_memory = a.max_memory;
  opts.max_host_memory = a.max_host_memory;
  opts.max_connections = a.max_connections;
  opts.auth_keys_path = a.auth_keys;
  opts.key_file = a.key_file;
  opts.auth_backoff = std::chrono::seconds(a.auth_backoff_s);
  opts.server_id = a.server_id.empty() ? auth::default_identity() : a.server_id;
  return opts;
}

int run_serve(const server::ServerOptions& opts) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sa.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return server::run_server(opts, g_stop, g_reload);
}

int cmd_serve(const CLI::App& given, const ServeArgs& a, const std::vector<std::string>& command_line) {
  if (a.config.empty()) return run_serve(serve_options(a));
  std::vector<ConfigSetting> settings =
      parse_config_settings(read_config_text(a.config), a.config, given, {"config", "help"});
  std::vector<std::string> args = merge_config_args(settings, given, command_line);
  CLI::App cmd{"", "serve"};
  ServeArgs merged;
  add_serve_options(cmd, merged);
  server::ServerOptions opts;
  try {
    std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
    cmd.parse(args);
    opts = serve_options(merged);
  } catch (const CLI::ParseError& e) {
    throw UsageError(config_origin_prefix(settings, e.what()) + e.what());
  } catch (const UsageError& e) {
    throw UsageError(config_origin_prefix(settings, e.what()) + e.what());
  }
  return run_serve(opts);
}

}  // namespace ublkrdma::cli
