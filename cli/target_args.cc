#include "cli/target_args.h"

#include <chrono>

#include "base/errors.h"
#include "targets/loop_target.h"
#include "targets/null_target.h"
#include "targets/rdma_target.h"
#include "transport/auth.h"

namespace ublkrdma::cli {

std::unique_ptr<ublk::TargetFactory> make_target_factory(const nlohmann::json& args,
                                                         const ublk::DeviceOptions& dev_opts) {
  std::string type = args.value("type", "");
  if (type == "null") return targets::make_null_target_factory(args.at("size").get<uint64_t>());
  if (type == "loop") {
    targets::LoopTargetOptions o;
    o.path = args.at("file").get<std::string>();
    o.direct_io = args.value("direct_io", true);
    return targets::make_loop_target_factory(o);
  }
  if (type == "rdma") {
    targets::RdmaTargetOptions o;
    if (args.contains("paths")) {
      for (const auto& p : args.at("paths"))
        o.paths.push_back(targets::RdmaPath{p.at("traddr").get<std::string>(), p.value("trsvcid", wire::kDefaultPort)});
    } else {  // a device added by a build before multipath, recovered by this one
      o.paths.push_back(targets::RdmaPath{args.at("traddr").get<std::string>(), args.value("trsvcid", wire::kDefaultPort)});
    }
    o.multipath = args.value("multipath", std::string("failover")) == "round-robin" ? targets::MultipathPolicy::kRoundRobin
                                                                                   : targets::MultipathPolicy::kFailover;
    o.export_name = args.at("export").get<std::string>();
    o.nr_queues = dev_opts.nr_queues;
    o.queue_depth = dev_opts.queue_depth;
    o.max_io_bytes = dev_opts.max_io_bytes;
    o.poll_mode = dev_opts.poll.mode;
    o.io_timeout = std::chrono::milliseconds(args.value("io_timeout_ms", 30000));
    o.keep_alive_tmo = std::chrono::milliseconds(args.value("keep_alive_tmo_ms", o.keep_alive_tmo.count()));
    o.push_max_bytes = args.value("push_max_bytes", o.push_max_bytes);
    o.pull_max_bytes = args.value("pull_max_bytes", o.pull_max_bytes);
    o.fence_writes = args.value("fence_writes", o.fence_writes);
    o.mr_per_io = args.value("mr_per_io", o.mr_per_io);
    o.conns_per_queue = args.value("conns_per_queue", o.conns_per_queue);
    targets::RecoveryPolicy& r = o.recovery;
    r.reconnect_delay = std::chrono::milliseconds(args.value("reconnect_delay_ms", r.reconnect_delay.count()));
    r.ctrl_loss_tmo = std::chrono::milliseconds(args.value("ctrl_loss_tmo_ms", r.ctrl_loss_tmo.count()));
    r.fast_io_fail_tmo = std::chrono::milliseconds(args.value("fast_io_fail_tmo_ms", r.fast_io_fail_tmo.count()));
    if (args.contains("auth")) {
      const nlohmann::json& a = args.at("auth");
      o.auth.enabled = true;
      o.auth.host_id = a.at("host_id").get<std::string>();
      // Read now, so that a bad file fails the start; then again at every connection attempt.
      o.auth.key_file = a.at("key_file").get<std::string>();
      o.auth.key = auth::read_key_file(o.auth.key_file);
      o.auth.server_key_file = a.value("server_key_file", std::string());
      if (!o.auth.server_key_file.empty()) o.auth.server_key = auth::read_key_file(o.auth.server_key_file);
    }
    return targets::make_rdma_target_factory(o);
  }
  throw_setup("unknown target type '{}'", type);
}

}  // namespace ublkrdma::cli
