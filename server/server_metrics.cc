#include "server/server_metrics.h"

#include <algorithm>
#include <map>
#include <string_view>

#include "base/json_count.h"
#include "base/prometheus_text.h"

namespace ublkrdma::server {
namespace {

using prom::Labels;
using prom::MetricType;
using Json = nlohmann::json;


const Json& member(const Json& j, std::string_view key, const Json& fallback) {
  auto it = j.find(key);
  return it != j.end() && it->type() == fallback.type() ? *it : fallback;
}

constexpr JsonCounter kExportCounters[] = {
    {"connections", "ublk_rdma_server_export_connections_total", "Connections accepted to the export."},
    {"commands", "ublk_rdma_server_commands_total",
     "Commands received for the export (keepalives aside), refused ones included."},
    {"rdma_bytes", "ublk_rdma_server_rdma_bytes_total",
     "READ and WRITE data the server moved by RDMA or received pushed (not the clients' own RDMA READs)."},
    {"errors", "ublk_rdma_server_errors_total", "Answers with an error status."},
    {"rejected_commands", "ublk_rdma_server_rejected_commands_total", "Commands refused by validation."},
    {"backend_errors", "ublk_rdma_server_backend_errors_total", "Commands the backend failed."},
    {"keep_alives", "ublk_rdma_server_keep_alives_total", "Keepalives answered."},
    {"unanswered_at_stop", "ublk_rdma_server_unanswered_at_stop_total",
     "Commands that came while the server stopped, left for the client to reissue."},
    {"pushed_writes", "ublk_rdma_server_pushed_writes_total",
     "WRITEs whose data the client put into the export's memory by RDMA WRITE."},
};

// The accepted commands by operation: JSON key and the op label.
constexpr std::pair<const char*, const char*> kOps[] = {
    {"reads", "read"},       {"writes", "write"}, {"flushes", "flush"},
    {"discards", "discard"}, {"write_zeroes", "write_zeroes"}};

void declare_all(prom::TextWriter& w) {
  w.declare("ublk_rdma_server_export_available", MetricType::kGauge,
            "1 if the export's backend is open (an rbd export whose cluster is down is 0 until it opens).");
  w.declare("ublk_rdma_server_export_size_bytes", MetricType::kGauge,
            "The export's size now (it follows a resized file, block device or rbd image; absent while unavailable).");
  w.declare("ublk_rdma_server_export_connections", MetricType::kGauge, "The export's connections now.");
  w.declare("ublk_rdma_server_export_memory_granted_bytes", MetricType::kGauge,
            "Memory granted to the export's connections now (buffer pools, message slots, queue pairs).");
  for (const JsonCounter& c : kExportCounters) w.declare(c.name, MetricType::kCounter, c.help);
  w.declare("ublk_rdma_server_accepted_commands_total", MetricType::kCounter,
            "Commands accepted for the export, by operation.");
  w.declare("ublk_rdma_server_connections", MetricType::kGauge, "Connections now.");
  w.declare("ublk_rdma_server_memory_granted_bytes", MetricType::kGauge,
            "Memory granted to all connections now (bounded by --max-memory).");
  w.declare("ublk_rdma_server_accepted_connections_total", MetricType::kCounter, "Connections accepted.");
  w.declare("ublk_rdma_server_rejected_connections_total", MetricType::kCounter,
            "Connection requests refused (negotiation, limits, --allow, authentication).");
  w.declare("ublk_rdma_server_authentication_enabled", MetricType::kGauge, "1 if clients must authenticate.");
  w.declare("ublk_rdma_server_failed_authentications_total", MetricType::kCounter, "Failed authentications.");
  w.declare("ublk_rdma_server_auth_reloads_total", MetricType::kCounter, "Reloads of --auth-keys (SIGHUP) that took effect.");
  w.declare("ublk_rdma_server_auth_reload_failures_total", MetricType::kCounter,
            "Reloads of --auth-keys refused (the file did not load; the keys in use stay).");
  w.declare("ublk_rdma_server_revoked_connections_total", MetricType::kCounter,
            "Connections closed because a reload took their host's access away.");
  w.declare("ublk_rdma_server_poll_group_connections", MetricType::kGauge, "Connections the poll group serves now.");
  w.declare("ublk_rdma_server_poll_group_passes_total", MetricType::kCounter, "Passes of the poll group's loop.");
  w.declare("ublk_rdma_server_poll_group_sleeps_total", MetricType::kCounter,
            "Times the poll group slept waiting for events.");
}

}  // namespace

std::string server_metrics_text(const Json& stats) {
  prom::TextWriter w;
  declare_all(w);
  // Live connections and their memory, per export.
  std::map<std::string, std::pair<uint64_t, uint64_t>> live;
  static const Json kNoArray = Json::array(), kNoObject = Json::object();
  const Json& conns = member(stats, "connections", kNoArray);
  for (const Json& c : conns) {
    auto& [n, mem] = live[c.value("export", std::string())];
    n += 1;
    mem += json_count(c, "memory_bytes");
  }
  for (const auto& [name, e] : member(stats, "exports", kNoObject).items()) {
    const Labels ex{{"export", name}};
    w.sample("ublk_rdma_server_export_available", ex, e.value("available", false) ? 1.0 : 0.0);
    if (e.contains("size_bytes")) w.sample("ublk_rdma_server_export_size_bytes", ex, json_count(e, "size_bytes"));
    w.sample("ublk_rdma_server_export_connections", ex, live[name].first);
    w.sample("ublk_rdma_server_export_memory_granted_bytes", ex, live[name].second);
    for (const JsonCounter& c : kExportCounters) w.sample(c.name, ex, json_count(e, c.key));
    for (const auto& [key, op] : kOps)
      w.sample("ublk_rdma_server_accepted_commands_total", {{"export", name}, {"op", op}}, json_count(e, key));
  }
  w.sample("ublk_rdma_server_connections", {}, uint64_t(conns.size()));
  w.sample("ublk_rdma_server_memory_granted_bytes", {}, json_count(stats, "memory_bytes"));
  w.sample("ublk_rdma_server_accepted_connections_total", {}, json_count(stats, "accepted_connections"));
  w.sample("ublk_rdma_server_rejected_connections_total", {}, json_count(stats, "rejected_connections"));
  w.sample("ublk_rdma_server_authentication_enabled", {}, stats.value("authentication", false) ? 1.0 : 0.0);
  w.sample("ublk_rdma_server_failed_authentications_total", {}, json_count(stats, "failed_authentications"));
  w.sample("ublk_rdma_server_auth_reloads_total", {}, json_count(stats, "auth_reloads"));
  w.sample("ublk_rdma_server_auth_reload_failures_total", {}, json_count(stats, "auth_reload_failures"));
  w.sample("ublk_rdma_server_revoked_connections_total", {}, json_count(stats, "revoked_connections"));
  size_t g = 0;
  for (const Json& group : member(stats, "poll_groups", kNoArray)) {
    const Labels gl{{"group", std::to_string(g++)}};
    w.sample("ublk_rdma_server_poll_group_connections", gl, json_count(group, "connections"));
    w.sample("ublk_rdma_server_poll_group_passes_total", gl, json_count(group, "passes"));
    w.sample("ublk_rdma_server_poll_group_sleeps_total", gl, json_count(group, "sleeps"));
  }
  return w.text();
}

}  // namespace ublkrdma::server
