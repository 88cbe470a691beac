// The rdma target's factory: connects every queue's connections on the daemon's main thread and
// takes the device's geometry from the server's answer.
#include "targets/rdma_target.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "base/errors.h"
#include "base/log.h"
#include "targets/rdma_connection.h"
#include "targets/rdma_queue.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::targets {

std::string RdmaPath::text() const {
  return traddr.find(':') != std::string::npos ? fmt::format("[{}]:{}", traddr, trsvcid)
                                               : fmt::format("{}:{}", traddr, trsvcid);
}

const char* multipath_policy_name(MultipathPolicy p) {
  return p == MultipathPolicy::kRoundRobin ? "round-robin" : "failover";
}

namespace {

class RdmaTargetFactory final : public ublk::TargetFactory {
 public:
  explicit RdmaTargetFactory(const RdmaTargetOptions& o) : opts_(o) {
    if (o.paths.empty()) throw SetupError("rdma target: no server address (--traddr)", EINVAL);
    if (o.paths.size() > kMaxPaths)
      throw SetupError(fmt::format("rdma target: {} paths (--traddr at most {} times)", o.paths.size(), kMaxPaths),
                       EINVAL);
    if (o.nr_queues == 0 || o.queue_depth == 0) throw SetupError("rdma target: queues and depth must be > 0", EINVAL);
    if (o.conns_per_queue < 1 || o.conns_per_queue > kMaxConnsPerQueue)
      throw SetupError(fmt::format("rdma target: {} connections per queue (1..{})", o.conns_per_queue,
                                   kMaxConnsPerQueue),
                       EINVAL);
    if (transport::rdma_device_names().empty())
      throw SetupError("no RDMA device found (load a driver, e.g. `modprobe rdma_rxe` and "
                       "`rdma link add rxe0 type rxe netdev IFACE`)",
                       ENODEV);
    std::random_device rd;
    session_ = (uint64_t(rd()) << 32) | rd();
    // More connections than requests would carry nothing.
    conns_ = std::min<uint16_t>(o.conns_per_queue, o.queue_depth);
    connections_.resize(o.nr_queues);
    uint64_t size = 0;
    for (uint16_t q = 0; q < o.nr_queues; ++q) {
      for (size_t p = 0; p < o.paths.size(); ++p) {
        for (uint16_t c = 0; c < conns_; ++c) {
          connections_[q].push_back(connect_rdma_connection(o, o.paths[p], q, conns_, session_));
          const wire::AcceptData& a = connections_[q].back().accepted();
          const wire::AcceptData& a0 = connections_.front().front().accepted();
          // Every connection of every queue on every path must be granted alike: a request may
          // go out again on any of them, and the device has one geometry. Paths to different
          // exports (another file, a ram export of another process) differ in their instance.
          // The size may differ: the export may be resized meanwhile. The device takes the
          // latest; a queue whose connections heard another hears the right one in its first
          // KEEP_ALIVE answer.
          size = a.export_size;
          if (a.block_shift != a0.block_shift || a.export_flags != a0.export_flags || a.features != a0.features ||
              a.instance_id != a0.instance_id)
            throw SetupError(fmt::format("server {} described export '{}' differently on queue {} connection {}{}",
                                         o.paths[p].text(), o.export_name, q, c,
                                         p > 0 ? " than the first path did: the paths do not lead to the same export"
                                               : ""),
                             EPROTO);
        }
      }
    }
    conn_depth_ = connections_.front().front().depth();  // each one was checked to be granted it
    const wire::AcceptData& a = connections_.front().front().accepted();
    geo_.size_bytes = size;
    geo_.logical_bs_shift = a.block_shift;
    geo_.physical_bs_shift = std::max<uint8_t>(a.block_shift, 12);
    geo_.read_only = a.read_only();
    geo_.volatile_cache = a.flush();
    geo_.fua = a.fua() && a.flush();
    geo_.discard = a.discard();
    geo_.write_zeroes = a.write_zeroes();
    geo_.discard_granularity = std::max<uint32_t>(4096, 1u << a.block_shift);
    std::string paths;
    for (const RdmaPath& p : o.paths) paths += (paths.empty() ? "" : ", ") + p.text();
    log::target()->info("rdma: export '{}' on {}{}: {} bytes, {}-byte blocks{}, {} queue(s) x depth {}, {} "
                        "connection(s) per queue and path (depth {} each)",
                        o.export_name, paths,
                        o.paths.size() > 1 ? fmt::format(" ({})", multipath_policy_name(o.multipath)) : "",
                        a.export_size, 1u << a.block_shift, a.read_only() ? ", read-only" : "", o.nr_queues,
                        o.queue_depth, conns_, conn_depth_);
  }

  std::string type_name() const override { return "rdma"; }
  ublk::DeviceGeometry geometry() const override { return geo_; }

  std::unique_ptr<ublk::QueueTarget> make_queue_target(uint16_t queue_id) override {
    if (queue_id >= connections_.size() || connections_[queue_id].empty())
      throw_setup("rdma: no connection for queue {} (have {})", queue_id, connections_.size());
    return make_rdma_queue_target(std::move(connections_[queue_id]), opts_, conns_, queue_id, session_);
  }

  std::string describe_json() const override {
    nlohmann::json paths = nlohmann::json::array();
    for (const RdmaPath& p : opts_.paths) paths.push_back(p.text());
    nlohmann::json j = {{"type", "rdma"},
                        {"traddr", opts_.paths.front().traddr},
                        {"trsvcid", opts_.paths.front().trsvcid},
                        {"paths", paths},
                        {"multipath", multipath_policy_name(opts_.multipath)},
                        {"export", opts_.export_name},
                        {"poll", ublk::poll_mode_name(opts_.poll_mode)},
                        {"conns_per_queue", conns_},
                        {"connection_depth", conn_depth_},
                        {"io_timeout_ms", opts_.io_timeout.count()},
                        {"reconnect_delay_ms", opts_.recovery.reconnect_delay.count()},
                        {"ctrl_loss_tmo_ms", opts_.recovery.ctrl_loss_tmo.count()},
                        {"fast_io_fail_tmo_ms", opts_.recovery.fast_io_fail_tmo.count()},
                        {"size", geo_.size_bytes},
                        {"block_size", 1u << geo_.logical_bs_shift},
                        {"read_only", geo_.read_only},
                        {"flush", geo_.volatile_cache},
                        {"fua", geo_.fua},
                        {"discard", geo_.discard},
                        {"write_zeroes", geo_.write_zeroes},
                        {"protocol_version", wire::kVersion}};
    return j.dump();
  }

 private:
  RdmaTargetOptions opts_;
  std::vector<std::vector<RdmaConnection>> connections_;  // [queue][connection]
  uint64_t session_ = 0;     // random: the server groups the device's connections by it
  uint16_t conns_ = 0;       // per queue
  uint16_t conn_depth_ = 0;  // what each of them carries at most
  ublk::DeviceGeometry geo_;
};

}  // namespace

std::unique_ptr<ublk::TargetFactory> make_rdma_target_factory(const RdmaTargetOptions& opts) {
  return std::make_unique<RdmaTargetFactory>(opts);
}

}  // namespace ublkrdma::targets
