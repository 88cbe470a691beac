// The client's (stats --prometheus) and the server's (serve --stats-format prometheus) metrics,
// made from JSON shaped as `list --json` and the server's stats file: every name valid, prefixed
// and typed, histograms cumulative.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/latency_histogram.h"
#include "base/prometheus_text.h"
#include "cli/client_metrics.h"
#include "server/server_metrics.h"

namespace ublkrdma {
namespace {

using Json = nlohmann::json;

struct Sample {
  std::string name, labels;
  std::string value;
};

// The samples of a text, checking on the way that each belongs to a family with a TYPE line
// seen before it, and that the name is valid and starts with `prefix`.
std::vector<Sample> parse(const std::string& text, const std::string& prefix) {
  std::vector<Sample> out;
  std::map<std::string, std::string> types;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream l(line.substr(7));
      std::string name, type;
      l >> name >> type;
      EXPECT_TRUE(prom::valid_metric_name(name)) << name;
      EXPECT_EQ(name.rfind(prefix, 0), 0u) << name;
      EXPECT_EQ(types.count(name), 0u) << name << " typed twice";
      types[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t end = line.find_first_of("{ ");
    s.name = line.substr(0, end);
    size_t sp = line.rfind(' ');
    if (line[end] == '{') s.labels = line.substr(end, line.rfind('}') + 1 - end);
    s.value = line.substr(sp + 1);
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string suf(suffix);
      const std::string base = family.size() > suf.size() ? family.substr(0, family.size() - suf.size()) : "";
      if (family.ends_with(suf) && types.count(base)) family = base;
    }
    EXPECT_TRUE(types.count(family)) << "no TYPE before " << line;
    out.push_back(s);
  }
  return out;
}

Json latency_json(uint64_t reads, uint64_t writes) {
  Json bounds = Json::array();
  for (size_t i = 0; i < LatencyHistogram::kFiniteBuckets; ++i) bounds.push_back(LatencyHistogram::upper_bound_us(i));
  auto op = [](uint64_t n) {
    Json b = Json::array();
    for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) b.push_back(i == 5 ? n : i == 9 ? 1 : 0);
    return Json{{"buckets", b}, {"count", n + 1}, {"sum_ns", 40000 * n + 300000}};
  };
  return {{"bucket_le_us", bounds}, {"read", op(reads)}, {"write", op(writes)}};
}

Json device_json() {
  Json rdma_target = {{"commands", 10},
                      {"rdma_bytes", 40960},
                      {"timeouts", 0},
                      {"connection_lost", 1},
                      {"held", 0},
                      {"connection_states",
                       {{{"connection", 0}, {"state", "live"}, {"reconnects", 1}},
                        {{"connection", 1}, {"state", "reconnecting"}, {"reconnects", 0}}}}};
  Json q0 = {{"queue", 0},
             {"stats",
              {{"queue", 0}, {"ios", 102}, {"bytes_read", 409600}, {"bytes_written", 4096}, {"max_inflight", 4},
               {"latency", latency_json(100, 1)}, {"target", rdma_target}}}};
  return {{"dev_id", 3},
          {"state", "LIVE"},
          {"target", {{"type", "rdma"}}},
          {"dev_size", 1 << 30},
          {"nr_hw_queues", 1},
          {"queue_depth", 128},
          {"paths", {{{"path", "192.0.2.1:18520"}, {"state", "live"}, {"active", true}}}},
          {"queues", {q0}}};
}

std::string find(const std::vector<Sample>& s, const std::string& name, const std::string& labels) {
  for (const Sample& x : s)
    if (x.name == name && x.labels == labels) return x.value;
  ADD_FAILURE() << "no sample " << name << labels;
  return "";
}

TEST(ClientMetrics, DeviceQueueAndTargetMetrics) {
  Json devices = Json::array({device_json(), {{"dev_id", 4}, {"state", "QUIESCED"}, {"target", {{"type", "null"}}}}});
  const std::string text = cli::client_metrics_text(devices);
  auto s = parse(text, "ublk_rdma_");
  EXPECT_EQ(find(s, "ublk_rdma_device_info", R"({device="3",target="rdma",state="LIVE"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_device_info", R"({device="4",target="null",state="QUIESCED"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_device_size_bytes", R"({device="3"})"), "1073741824");
  EXPECT_EQ(find(s, "ublk_rdma_queue_ios_total", R"({device="3",queue="0"})"), "102");
  EXPECT_EQ(find(s, "ublk_rdma_queue_bytes_total", R"({device="3",queue="0",op="read"})"), "409600");
  EXPECT_EQ(find(s, "ublk_rdma_queue_bytes_total", R"({device="3",queue="0",op="write"})"), "4096");
  EXPECT_EQ(find(s, "ublk_rdma_queue_rdma_commands_total", R"({device="3",queue="0"})"), "10");
  EXPECT_EQ(find(s, "ublk_rdma_queue_rdma_reconnects_total", R"({device="3",queue="0"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_queue_rdma_connections", R"({device="3",queue="0",state="reconnecting"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_path_state", R"({device="3",path="192.0.2.1:18520",state="live"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_path_active", R"({device="3",path="192.0.2.1:18520"})"), "1");
  // The histogram: cumulative, le in seconds, +Inf equal to _count, sum in seconds.
  const std::string rd = R"({device="3",queue="0",op="read")";
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_bucket", rd + R"(,le="1e-06"})"), "0");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_bucket", rd + R"(,le="3.2e-05"})"), "100");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_bucket", rd + R"(,le="0.000512"})"), "101");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_bucket", rd + R"(,le="33.554432"})"), "101");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_bucket", rd + R"(,le="+Inf"})"), "101");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_count", rd + "}"), "101");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_sum", rd + "}"), "0.0043");
  EXPECT_EQ(find(s, "ublk_rdma_queue_latency_seconds_count", R"({device="3",queue="0",op="write"})"), "2");
  // The null device without a daemon answering has no queue series.
  for (const Sample& x : s) {
    if (x.name.rfind("ublk_rdma_queue_", 0) == 0) {
      EXPECT_EQ(x.labels.find("device=\"4\""), std::string::npos) << x.name;
    }
  }
}

