#include "server/export_set.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/errors.h"

namespace ublkrdma::server {
namespace {

using namespace std::chrono_literals;

// The fake cluster: rbd exports open only while it is up; everything else opens as null.
std::atomic<bool> g_cluster_up{false};
std::atomic<int> g_rbd_attempts{0};

std::unique_ptr<Backend> fake_open(const ExportSpec& spec, bool read_only) {
  ExportSpec s = spec;
  if (spec.kind == BackendKind::kRbd) {
    g_rbd_attempts.fetch_add(1);
    if (!g_cluster_up.load()) throw SetupError("export '" + spec.name + "': the cluster did not answer");
  }
  if (spec.kind == BackendKind::kFile) throw SetupError("export '" + spec.name + "': no such file");
  s.kind = BackendKind::kNull;
  s.size = 1 << 20;
  return open_backend(s, read_only);
}

std::vector<ExportSpec> specs(std::initializer_list<const char*> texts) {
  std::vector<ExportSpec> v;
  for (const char* t : texts) v.push_back(parse_export_spec(t));
  return v;
}

TEST(ExportSet, AllAvailable) {
  g_cluster_up = true;
  ExportSet set(specs({"a=null:1M", "b=rbd:p/i"}), 10ms, &fake_open);
  ASSERT_EQ(set.size(), 2u);
  EXPECT_NE(set.backend(0), nullptr);
  EXPECT_NE(set.backend(1), nullptr);
  EXPECT_EQ(set.unavailable_reason(1), "");
  EXPECT_EQ(set.spec(1).name, "b");
}

TEST(ExportSet, LocalExportThatFailsIsAConfigurationError) {
  g_cluster_up = true;
  EXPECT_THROW(ExportSet(specs({"a=null:1M", "f=file:/nonexistent"}), 10ms, &fake_open), SetupError);
}

TEST(ExportSet, RemoteExportIsUnavailableUntilItOpens) {
  g_cluster_up = false;
  g_rbd_attempts = 0;
  ExportSet set(specs({"a=null:1M", "b=rbd:p/i"}), 10ms, &fake_open);
  EXPECT_NE(set.backend(0), nullptr);  // the others serve
  EXPECT_EQ(set.backend(1), nullptr);
  EXPECT_NE(set.unavailable_reason(1).find("did not answer"), std::string::npos);
  // Retried while down.
  for (int i = 0; i < 500 && g_rbd_attempts.load() < 3; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_GE(g_rbd_attempts.load(), 3);
  EXPECT_EQ(set.backend(1), nullptr);
  g_cluster_up = true;
  for (int i = 0; i < 500 && !set.backend(1); ++i) std::this_thread::sleep_for(2ms);
  ASSERT_NE(set.backend(1), nullptr);
  EXPECT_EQ(set.unavailable_reason(1), "");
  EXPECT_EQ(set.backend(1)->size(), 1u << 20);
  // Once open it is never opened again.
  int attempts = g_rbd_attempts.load();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(g_rbd_attempts.load(), attempts);
}

TEST(ExportSet, StopsRetryingWhenDestroyed) {
  g_cluster_up = false;
  { ExportSet set(specs({"b=rbd:p/i"}), 1h, &fake_open); }  // returns at once, not after an hour
  SUCCEED();
}

}  // namespace
}  // namespace ublkrdma::server
