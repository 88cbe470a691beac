#include "cli/add_command.h"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "base/host_port.h"
#include "base/log.h"
#include "base/size.h"
#include "cli/usage_error.h"
#include "server/export_spec.h"
#include "transport/auth.h"
#include "ublk/control_device.h"
#include "ublk/shared_buffers.h"
#include "ublk/uapi.h"

namespace ublkrdma::cli {
namespace {

// Options that mean something for one target type only; given to another, they are refused
// rather than ignored (a typo in -t would otherwise make a different device than meant).
constexpr const char* kRdmaOptions[] = {
    "--traddr",          "--multipath",         "--trsvcid",  "--export",   "--io-timeout",  "--keepalive-tmo",
    "--reconnect-delay", "--ctrl-loss-tmo",     "--fast-io-fail-tmo",        "--push-max",    "--pull-max",
    "--write-ack",       "--mr-per-io",         "--conns-per-queue",         "--key-file",    "--host-id",
    "--server-key-file"};
constexpr const char* kLoopOptions[] = {"--file", "--buffered"};
constexpr const char* kNullOptions[] = {"--size"};

// The null target's blocks (ServedDevice's default geometry).
constexpr uint64_t kNullBlockSize = 512;

bool given(const CLI::App& cmd, const char* name) {
  const CLI::Option* o = cmd.get_option_no_throw(name);
  return o != nullptr && o->count() > 0;
}

template <size_t N>
void refuse_unless(const CLI::App& cmd, const std::string& type, const char* owner, const char* const (&names)[N]) {
  if (type == owner) return;
  for (const char* n : names)
    if (given(cmd, n)) throw UsageError(fmt::format("{} is for -t {}, not -t {}", n, owner, type));
}

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
// the daemon reads them again at every connection attempt (a rotated key is picked up), from
// a daemon whose working directory is /, and at `recover`: hence absolute paths.
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
  auth::read_key_file(a.key_file);  // a missing or open key file is a failure (1), as in serve
  if (!a.server_key_file.empty()) auth::read_key_file(a.server_key_file);
  auto absolute = [](const std::string& p) { return p.empty() ? p : std::filesystem::absolute(p).string(); };
  return {{"host_id", host}, {"key_file", absolute(a.key_file)}, {"server_key_file", absolute(a.server_key_file)}};
}

nlohmann::json rdma_target_args(const AddArgs& a, uint32_t max_io) {
  uint64_t push_max = io_size_limit_option("--push-max", a.push_max, max_io);
  uint64_t pull_max = io_size_limit_option("--pull-max", a.pull_max, max_io);
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
  if (!server::is_valid_export_name(a.export_name))
    throw UsageError(fmt::format("--export '{}': an export name is 1..{} of [A-Za-z0-9._-]",
                                 log::escaped(a.export_name), server::kMaxExportNameLength));
  nlohmann::json auth = auth_args(a);
  nlohmann::json args = {{"type", "rdma"},
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
  if (!auth.is_null()) args["auth"] = auth;
  return args;
}

}  // namespace

void add_add_options(CLI::App& cmd, AddArgs& a) {
  cmd.add_option("-t,--type", a.type, "Target type")->required()->check(CLI::IsMember({"null", "loop", "rdma"}));
  cmd.add_option("-n,--number", a.dev_id, "Device id (default: first free)")->check(device_id_range());
  cmd.add_option("-q,--queues", a.queues, "Number of queues (one thread each)")
      ->check(CLI::Range(1, int(ublk::kMaxQueues)));
  cmd.add_option("-d,--depth", a.depth, "Queue depth")->check(CLI::Range(1, int(ublk::kMaxQueueDepth)));
  cmd.add_option("--size", a.size, "Device size for null (e.g. 1G)");
  cmd.add_option("-f,--file", a.file, "Backing file or block device for loop");
  cmd.add_option("-r,--recovery", a.recovery, "1: survive a daemon crash (recover -n ID)")
      ->check(CLI::IsMember({0, 1}));
  cmd.add_option("--recovery-reissue", a.recovery_reissue,
                 "with -r 1: 1 (default) hands the requests the crashed daemon held to the next one again; "
                 "0 fails them with EIO (new requests wait for the next daemon)")
      ->check(CLI::IsMember({0, 1}));
  cmd.add_flag("--recovery-fail-io", a.recovery_fail_io,
                 "with -r 1 (kernel 6.13+): while no daemon runs, every request fails at once with EIO "
                 "instead of waiting");
  cmd.add_option("--batch-io", a.batch_io,
                 "UBLK_F_BATCH_IO (kernel 7.0+): requests and results travel in per-queue batches; on = "
                 "required, auto = when the driver has it (not with -r 1), off = one command per request")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd.add_flag("--foreground", a.foreground, "Serve from this process instead of a detached daemon");
  cmd.add_option("--max-io", a.max_io, "Largest IO in bytes (default 512K)");
  cmd.add_option("--poll", a.poll, "Completion mode: busy, event or hybrid")
      ->check(CLI::IsMember({"busy", "event", "hybrid"}));
  cmd.add_option("--spin-us", a.spin_us,
                 "hybrid: microseconds a queue keeps polling after its last work before it sleeps "
                 "(lower latency for more CPU; 0 = sleep at once)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_option("--inflight-spin-us", a.inflight_spin_us,
                 "hybrid: microseconds a queue keeps polling for an answer while requests are out "
                 "before it sleeps until one wakes it (0 = sleep at once)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd.add_flag("--buffered", a.buffered, "loop: do not use O_DIRECT");
  cmd.add_option("--shmem-buf", a.shmem_bufs,
                 "zero copy (kernel 7.1+, SHMEM_ZC): a file on tmpfs or hugetlbfs (or a memfd as "
                 "/proc/PID/fd/N) that applications map for their O_DIRECT IO; requests whose pages lie in "
                 "it reach the target without a copy (repeatable)");
  cmd.add_option("--shmem-buf-ro", a.shmem_bufs_ro,
                 "as --shmem-buf, for a buffer the daemon may only read: WRITEs alone come from it");
  cmd.add_option("--traddr", a.traddr,
                 "rdma: server address ADDR[:PORT] ([V6ADDR]:PORT); given more than once, each is a path to "
                 "the same export (one server on two addresses)");
  cmd.add_option("--multipath", a.multipath,
                 "rdma, with more than one --traddr: failover = the first path that works carries the IO, the "
                 "others stand by connected; round-robin = IO spreads over the connections of every path")
      ->check(CLI::IsMember({"failover", "round-robin"}))
      ->capture_default_str();
  cmd.add_option("--trsvcid", a.trsvcid, fmt::format("rdma: server port (default {})", wire::kDefaultPort))->check(CLI::Range(1, 65535));
  cmd.add_option("--export", a.export_name, "rdma: export name on the server");
  cmd.add_option("--io-timeout", a.io_timeout_ms,
                 "rdma: a request with no answer after this many ms makes its connection count as lost "
                 "(its requests are held and reissued once it is rebuilt)")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  cmd.add_option("--keepalive-tmo", a.keep_alive_tmo_s,
                 "rdma: seconds a connection may go without an answer to a keepalive before it counts as "
                 "lost: detects a server that stopped or vanished without a disconnect (0 = off)")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  cmd.add_option("--reconnect-delay", a.reconnect_delay_s,
                 "rdma: seconds between attempts to rebuild a lost connection")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd.add_option("--ctrl-loss-tmo", a.ctrl_loss_tmo_s,
                 "rdma: seconds after a connection's loss to give up on it: its held and new requests fail "
                 "with EIO (-1 = never give up, 0 = do not reconnect)")
      ->check(CLI::Range(-1, 31536000))
      ->capture_default_str();
  cmd.add_option("--fast-io-fail-tmo", a.fast_io_fail_tmo_s,
                 "rdma: seconds after a connection's loss to fail held and new requests with EIO while "
                 "reconnecting goes on (-1 = off)")
      ->check(CLI::Range(-1, 31536000))
      ->capture_default_str();
  cmd.add_option("--push-max", a.push_max,
                 "rdma: largest WRITE whose data we put into the server's memory ourselves (RDMA WRITE, "
                 "where the export offers it); larger ones the server fetches (RDMA READ); 0 = never")
      ->capture_default_str();
  cmd.add_option("--pull-max", a.pull_max,
                 "rdma: largest READ whose data we take from the server's memory ourselves (RDMA READ, "
                 "where the export offers it: ram); larger ones the server sends (RDMA WRITE); "
                 "0 = never; default: every READ");
  cmd.add_option("--write-ack", a.write_ack,
                 "rdma: what completes a WRITE pushed into a ram export: our own RDMA READ fence behind "
                 "it (no work on the server's CPU) or the server's answer to its command")
      ->check(CLI::IsMember({"fence", "server"}))
      ->capture_default_str();
  cmd.add_option("--mr-per-io", a.mr_per_io,
                 "rdma: on = the server can reach a request's buffer only while the request is in flight (a "
                 "memory window bound per request and invalidated before it completes); off = the whole IO "
                 "buffer area stays open to the server for the device's lifetime (default: off)")
      ->check(CLI::IsMember({"on", "off"}));
  cmd.add_option("--conns-per-queue", a.conns_per_queue,
                 "rdma: RC connections (QPs) per queue; a queue's requests are spread over them, so more "
                 "of them can be in flight where one QP limits it (soft RDMA)")
      ->check(CLI::Range(1, int(targets::kMaxConnsPerQueue)))
      ->capture_default_str();

  cmd.add_option("--key-file", a.key_file,
                 "rdma: this host's key (a file of mode 0600 with one key from `ublk-rdma gen-key`): "
                 "authenticate to the server, and refuse a server that cannot prove it knows the key");
  cmd.add_option("--host-id", a.host_id, "rdma: the identity this host authenticates as (default: the host name)");
  cmd.add_option("--server-key-file", a.server_key_file,
                 "rdma: the server must prove this key of its own (serve --key-file) instead of ours");
}

ublk::PollMode poll_mode_option(const std::string& s) {
  if (s == "busy") return ublk::PollMode::kBusy;
  if (s == "event") return ublk::PollMode::kEvent;
  return ublk::PollMode::kHybrid;
}

DaemonPlan plan_add(const CLI::App& cmd, const AddArgs& a) {
  refuse_unless(cmd, a.type, "rdma", kRdmaOptions);
  refuse_unless(cmd, a.type, "loop", kLoopOptions);
  refuse_unless(cmd, a.type, "null", kNullOptions);
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
  plan.dev_opts.poll.inflight_spin = std::chrono::microseconds(a.inflight_spin_us);
  uint64_t max_io = size_option("--max-io", a.max_io);
  if (max_io < 4096 || max_io > (32u << 20) || max_io % 4096)
    throw UsageError(fmt::format("--max-io {}: must be a multiple of 4K between 4K and 32M", a.max_io));
  plan.dev_opts.max_io_bytes = uint32_t(max_io);
  plan.dev_opts.shared_buffers = shared_buffer_args(a);

  if (a.type == "null") {
    uint64_t size = a.size.empty() ? (250ull << 30) : size_option("--size", a.size);
    if (size == 0 || size % kNullBlockSize)
      throw UsageError(fmt::format("--size {}: must be a positive multiple of the {}-byte block size", a.size,
                                   kNullBlockSize));
    plan.target_args = {{"type", "null"}, {"size", size}};
  } else if (a.type == "loop") {
    if (a.file.empty()) throw UsageError("-t loop needs a backing file: -f FILE");
    plan.target_args = {{"type", "loop"}, {"file", a.file}, {"direct_io", !a.buffered}};
  } else if (a.type == "rdma") {
    plan.target_args = rdma_target_args(a, plan.dev_opts.max_io_bytes);
  } else {
    throw UsageError(fmt::format("-t {}: not a target type (null, loop, rdma)", a.type));
  }
  return plan;
}

int run_add(const DaemonPlan& plan) {
  if (plan.dev_opts.dev_id >= 0) {
    ublk::ControlDevice ctrl;
    ublk::CtrlDevInfo info;
    if (ctrl.get_dev_info(uint32_t(plan.dev_opts.dev_id), info) == 0) {
      std::cerr << "ublk-rdma: device " << plan.dev_opts.dev_id << " already exists (ublk-rdma list -n "
                << plan.dev_opts.dev_id << ")\n";
      return kExitFailure;
    }
  } else {
    ublk::ControlDevice probe;  // fails early with "ublk_drv is not loaded" before forking
  }
  return run_device_daemon(plan);
}

}  // namespace ublkrdma::cli