TEST(ClientMetrics, NoDevicesIsStillValid) {
  auto s = parse(cli::client_metrics_text(Json::array()), "ublk_rdma_");
  EXPECT_TRUE(s.empty());
}

TEST(ClientMetrics, JsonKeepsTheQueueStats) {
  Json j = cli::client_metrics_json(Json::array({device_json()}));
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["dev_id"], 3);
  EXPECT_EQ(j[0]["queues"][0]["latency"]["read"]["count"], 101);
}

TEST(ServerMetrics, ExportsConnectionsAndGroups) {
  Json stats = {
      {"exports",
       {{"vol0", {{"connections", 2}, {"commands", 50}, {"reads", 30}, {"writes", 19}, {"rdma_bytes", 1 << 20},
                  {"unanswered_at_stop", 1}, {"available", true}, {"size_bytes", 1 << 26}}},
        {"vol\"1", {{"available", false}}}}},
      {"connections", {{{"export", "vol0"}, {"memory_bytes", 1000}}, {{"export", "vol0"}, {"memory_bytes", 24}}}},
      {"poll_groups", {{{"connections", 2}, {"passes", 7}, {"sleeps", 3}}, {{"connections", 0}, {"passes", 1}}}},
      {"accepted_connections", 2},
      {"rejected_connections", 1},
      {"memory_bytes", 1024},
      {"authentication", false},
      {"failed_authentications", 0},
      {"auth_reloads", 2},
      {"auth_reload_failures", 1},
      {"revoked_connections", 4}};
  auto s = parse(server::server_metrics_text(stats), "ublk_rdma_server_");
  EXPECT_EQ(find(s, "ublk_rdma_server_commands_total", R"({export="vol0"})"), "50");
  EXPECT_EQ(find(s, "ublk_rdma_server_accepted_commands_total", R"({export="vol0",op="read"})"), "30");
  EXPECT_EQ(find(s, "ublk_rdma_server_accepted_commands_total", R"({export="vol0",op="write"})"), "19");
  EXPECT_EQ(find(s, "ublk_rdma_server_unanswered_at_stop_total", R"({export="vol0"})"), "1");
  EXPECT_EQ(find(s, "ublk_rdma_server_export_connections", R"({export="vol0"})"), "2");
  EXPECT_EQ(find(s, "ublk_rdma_server_export_memory_granted_bytes", R"({export="vol0"})"), "1024");
  EXPECT_EQ(find(s, "ublk_rdma_server_export_available", R"({export="vol\"1"})"), "0");
  EXPECT_EQ(find(s, "ublk_rdma_server_export_size_bytes", R"({export="vol0"})"), "67108864");
  EXPECT_EQ(std::count_if(s.begin(), s.end(),
                          [](const Sample& x) { return x.name == "ublk_rdma_server_export_size_bytes"; }),
            1);  // not for the unavailable export
  EXPECT_EQ(find(s, "ublk_rdma_server_connections", ""), "2");
  EXPECT_EQ(find(s, "ublk_rdma_server_memory_granted_bytes", ""), "1024");
  EXPECT_EQ(find(s, "ublk_rdma_server_rejected_connections_total", ""), "1");
  EXPECT_EQ(find(s, "ublk_rdma_server_auth_reloads_total", ""), "2");
  EXPECT_EQ(find(s, "ublk_rdma_server_auth_reload_failures_total", ""), "1");
  EXPECT_EQ(find(s, "ublk_rdma_server_revoked_connections_total", ""), "4");
  EXPECT_EQ(find(s, "ublk_rdma_server_poll_group_passes_total", R"({group="0"})"), "7");
  EXPECT_EQ(find(s, "ublk_rdma_server_poll_group_sleeps_total", R"({group="1"})"), "0");
}

TEST(ServerMetrics, EmptyStatsStillValid) {
  auto s = parse(server::server_metrics_text(Json::object()), "ublk_rdma_server_");
  EXPECT_EQ(find(s, "ublk_rdma_server_connections", ""), "0");
}

}  // namespace
}  // namespace ublkrdma
