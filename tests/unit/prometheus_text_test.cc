#include "base/prometheus_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace ublkrdma::prom {
namespace {

TEST(PrometheusText, MetricNames) {
  EXPECT_TRUE(valid_metric_name("ublk_rdma_queue_ios_total"));
  EXPECT_TRUE(valid_metric_name("a:b_c9"));
  EXPECT_TRUE(valid_metric_name("_x"));
  EXPECT_TRUE(valid_metric_name(":x"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("9x"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_FALSE(valid_metric_name("a b"));
  EXPECT_FALSE(valid_metric_name("a.b"));
  EXPECT_FALSE(valid_metric_name("é"));
}

TEST(PrometheusText, LabelNames) {
  EXPECT_TRUE(valid_label_name("device"));
  EXPECT_TRUE(valid_label_name("_op2"));
  EXPECT_FALSE(valid_label_name("__name__"));
  EXPECT_FALSE(valid_label_name("a:b"));  // colons are for metric names only
  EXPECT_FALSE(valid_label_name("2a"));
  EXPECT_FALSE(valid_label_name(""));
}

TEST(PrometheusText, Escaping) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)" "\n" "d"), R"(a\\b\"c\nd)");
  EXPECT_EQ(escape_label_value("192.0.2.1:18520"), "192.0.2.1:18520");
  EXPECT_EQ(escape_help("a \"quoted\" \\ line\nnext"), "a \"quoted\" \\\\ line\\nnext");
}

TEST(PrometheusText, Values) {
  EXPECT_EQ(format_value(uint64_t(18446744073709551615ull)), "18446744073709551615");
  EXPECT_EQ(format_value(3.0), "3");
  EXPECT_EQ(format_value(0.0), "0");
  EXPECT_EQ(format_value(1e-06), "1e-06");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(33.554432), "33.554432");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::nan("")), "NaN");
}

TEST(PrometheusText, FamiliesGroupTheirSamples) {
  TextWriter w;
  w.declare("x_ios_total", MetricType::kCounter, "Requests");
  w.declare("x_size_bytes", MetricType::kGauge, "Size");
  for (int d = 0; d < 2; ++d) {
    // Declaring again as loops go is fine; the samples still come out family by family.
    w.declare("x_ios_total", MetricType::kCounter, "Requests");
    w.sample("x_ios_total", {{"device", std::to_string(d)}}, uint64_t(10 + d));
    w.sample("x_size_bytes", {{"device", std::to_string(d)}}, 4096.0);
  }
  EXPECT_EQ(w.text(),
            "# HELP x_ios_total Requests\n"
            "# TYPE x_ios_total counter\n"
            "x_ios_total{device=\"0\"} 10\n"
            "x_ios_total{device=\"1\"} 11\n"
            "# HELP x_size_bytes Size\n"
            "# TYPE x_size_bytes gauge\n"
            "x_size_bytes{device=\"0\"} 4096\n"
            "x_size_bytes{device=\"1\"} 4096\n");
}

TEST(PrometheusText, NoLabelsAndEscapedValues) {
  TextWriter w;
  w.declare("up", MetricType::kGauge, "Help with a \\ and\na newline");
  w.sample("up", {}, 1.0);
  w.sample("up", {{"path", "a\"b"}}, 0.5);
  EXPECT_EQ(w.text(),
            "# HELP up Help with a \\\\ and\\na newline\n"
            "# TYPE up gauge\n"
            "up 1\n"
            "up{path=\"a\\\"b\"} 0.5\n");
}

TEST(PrometheusText, HistogramIsCumulative) {
  TextWriter w;
  w.declare("lat_seconds", MetricType::kHistogram, "Latency");
  const std::vector<double> bounds{0.001, 0.002, 0.004};
  const std::vector<uint64_t> counts{3, 0, 2, 1};  // the last: above 4 ms
  w.histogram("lat_seconds", {{"op", "read"}}, bounds, counts, 0.0125);
  EXPECT_EQ(w.text(),
            "# HELP lat_seconds Latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.001\"} 3\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.002\"} 3\n"
            "lat_seconds_bucket{op=\"read\",le=\"0.004\"} 5\n"
            "lat_seconds_bucket{op=\"read\",le=\"+Inf\"} 6\n"
            "lat_seconds_sum{op=\"read\"} 0.0125\n"
            "lat_seconds_count{op=\"read\"} 6\n");
}

TEST(PrometheusText, HistogramWithoutLabels) {
  TextWriter w;
  w.declare("h_seconds", MetricType::kHistogram, "H");
  const std::vector<double> bounds{1};
  const std::vector<uint64_t> counts{0, 0};
  w.histogram("h_seconds", {}, bounds, counts, 0);
  EXPECT_NE(w.text().find("h_seconds_bucket{le=\"1\"} 0\nh_seconds_bucket{le=\"+Inf\"} 0\nh_seconds_sum 0\n"
                          "h_seconds_count 0\n"),
            std::string::npos)
      << w.text();
}

TEST(PrometheusText, NamingRulesAreEnforced) {
  TextWriter w;
  EXPECT_THROW(w.declare("bad-name_total", MetricType::kCounter, ""), NamingError);
  EXPECT_THROW(w.declare("ios", MetricType::kCounter, ""), NamingError);            // counter without _total
  EXPECT_THROW(w.declare("ios_total", MetricType::kGauge, ""), NamingError);        // gauge with _total
  EXPECT_THROW(w.declare("lat_total", MetricType::kHistogram, ""), NamingError);
  EXPECT_THROW(w.declare("lat_count", MetricType::kHistogram, ""), NamingError);
  EXPECT_THROW(w.declare("lat_bucket", MetricType::kHistogram, ""), NamingError);
  w.declare("ios_total", MetricType::kCounter, "a");
  EXPECT_THROW(w.declare("ios_total", MetricType::kCounter, "b"), NamingError);     // same name, other help
  EXPECT_THROW(w.declare("ios_total", MetricType::kGauge, "a"), NamingError);
  EXPECT_THROW(w.sample("undeclared", {}, 1.0), NamingError);
  EXPECT_THROW(w.sample("ios_total", {{"__x", "1"}}, 1.0), NamingError);
  EXPECT_THROW(w.sample("ios_total", {{"le", "1"}}, 1.0), NamingError);
  w.declare("lat_seconds", MetricType::kHistogram, "h");
  EXPECT_THROW(w.sample("lat_seconds", {}, 1.0), NamingError);
  const std::vector<double> bounds{1};
  const std::vector<uint64_t> counts{1, 2};
  EXPECT_THROW(w.histogram("ios_total", {}, bounds, counts, 0), NamingError);
  EXPECT_THROW(w.histogram("lat_seconds", {}, bounds, std::vector<uint64_t>{1}, 0), std::invalid_argument);
}

}  // namespace
}  // namespace ublkrdma::prom
