#include "cli/client_metrics.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <vector>

#include "base/json_count.h"
#include "base/prometheus_text.h"

namespace ublkrdma::cli {
namespace {

using prom::Labels;
using prom::MetricType;
using Json = nlohmann::json;


const Json& object(const Json& j, std::string_view key) {
  static const Json empty = Json::object();
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : empty;
}

const Json& array(const Json& j, std::string_view key) {
  static const Json empty = Json::array();
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : empty;
}

Labels with(Labels l, std::string key, std::string value) {
  l.emplace_back(std::move(key), std::move(value));
  return l;
}

constexpr JsonCounter kQueueCounters[] = {
    {"ios", "ublk_rdma_queue_ios_total", "Requests the queue completed (any operation, any result)."},
    {"errors", "ublk_rdma_queue_errors_total", "Requests the queue completed with an error."},
    {"zero_copy_ios", "ublk_rdma_queue_zero_copy_ios_total",
     "READs and WRITEs whose data was in a shared buffer (--shmem-buf): copied by no one."},
    {"zero_copy_bytes", "ublk_rdma_queue_zero_copy_bytes_total", "Bytes of the zero-copy READs and WRITEs."},
    {"driver_copy_ios", "ublk_rdma_queue_driver_copy_ios_total",
     "READs and WRITEs the ublk driver copied to or from the queue's buffers."},
    {"driver_copy_bytes", "ublk_rdma_queue_driver_copy_bytes_total", "Bytes of the driver-copied READs and WRITEs."},
    {"loop_passes", "ublk_rdma_queue_loop_passes_total", "Passes of the queue thread's loop."},
    {"idle_sleeps", "ublk_rdma_queue_sleeps_total", "Times the queue thread slept waiting for work."},
    {"busy_polls", "ublk_rdma_queue_busy_polls_total", "Passes of the queue thread that polled instead of sleeping."},
};

// The rdma target's counters (queue stats "target").
constexpr JsonCounter kRdmaCounters[] = {
    {"commands", "ublk_rdma_queue_rdma_commands_total", "Commands sent to the server."},
    {"rdma_bytes", "ublk_rdma_queue_rdma_bytes_total", "READ and WRITE data moved by RDMA, by either side."},
    {"timeouts", "ublk_rdma_queue_rdma_timeouts_total", "Requests without an answer within --io-timeout."},
    {"keep_alive_timeouts", "ublk_rdma_queue_rdma_keep_alive_timeouts_total",
     "Keepalives without an answer within --keepalive-tmo (each a connection counted lost)."},
    {"connection_lost", "ublk_rdma_queue_rdma_connection_losses_total", "Losses of a connection of the queue."},
    {"reissued", "ublk_rdma_queue_rdma_reissued_total", "Requests taken back from a lost connection to go out again."},
    {"stale_completions", "ublk_rdma_queue_rdma_stale_completions_total",
     "Answers for a request no longer in flight (dropped)."},
    {"pushed_writes", "ublk_rdma_queue_rdma_pushed_writes_total",
     "WRITEs whose data the client put into the server's memory by RDMA WRITE."},
    {"pulled_reads", "ublk_rdma_queue_rdma_pulled_reads_total",
     "READs whose data the client took from the server's memory by RDMA READ (no command)."},
    {"fenced_writes", "ublk_rdma_queue_rdma_fenced_writes_total",
     "Pushed WRITEs completed by an RDMA READ fence (no command)."},
};

constexpr std::array<const char*, 4> kConnectionStates = {"live", "connecting", "reconnecting", "failed"};

void declare_all(prom::TextWriter& w) {
  w.declare("ublk_rdma_device_info", MetricType::kGauge,
            "A ublk device of this host (always 1): its target type and its state (the kernel's LIVE, QUIESCED, "
            "FAIL_IO, DEAD, or RECONNECTING / FAILED while an rdma device's connections are down).");
  w.declare("ublk_rdma_device_size_bytes", MetricType::kGauge, "The device's size.");
  w.declare("ublk_rdma_device_queues", MetricType::kGauge, "The device's queues (one thread each).");
  w.declare("ublk_rdma_device_queue_depth", MetricType::kGauge, "Requests each queue may hold at once.");
  w.declare("ublk_rdma_path_state", MetricType::kGauge,
            "An rdma device's path to its server (always 1): its worst state over the queues "
            "(live, degraded, reconnecting, failed).");
  w.declare("ublk_rdma_path_active", MetricType::kGauge, "1 if the path carries IO (multipath), else 0.");
  for (const JsonCounter& c : kQueueCounters) w.declare(c.name, MetricType::kCounter, c.help);
  w.declare("ublk_rdma_queue_bytes_total", MetricType::kCounter, "Bytes the queue's READs and WRITEs moved.");
  w.declare("ublk_rdma_queue_inflight_max", MetricType::kGauge, "Most requests the queue held at once since start.");
  w.declare("ublk_rdma_queue_latency_seconds", MetricType::kHistogram,
            "Requests' time in the daemon, from the driver handing the request to the queue to the queue handing "
            "back its result, by operation (for rdma: with the round trip to the server).");
  for (const JsonCounter& c : kRdmaCounters) w.declare(c.name, MetricType::kCounter, c.help);
  w.declare("ublk_rdma_queue_rdma_reconnects_total", MetricType::kCounter,
            "Connections of the queue rebuilt after a loss.");
  w.declare("ublk_rdma_queue_rdma_held_requests", MetricType::kGauge,
            "Requests held while their connection is rebuilt, to be reissued.");
  w.declare("ublk_rdma_queue_rdma_connections", MetricType::kGauge, "The queue's connections by state.");
}

void latency(prom::TextWriter& w, const Labels& q, const Json& lat) {
  std::vector<double> bounds;
  for (const Json& b : array(lat, "bucket_le_us"))
    if (b.is_number()) bounds.push_back(b.get<double>() / 1e6);
  if (bounds.empty()) return;
  for (const auto& [op, h] : lat.items()) {
    if (!h.is_object()) continue;
    std::vector<uint64_t> counts;
    for (const Json& c : array(h, "buckets")) counts.push_back(c.is_number_unsigned() ? c.get<uint64_t>() : 0);
    if (counts.size() != bounds.size() + 1) continue;
    w.histogram("ublk_rdma_queue_latency_seconds", with(q, "op", op), bounds, counts, double(json_count(h, "sum_ns")) / 1e9);
  }
}

void rdma_queue(prom::TextWriter& w, const Labels& q, const Json& t) {
  for (const JsonCounter& c : kRdmaCounters) w.sample(c.name, q, json_count(t, c.key));
  uint64_t reconnects = 0;
  std::array<uint64_t, kConnectionStates.size()> by_state{};
  for (const Json& c : array(t, "connection_states")) {
    reconnects += json_count(c, "reconnects");
    for (size_t i = 0; i < kConnectionStates.size(); ++i)
      by_state[i] += c.value("state", std::string()) == kConnectionStates[i];
  }
  w.sample("ublk_rdma_queue_rdma_reconnects_total", q, reconnects);
  w.sample("ublk_rdma_queue_rdma_held_requests", q, json_count(t, "held"));
  for (size_t i = 0; i < kConnectionStates.size(); ++i)
    w.sample("ublk_rdma_queue_rdma_connections", with(q, "state", kConnectionStates[i]), by_state[i]);
}

void device(prom::TextWriter& w, const Json& d) {
  const Labels dev{{"device", std::to_string(json_count(d, "dev_id"))}};
  w.sample("ublk_rdma_device_info",
           with(with(dev, "target", object(d, "target").value("type", std::string())), "state",
                d.value("state", std::string())),
           1.0);
  w.sample("ublk_rdma_device_size_bytes", dev, json_count(d, "dev_size"));
  w.sample("ublk_rdma_device_queues", dev, json_count(d, "nr_hw_queues"));
  w.sample("ublk_rdma_device_queue_depth", dev, json_count(d, "queue_depth"));
  for (const Json& p : array(d, "paths")) {
    const Labels path = with(dev, "path", p.value("path", std::string()));
    w.sample("ublk_rdma_path_state", with(path, "state", p.value("state", std::string())), 1.0);
    w.sample("ublk_rdma_path_active", path, p.value("active", false) ? 1.0 : 0.0);
  }
  for (const Json& queue : array(d, "queues")) {
    const Json& s = object(queue, "stats");
    if (s.empty()) continue;  // no daemon answered: no queue statistics
    const Labels q = with(dev, "queue", std::to_string(json_count(queue, "queue")));
    for (const JsonCounter& c : kQueueCounters) w.sample(c.name, q, json_count(s, c.key));
    w.sample("ublk_rdma_queue_bytes_total", with(q, "op", "read"), json_count(s, "bytes_read"));
    w.sample("ublk_rdma_queue_bytes_total", with(q, "op", "write"), json_count(s, "bytes_written"));
    w.sample("ublk_rdma_queue_inflight_max", q, json_count(s, "max_inflight"));
    latency(w, q, object(s, "latency"));
    const Json& t = object(s, "target");
    if (t.contains("commands")) rdma_queue(w, q, t);
  }
}

}  // namespace

std::string client_metrics_text(const Json& devices) {
  prom::TextWriter w;
  declare_all(w);
  if (devices.is_array())
    for (const Json& d : devices) device(w, d);
  return w.text();
}

Json client_metrics_json(const Json& devices) {
  Json out = Json::array();
  if (!devices.is_array()) return out;
  for (const Json& d : devices) {
    Json queues = Json::array();
    for (const Json& q : array(d, "queues"))
      if (q.contains("stats")) queues.push_back(q["stats"]);
    out.push_back({{"dev_id", json_count(d, "dev_id")},
                   {"state", d.value("state", std::string())},
                   {"target", object(d, "target").value("type", std::string())},
                   {"dev_size", json_count(d, "dev_size")},
                   {"queues", std::move(queues)}});
  }
  return out;
}

}  // namespace ublkrdma::cli
