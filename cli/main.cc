// ublk-rdma: command line. ublksrv-compatible verbs (add, del, list, recover, features) plus
// `serve`, the RDMA target server, and `stats`, the devices' metrics. Exit codes: 0 success,
// 1 failure, 2 usage error.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/errors.h"
#include "base/host_port.h"
#include "base/log.h"
#include "base/size.h"
#include "cli/daemon.h"
#include "cli/device_listing.h"
#include "cli/device_state.h"
#include "cli/serve_command.h"
#include "cli/stats_command.h"
#include "targets/rdma_target.h"
#include "transport/auth.h"
#include "ublk/control_device.h"
#include "ublk/shared_buffers.h"
#include "ublk/uapi.h"

namespace ublkrdma::cli {
namespace {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses a size option ("4G", "512k", "1048576"); a bad one is a usage error.
uint64_t size_option(const std::string& what, const std::string& text) {
  auto r = parse_size(text);
  if (!r) throw UsageError(fmt::format("{}: '{}' is not a size (examples: 512M, 4G, 1048576)", what, text));
  return *r;
}

// --push-max / --pull-max: the largest IO that takes a path; no IO exceeds max_io, so larger
// values mean "every IO" (as does an empty text); 0 means none.
uint64_t io_size_limit_option(const std::string& what, const std::string& text, uint64_t max_io) {
  uint64_t v = text.empty() ? max_io : std::min(size_option(what, text), max_io);
  if (v % 512) throw UsageError(fmt::format("{} {}: must be 0 or a multiple of 512 bytes", what, text));
  return v;
}

ublk::PollMode poll_mode_option(const std::string& s) {
  if (s == "busy") return ublk::PollMode::kBusy;
  if (s == "event") return ublk::PollMode::kEvent;
  return ublk::PollMode::kHybrid;
}

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

// --shmem-buf / --shmem-buf-ro: each file checked (tmpfs or hugetlbfs, whole pages) before
// anything else is touched; the daemon maps and registers them.
std::vector<ublk::SharedBufferSpec> shared_buffer_args(const AddArgs& a) {
  std::vector<ublk::SharedBufferSpec> specs;
  for (const std::string& p : a.shmem_bufs) specs.push_back({p, false});
  for (const std::string& p : a.shmem_bufs_ro) specs.push_back({p, true});
  try {
    ublk::SharedBuffers::check(specs);
  } catch (const SetupError& e) {
    throw UsageError(fmt::format("--shmem-buf: {}", e.what()));
  }
  return specs;
}

// --key-file and friends: checked (readable, private, a key) before anything else is touched;
// the daemon reads them again when it connects, so that `recover` finds them the same way.
nlohmann::json auth_args(const AddArgs& a) {
  if (a.key_file.empty()) {
    if (!a.host_id.empty() || !a.server_key_file.empty())
      throw UsageError("--host-id and --server-key-file need --key-file (this host's key)");
    return nullptr;
  }
  std::string host = a.host_id.empty() ? auth::default_identity() : a.host_id;
  if (!wire::valid_identity(host))
    throw UsageError(fmt::format("host id '{}' is invalid: use 1..{} of [A-Za-z0-9._:@-]{}", log::escaped(host),
                                 wire::kIdentityMax, a.host_id.empty() ? " (it is the host name: give --host-id)" : ""));
  auth::read_key_file(a.key_file);
  if (!a.server_key_file.empty()) auth::read_key_file(a.server_key_file);
  return {{"host_id", host}, {"key_file", a.key_file}, {"server_key_file", a.server_key_file}};
}

int cmd_gen_key() {
  std::cout << auth::format_key(auth::generate_key()) << "\n";
  return 0;
}

int cmd_add(const AddArgs& a) {
  DaemonPlan plan;
  plan.foreground = a.foreground;
  plan.dev_opts.dev_id = a.dev_id;
  plan.dev_opts.nr_queues = uint16_t(a.queues);
  plan.dev_opts.queue_depth = uint16_t(a.depth);
  if (a.recovery != 1 && (a.recovery_reissue >= 0 || a.recovery_fail_io))
    throw UsageError("--recovery-reissue and --recovery-fail-io need -r 1");
  if (a.recovery_fail_io && a.recovery_reissue == 1)
    throw UsageError("--recovery-fail-io fails IO while no daemon runs; it cannot also reissue (--recovery-reissue 1)");
  plan.dev_opts.recovery = a.recovery != 1      ? ublk::RecoveryMode::kNone
                           : a.recovery_fail_io   ? ublk::RecoveryMode::kFailIo
                           : a.recovery_reissue == 0 ? ublk::RecoveryMode::kRequeue
                                                     : ublk::RecoveryMode::kReissue;
  plan.dev_opts.batch_io = a.batch_io == "on"    ? ublk::BatchIoMode::kOn
                           : a.batch_io == "off" ? ublk::BatchIoMode::kOff
                                                 : ublk::BatchIoMode::kAuto;
  plan.dev_opts.poll.mode = poll_mode_option(a.poll);
  plan.dev_opts.poll.hybrid_spin = std::chrono::microseconds(a.spin_us);
  uint64_t max_io = size_option("--max-io", a.max_io);
  if (max_io < 4096 || max_io > (32u << 20) || max_io % 4096)
    throw UsageError(fmt::format("--max-io {}: must be a multiple of 4K between 4K and 32M", a.max_io));
  plan.dev_opts.max_io_bytes = uint32_t(max_io);
  plan.dev_opts.shared_buffers = shared_buffer_args(a);

  if (a.type != "rdma" && (!a.key_file.empty() || !a.host_id.empty() || !a.server_key_file.empty()))
    throw UsageError("--key-file, --host-id and --server-key-file are for -t rdma");
  if (a.type != "rdma" && !a.mr_per_io.empty()) throw UsageError("--mr-per-io is for -t rdma");
  if (a.type == "null") {
    plan.target_args = {{"type", "null"}, {"size", a.size.empty() ? (250ull << 30) : size_option("--size", a.size)}};
  } else if (a.type == "loop") {
    if (a.file.empty()) throw UsageError("-t loop needs a backing file: -f FILE");
    if (!a.size.empty()) throw UsageError("-t loop takes its size from the backing file; drop --size");
    plan.target_args = {{"type", "loop"}, {"file", a.file}, {"direct_io", !a.buffered}};
  } else if (a.type == "rdma") {
    uint64_t push_max = io_size_limit_option("--push-max", a.push_max, plan.dev_opts.max_io_bytes);
    uint64_t pull_max = io_size_limit_option("--pull-max", a.pull_max, plan.dev_opts.max_io_bytes);
    if (a.traddr.empty()) throw UsageError("-t rdma needs the server's address: --traddr ADDR");
    if (a.traddr.size() > targets::kMaxPaths)
      throw UsageError(fmt::format("--traddr given {} times: at most {} paths", a.traddr.size(), targets::kMaxPaths));
    nlohmann::json paths = nlohmann::json::array();
    for (const std::string& t : a.traddr) {
      HostPort hp;
      try {
        hp = parse_host_port(t, uint16_t(a.trsvcid), "--traddr");
      } catch (const SetupError& e) {
        throw UsageError(e.what());
      }
      nlohmann::json path = {{"traddr", hp.host}, {"trsvcid", hp.port}};
      for (const nlohmann::json& other : paths)
        if (other == path) throw UsageError(fmt::format("--traddr {}: the same path twice", t));
      paths.push_back(std::move(path));
    }
    if (a.export_name.empty()) throw UsageError("-t rdma needs an export name: --export NAME");
    nlohmann::json auth = auth_args(a);
    plan.target_args = {{"type", "rdma"},
                        {"paths", paths},
                        {"multipath", a.multipath},
                        {"export", a.export_name},
                        {"io_timeout_ms", a.io_timeout_ms},
                        {"keep_alive_tmo_ms", a.keep_alive_tmo_s * 1000},
                        {"push_max_bytes", push_max},
                        {"pull_max_bytes", pull_max},
                        {"fence_writes", a.write_ack == "fence"},
                        {"mr_per_io", a.mr_per_io == "on"},
                        {"conns_per_queue", a.conns_per_queue},
                        {"reconnect_delay_ms", a.reconnect_delay_s * 1000},
                        {"ctrl_loss_tmo_ms", a.ctrl_loss_tmo_s < 0 ? -1 : a.ctrl_loss_tmo_s * 1000},
                        {"fast_io_fail_tmo_ms", a.fast_io_fail_tmo_s < 0 ? -1 : a.fast_io_fail_tmo_s * 1000}};
    if (!auth.is_null()) plan.target_args["auth"] = auth;
  }
  if (a.dev_id >= 0) {
    ublk::ControlDevice ctrl;
    ublk::CtrlDevInfo info;
    if (ctrl.get_dev_info(uint32_t(a.dev_id), info) == 0) {
      std::cerr << "ublk-rdma: device " << a.dev_id << " already exists (ublk-rdma list -n " << a.dev_id << ")\n";
      return kExitFailure;
    }
  } else {
    ublk::ControlDevice probe;  // fails early with "ublk_drv is not loaded" before forking
  }
  return run_device_daemon(plan);
}

int cmd_recover(int dev_id, bool foreground) {
  ublk::ControlDevice ctrl;
  ublk::CtrlDevInfo info;
  if (ctrl.get_dev_info(uint32_t(dev_id), info) < 0) {
    std::cerr << "ublk-rdma: device " << dev_id << " does not exist\n";
    return kExitFailure;
  }
  auto state = read_state(uint32_t(dev_id));
  if (!state) {
    std::cerr << "ublk-rdma: no record of device " << dev_id << " in " << run_dir()
              << ": it was not created by ublk-rdma on this machine\n";
    return kExitFailure;
  }
  pid_t old = state->value("daemon_pid", 0);
  if (info.state == ublk::kStateLive && process_alive(old)) {
    std::cerr << "ublk-rdma: device " << dev_id << " is live and its daemon (pid " << old
              << ") is running: nothing to recover\n";
    return kExitFailure;
  }
  DaemonPlan plan;
  plan.foreground = foreground;
  plan.recover_id = uint32_t(dev_id);
  plan.dev_opts.dev_id = dev_id;
  plan.dev_opts.nr_queues = info.nr_hw_queues;
  plan.dev_opts.queue_depth = info.queue_depth;
  plan.dev_opts.max_io_bytes = info.max_io_buf_bytes;
  plan.dev_opts.recovery = ublk::RecoveryMode::kReissue;  // the device's own flags decide
  plan.dev_opts.poll.mode = poll_mode_option(state->value("poll_mode", std::string("hybrid")));
  plan.dev_opts.poll.hybrid_spin =
      std::chrono::microseconds(state->value("hybrid_spin_us", int64_t(ublk::kDefaultHybridSpin.count())));
  plan.target_args = state->value("target_args", nlohmann::json::object());
  plan.dev_opts.shared_buffers = ublk::SharedBuffers::from_description(state->value("shmem_bufs", nlohmann::json()));
  return run_device_daemon(plan);
}

// STOP_DEV then DEL_DEV (which returns once the daemon has released /dev/ublkcN).
int delete_device(ublk::ControlDevice& ctrl, uint32_t id) {
  ublk::CtrlDevInfo info;
  if (ctrl.get_dev_info(id, info) < 0) {
    std::cerr << "ublk-rdma: device " << id << " does not exist\n";
    return kExitFailure;
  }
  auto state = read_state(id);
  pid_t daemon = state ? pid_t(state->value("daemon_pid", 0)) : info.ublksrv_pid;
  int rc = ctrl.stop_dev(id);
  if (rc < 0 && rc != -ENODEV) log::cli()->debug("STOP_DEV {}: {}", id, errno_text(rc));
  rc = ctrl.del_dev(id);
  if (rc < 0) {
    std::cerr << "ublk-rdma: deleting device " << id << " failed: " << errno_text(rc) << "\n";
    return kExitFailure;
  }
  // DEL_DEV returned: the daemon has closed the device; give it a moment to exit entirely.
  for (int i = 0; i < 100 && process_alive(daemon); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  remove_state(id);
  return kExitOk;
}

int cmd_del(int dev_id, bool all) {
  ublk::ControlDevice ctrl;
  if (!all) return delete_device(ctrl, uint32_t(dev_id));
  int rc = kExitOk;
  for (uint32_t id : ublk::ControlDevice::list_dev_ids())
    if (delete_device(ctrl, id) != kExitOk) rc = kExitFailure;
  return rc;
}

int cmd_list(int dev_id, bool json) {
  ublk::ControlDevice ctrl;
  std::vector<uint32_t> ids;
  if (dev_id >= 0) {
    ids.push_back(uint32_t(dev_id));
  } else {
    ids = ublk::ControlDevice::list_dev_ids();
  }
  nlohmann::json arr = nlohmann::json::array();
  for (uint32_t id : ids) {
    auto d = describe_device(ctrl, id);
    if (!d) {
      if (dev_id >= 0) {
        std::cerr << "ublk-rdma: device " << id << " does not exist\n";
        return kExitFailure;
      }
      continue;  // vanished between the directory scan and the query
    }
    if (json) {
      arr.push_back(*d);
    } else {
      std::cout << format_device_text(*d);
    }
  }
  if (json) std::cout << arr.dump(2) << "\n";
  return kExitOk;
}

int cmd_features(bool json) {
  ublk::ControlDevice ctrl;
  const auto& k = ctrl.kernel();
  if (json) {
    std::cout << nlohmann::json{{"get_features", k.get_features_supported},
                                {"features", k.features},
                                {"names", ublk::feature_names(k.features)},
                                {"ioctl_encode", k.ioctl_encode()}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  if (!k.get_features_supported) {
    std::cout << "ublk driver: GET_FEATURES unsupported (old kernel): legacy opcodes only\n";
    return kExitOk;
  }
  std::cout << fmt::format("ublk driver features: {:#x}\n", k.features);
  for (auto& n : ublk::feature_names(k.features)) std::cout << "\t" << n << "\n";
  return kExitOk;
}

int run(int argc, char** argv) {
  CLI::App app{"ublk-rdma: a remote disk over RDMA, served through the Linux ublk driver"};
  app.set_version_flag("-V,--version", std::string("ublk-rdma ") + UBLK_RDMA_VERSION);
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log-level", log_level, "Log levels, e.g. 'info' or 'warn,rdma=debug' (env UBLK_RDMA_LOG)");

  AddArgs add;
  auto* add_cmd = app.add_subcommand("add", "Create a ublk device served by a new daemon");
  add_cmd->add_option("-t,--type", add.type, "Target type")->required()->check(CLI::IsMember({"null", "loop", "rdma"}));
  add_cmd->add_option("-n,--number", add.dev_id, "Device id (default: first free)")->check(CLI::Range(0, 1 << 20));
  add_cmd->add_option("-q,--queues", add.queues, "Number of queues (one thread each)")
      ->check(CLI::Range(1, int(ublk::kMaxQueues)));
  add_cmd->add_option("-d,--depth", add.depth, "Queue depth")->check(CLI::Range(1, int(ublk::kMaxQueueDepth)));
  add_cmd->add_option("--size", add.size, "Device size for null (e.g. 1G)");
  add_cmd->add_option("-f,--file", add.file, "Backing file or block device for loop");
  add_cmd->add_option("-r,--recovery", add.recovery, "1: survive a daemon crash (recover -n ID)")
      ->check(CLI::IsMember({0, 1}));
  add_cmd
      ->add_option("--recovery-reissue", add.recovery_reissue,
                   "with -r 1: 1 (default) hands the requests the crashed daemon held to the next one again; "
                   "0 fails them with EIO (new requests wait for the next daemon)")
      ->check(CLI::IsMember({0, 1}));
  add_cmd->add_flag("--recovery-fail-io", add.recovery_fail_io,
                    "with -r 1 (kernel 6.13+): while no daemon runs, every request fails at once with EIO "
                    "instead of waiting");
  add_cmd
      ->add_option("--batch-io", add.batch_io,
                   "UBLK_F_BATCH_IO (kernel 7.0+): requests and results travel in per-queue batches; on = "
                   "required, auto = when the driver has it (not with -r 1), off = one command per request")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  add_cmd->add_flag("--foreground", add.foreground, "Serve from this process instead of a detached daemon");
  add_cmd->add_option("--max-io", add.max_io, "Largest IO in bytes (default 512K)");
  add_cmd->add_option("--poll", add.poll, "Completion mode: busy, event or hybrid")
      ->check(CLI::IsMember({"busy", "event", "hybrid"}));
  add_cmd
      ->add_option("--spin-us", add.spin_us,
                   "hybrid: microseconds a queue keeps polling after its last work before it sleeps "
                   "(lower latency for more CPU; 0 = sleep at once)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  add_cmd->add_flag("--buffered", add.buffered, "loop: do not use O_DIRECT");
  add_cmd->add_option("--shmem-buf", add.shmem_bufs,
                      "zero copy (kernel 7.1+, SHMEM_ZC): a file on tmpfs or hugetlbfs (or a memfd as "
                      "/proc/PID/fd/N) that applications map for their O_DIRECT IO; requests whose pages lie in "
                      "it reach the target without a copy (repeatable)");
  add_cmd->add_option("--shmem-buf-ro", add.shmem_bufs_ro,
                      "as --shmem-buf, for a buffer the daemon may only read: WRITEs alone come from it");
  add_cmd->add_option("--traddr", add.traddr,
                      "rdma: server address ADDR[:PORT] ([V6ADDR]:PORT); given more than once, each is a path to "
                      "the same export (one server on two addresses)");
  add_cmd
      ->add_option("--multipath", add.multipath,
                   "rdma, with more than one --traddr: failover = the first path that works carries the IO, the "
                   "others stand by connected; round-robin = IO spreads over the connections of every path")
      ->check(CLI::IsMember({"failover", "round-robin"}))
      ->capture_default_str();
  add_cmd->add_option("--trsvcid", add.trsvcid, fmt::format("rdma: server port (default {})", wire::kDefaultPort))->check(CLI::Range(1, 65535));
  add_cmd->add_option("--export", add.export_name, "rdma: export name on the server");
  add_cmd
      ->add_option("--io-timeout", add.io_timeout_ms,
                   "rdma: a request with no answer after this many ms makes its connection count as lost "
                   "(its requests are held and reissued once it is rebuilt)")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  add_cmd
      ->add_option("--keepalive-tmo", add.keep_alive_tmo_s,
                   "rdma: seconds a connection may go without an answer to a keepalive before it counts as "
                   "lost: detects a server that stopped or vanished without a disconnect (0 = off)")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  add_cmd
      ->add_option("--reconnect-delay", add.reconnect_delay_s,
                   "rdma: seconds between attempts to rebuild a lost connection")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  add_cmd
      ->add_option("--ctrl-loss-tmo", add.ctrl_loss_tmo_s,
                   "rdma: seconds after a connection's loss to give up on it: its held and new requests fail "
                   "with EIO (-1 = never give up, 0 = do not reconnect)")
      ->check(CLI::Range(-1, 31536000))
      ->capture_default_str();
  add_cmd
      ->add_option("--fast-io-fail-tmo", add.fast_io_fail_tmo_s,
                   "rdma: seconds after a connection's loss to fail held and new requests with EIO while "
                   "reconnecting goes on (-1 = off)")
      ->check(CLI::Range(-1, 31536000))
      ->capture_default_str();
  add_cmd->add_option("--push-max", add.push_max,
                      "rdma: largest WRITE whose data we put into the server's memory ourselves (RDMA WRITE, "
                      "where the export offers it); larger ones the server fetches (RDMA READ); 0 = never")
      ->capture_default_str();
  add_cmd->add_option("--pull-max", add.pull_max,
                      "rdma: largest READ whose data we take from the server's memory ourselves (RDMA READ, "
                      "where the export offers it: ram); larger ones the server sends (RDMA WRITE); "
                      "0 = never; default: every READ");
  add_cmd->add_option("--write-ack", add.write_ack,
                      "rdma: what completes a WRITE pushed into a ram export: our own RDMA READ fence behind "
                      "it (no work on the server's CPU) or the server's answer to its command")
      ->check(CLI::IsMember({"fence", "server"}))
      ->capture_default_str();
  add_cmd
      ->add_option("--mr-per-io", add.mr_per_io,
                   "rdma: on = the server can reach a request's buffer only while the request is in flight (a "
                   "memory window bound per request and invalidated before it completes); off = the whole IO "
                   "buffer area stays open to the server for the device's lifetime (default: off)")
      ->check(CLI::IsMember({"on", "off"}));
  add_cmd
      ->add_option("--conns-per-queue", add.conns_per_queue,
                   "rdma: RC connections (QPs) per queue; a queue's requests are spread over them, so more "
                   "of them can be in flight where one QP limits it (soft RDMA)")
      ->check(CLI::Range(1, int(targets::kMaxConnsPerQueue)))
      ->capture_default_str();

  add_cmd->add_option("--key-file", add.key_file,
                      "rdma: this host's key (a file of mode 0600 with one key from `ublk-rdma gen-key`): "
                      "authenticate to the server, and refuse a server that cannot prove it knows the key");
  add_cmd->add_option("--host-id", add.host_id, "rdma: the identity this host authenticates as (default: the host name)");
  add_cmd->add_option("--server-key-file", add.server_key_file,
                      "rdma: the server must prove this key of its own (serve --key-file) instead of ours");

  int del_id = -1;
  bool del_all = false;
  auto* del_cmd = app.add_subcommand("del", "Stop and delete a device (and its daemon)");
  auto* del_n = del_cmd->add_option("-n,--number", del_id, "Device id")->check(CLI::NonNegativeNumber);
  auto* del_a = del_cmd->add_flag("-a,--all", del_all, "All devices");
  del_n->excludes(del_a);

  int list_id = -1;
  bool list_json = false;
  auto* list_cmd = app.add_subcommand("list", "Show devices");
  list_cmd->add_option("-n,--number", list_id, "Device id")->check(CLI::NonNegativeNumber);
  list_cmd->add_flag("--json", list_json, "JSON output");
  bool list_verbose = false;  // accepted for ublksrv compatibility: the output is always complete
  list_cmd->add_flag("-v,--verbose", list_verbose, "Accepted for ublksrv compatibility");

  int rec_id = -1;
  bool rec_fg = false;
  auto* rec_cmd = app.add_subcommand("recover", "Restart the daemon of a -r 1 device whose daemon died");
  rec_cmd->add_option("-n,--number", rec_id, "Device id")->required()->check(CLI::NonNegativeNumber);
  rec_cmd->add_flag("--foreground", rec_fg, "Serve from this process");

  StatsArgs stats;
  auto* stats_cmd = app.add_subcommand("stats", "Show the devices' metrics: JSON, or --prometheus for node_exporter");
  add_stats_options(*stats_cmd, stats);

  bool feat_json = false;
  auto* feat_cmd = app.add_subcommand("features", "Show what the running kernel's ublk driver supports");
  feat_cmd->add_flag("--json", feat_json, "JSON output");

  ServeArgs serve;
  auto* serve_cmd = app.add_subcommand("serve", "Run the RDMA target server (foreground)");
  add_serve_options(*serve_cmd, serve);

  auto* gen_key_cmd = app.add_subcommand("gen-key", "Print a new random key (for --key-file and --auth-keys)");

  std::string help_topic;
  auto* help_cmd = app.add_subcommand("help", "Show help for a command");
  help_cmd->add_option("command", help_topic, "Command name");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion&) {
    std::cout << "ublk-rdma " << UBLK_RDMA_VERSION << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    std::cerr << "Run 'ublk-rdma --help' or 'ublk-rdma help COMMAND' for usage.\n";
    return kExitUsage;
  }

  const char* env_level = std::getenv("UBLK_RDMA_LOG");
  log::apply_levels(!log_level.empty() ? log_level : (env_level ? env_level : "info"));

  try {
    if (*help_cmd) {
      if (help_topic.empty()) {
        std::cout << app.help();
        return kExitOk;
      }
      for (auto* sub : app.get_subcommands({})) {
        if (sub->get_name() == help_topic) {
          std::cout << sub->help();
          return kExitOk;
        }
      }
      std::cerr << "ublk-rdma: no such command '" << help_topic << "'\n";
      return kExitUsage;
    }
    if (*add_cmd) return cmd_add(add);
    if (*del_cmd) {
      if (del_id < 0 && !del_all) throw UsageError("del needs -n ID or -a");
      return cmd_del(del_id, del_all);
    }
    if (*list_cmd) return cmd_list(list_id, list_json);
    if (*rec_cmd) return cmd_recover(rec_id, rec_fg);
    if (*stats_cmd) return run_stats(stats);
    if (*feat_cmd) return cmd_features(feat_json);
    if (*serve_cmd) return run_serve(serve);
    if (*gen_key_cmd) return cmd_gen_key();
  } catch (const UsageError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    return kExitUsage;
  } catch (const SetupError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "ublk-rdma: unexpected error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace ublkrdma::cli

int main(int argc, char** argv) { return ublkrdma::cli::run(argc, argv); }
