// The rbd backend against a real Ceph cluster: ci/ceph-up starts one (monitor, memstore OSD,
// manager, from Debian's packages) on loopback for this process and tears it down at the end.
// Everything goes through the BackendQueue interface the server's connection threads use, and
// the backend through the rbd module the server loads (build/ublk-rdma-rbd.so), as it ships.
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/errors.h"
#include "server/backend.h"
#include "server/export_spec.h"
#include "server/rbd_module.h"

namespace ublkrdma::server {
namespace {

namespace fs = std::filesystem;
using Op = wire::Opcode;

constexpr uint64_t kImageBytes = 64ull << 20;

struct Cluster {
  std::string dir;
  std::string conf;
  int port = 0;
};
Cluster* g_cluster = nullptr;

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

std::string rbd_cmd(const std::string& args) { return "rbd -c " + g_cluster->conf + " " + args + " >/dev/null"; }

class CephEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    auto* c = new Cluster;
    c->dir = (fs::temp_directory_path() / ("ublk-rdma-ceph-" + std::to_string(::getpid()))).string();
    c->port = 20000 + ::getpid() % 20000;
    std::string cmd = std::string(UBLK_RDMA_SOURCE_DIR) + "/ci/ceph-up --dir " + c->dir + " --port " +
                      std::to_string(c->port) + " --osd-bytes 512M --image img=64M --image ro=8M --client gw" +
                      " --client other >" + c->dir + ".log 2>&1";
    int rc = run(cmd);
    if (rc != 0) {
      std::ifstream log(c->dir + ".log");
      std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
      FAIL() << "ci/ceph-up failed (" << rc << "):\n" << text;
    }
    c->conf = c->dir + "/ceph.conf";
    g_cluster = c;
  }
  void TearDown() override {
    if (!g_cluster) return;
    run(std::string(UBLK_RDMA_SOURCE_DIR) + "/ci/ceph-up --down --dir " + g_cluster->dir);
    fs::remove(g_cluster->dir + ".log");
  }
};

ExportSpec rbd_spec(const std::string& image, const std::string& id = "gw") {
  ExportSpec s = parse_export_spec("vol=rbd:rbd/" + image);
  s.rbd.ceph_conf = g_cluster->conf;
  s.rbd.ceph_id = id;
  return s;
}

// Runs commands to completion, waiting on the queue's event fd like a connection thread.
class Runner {
 public:
  explicit Runner(BackendQueue& q) : q_(q) {}

  int submit(uint16_t tag, Op op, uint64_t offset, uint32_t length, std::byte* buf, uint32_t flags = 0) {
    return q_.submit(tag, op, offset, length, buf, flags);
  }

  // Waits for `n` completions; returns them in arrival order.
  std::vector<BackendCompletion> wait(size_t n) {
    std::vector<BackendCompletion> got;
    BackendCompletion out[8];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (got.size() < n) {
      int k = q_.poll(out);
      EXPECT_GE(k, 0);
      for (int i = 0; i < k; ++i) got.push_back(out[i]);
      if (k > 0) continue;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "timed out waiting for completions";
        break;
      }
      pollfd p{q_.event_fd(), POLLIN, 0};
      ::poll(&p, 1, 1000);
    }
    return got;
  }

  int32_t one(Op op, uint64_t offset, uint32_t length, std::byte* buf, uint32_t flags = 0) {
    int rc = submit(0, op, offset, length, buf, flags);
    if (rc < 0) return rc;
    auto c = wait(1);
    return c.empty() ? -ETIMEDOUT : c[0].result;
  }

 private:
  BackendQueue& q_;
};

std::vector<std::byte> pattern(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(seed);
  for (auto& b : v) b = std::byte(rng());
  return v;
}

TEST(RbdBackend, OpensWithSizeAndOps) {
  EXPECT_EQ(rbd_module_path(), "");
  auto b = open_backend(rbd_spec("img"), false);
  std::error_code ec;
  EXPECT_TRUE(fs::equivalent(rbd_module_path(), UBLK_RDMA_RBD_MODULE, ec)) << rbd_module_path();
  EXPECT_EQ(b->size(), kImageBytes);
  EXPECT_EQ(b->block_size(), 512u);
  EXPECT_FALSE(b->read_only());
  EXPECT_EQ(b->supported_ops(), kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes);
  EXPECT_TRUE(b->direct_memory().empty());
  EXPECT_NE(b->instance_id(), 0u);
  // The same image has the same id on another gateway (another cluster connection).
  EXPECT_EQ(open_rbd_backend(rbd_spec("img"), true)->instance_id(), b->instance_id());
}

// Many commands in flight at once, sizes 4k..1M, written then read back and compared.
TEST(RbdBackend, WritesAndReadsBackAtDepth) {
  auto b = open_rbd_backend(rbd_spec("img"), false);
  constexpr uint16_t kDepth = 32;
  auto q = b->open_queue({}, kDepth);
  Runner r(*q);
  std::mt19937 rng(7);
  struct Io {
    uint64_t offset;
    uint32_t length;
    std::vector<std::byte> data;
  };
  std::vector<Io> ios;
  uint64_t at = 0;
  for (uint16_t t = 0; t < kDepth; ++t) {
    uint32_t len = 4096u << (rng() % 9);  // 4k..1M
    ios.push_back({at, len, pattern(len, t + 1)});
    at += len;
    ASSERT_LE(at, kImageBytes);
    ASSERT_EQ(r.submit(t, Op::kWrite, ios[t].offset, len, ios[t].data.data(), t % 4 == 0 ? wire::kCmdFlagFua : 0), 0);
  }
  EXPECT_TRUE(q->busy());
  for (const auto& c : r.wait(kDepth)) EXPECT_EQ(c.result, int32_t(ios[c.tag].length)) << "tag " << c.tag;
  EXPECT_FALSE(q->busy());
  EXPECT_EQ(r.one(Op::kFlush, 0, 0, nullptr), 0);

  std::vector<std::vector<std::byte>> back(kDepth);
  for (uint16_t t = 0; t < kDepth; ++t) {
    back[t].assign(ios[t].length, std::byte{0});
    ASSERT_EQ(r.submit(t, Op::kRead, ios[t].offset, ios[t].length, back[t].data()), 0);
  }
  for (const auto& c : r.wait(kDepth)) EXPECT_EQ(c.result, int32_t(ios[c.tag].length));
  for (uint16_t t = 0; t < kDepth; ++t) EXPECT_TRUE(back[t] == ios[t].data) << "tag " << t;
}

// DISCARD and WRITE_ZEROES read back as zeros, whole objects and parts of them.
TEST(RbdBackend, DiscardAndWriteZeroesReadBackAsZeros) {
  auto b = open_rbd_backend(rbd_spec("img"), false);
  auto q = b->open_queue({}, 4);
  Runner r(*q);
  const uint64_t base = 16ull << 20;
  const uint32_t span = 12u << 20;  // three 4 MiB objects
  auto data = pattern(span, 99);
  ASSERT_EQ(r.one(Op::kWrite, base, span, data.data()), int32_t(span));
  struct Range {
    Op op;
    uint64_t offset;
    uint32_t length;
  };
  // A part of the first object, one whole object (the second), and a range across the third's start.
  for (Range z : {Range{Op::kDiscard, base + 4096, 8192}, Range{Op::kWriteZeroes, base + (4u << 20), 4u << 20},
                  Range{Op::kDiscard, base + (8u << 20) - 512, 1536}}) {
    ASSERT_EQ(r.one(z.op, z.offset, z.length, nullptr), 0);
    std::fill(data.begin() + ptrdiff_t(z.offset - base), data.begin() + ptrdiff_t(z.offset - base + z.length),
              std::byte{0});
  }
  std::vector<std::byte> back(span);
  ASSERT_EQ(r.one(Op::kRead, base, span, back.data()), int32_t(span));
  EXPECT_TRUE(back == data);
}

TEST(RbdBackend, RefusesOutOfRangeAndBadTags) {
  auto b = open_rbd_backend(rbd_spec("img"), false);
  auto q = b->open_queue({}, 2);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(q->submit(2, Op::kRead, 0, 4096, buf.data(), 0), -EINVAL);
  EXPECT_EQ(q->submit(0, Op::kRead, kImageBytes - 512, 4096, buf.data(), 0), -EINVAL);
  EXPECT_EQ(q->submit(0, Op::kWriteZeroes, kImageBytes, 512, nullptr, 0), -EINVAL);
  EXPECT_EQ(q->submit(0, Op::kRead, 0, 4096, nullptr, 0), -EINVAL);
  EXPECT_FALSE(q->busy());
}

// A snapshot is read-only and keeps the data it had when it was taken.
TEST(RbdBackend, SnapshotIsReadOnly) {
  auto data = pattern(1 << 20, 5);
  {
    auto b = open_rbd_backend(rbd_spec("ro"), false);
    auto q = b->open_queue({}, 1);
    ASSERT_EQ(Runner(*q).one(Op::kWrite, 0, 1 << 20, data.data()), 1 << 20);
  }
  ASSERT_EQ(run(rbd_cmd("snap create --no-progress rbd/ro@s1")), 0);
  {
    auto b = open_rbd_backend(rbd_spec("ro"), false);
    auto q = b->open_queue({}, 1);
    auto other = pattern(1 << 20, 6);
    ASSERT_EQ(Runner(*q).one(Op::kWrite, 0, 1 << 20, other.data()), 1 << 20);
  }
  auto b = open_rbd_backend(rbd_spec("ro@s1"), false);
  EXPECT_TRUE(b->read_only());
  EXPECT_EQ(b->supported_ops(), kSupportsFlush);
  auto q = b->open_queue({}, 1);
  Runner r(*q);
  std::vector<std::byte> back(1 << 20);
  EXPECT_EQ(r.one(Op::kWrite, 0, 4096, back.data()), -EROFS);
  EXPECT_EQ(r.one(Op::kDiscard, 0, 4096, nullptr), -EROFS);
  ASSERT_EQ(r.one(Op::kRead, 0, 1 << 20, back.data()), 1 << 20);
  EXPECT_TRUE(back == data);
  EXPECT_NE(b->instance_id(), open_rbd_backend(rbd_spec("ro"), true)->instance_id());
}

// Two gateways writing the same image in turn: librbd's exclusive lock moves between them and
// each sees the other's writes.
TEST(RbdBackend, TwoGatewaysTakeTurnsUnderTheExclusiveLock) {
  auto a = open_rbd_backend(rbd_spec("img"), false);
  auto b = open_rbd_backend(rbd_spec("img", "other"), false);
  auto qa = a->open_queue({}, 1);
  auto qb = b->open_queue({}, 1);
  Runner ra(*qa), rb(*qb);
  for (uint32_t round = 0; round < 3; ++round) {
    auto d = pattern(65536, 100 + round);
    Runner& w = round % 2 ? rb : ra;
    Runner& rd = round % 2 ? ra : rb;
    ASSERT_EQ(w.one(Op::kWrite, 1 << 20, 65536, d.data(), wire::kCmdFlagFua), 65536);
    std::vector<std::byte> back(65536);
    ASSERT_EQ(rd.one(Op::kRead, 1 << 20, 65536, back.data()), 65536);
    EXPECT_TRUE(back == d) << "round " << round;
  }
}

// Exports of one cluster with the same configuration and id share its connection.
TEST(RbdBackend, ExportsShareAClusterConnection) {
  ASSERT_EQ(rbd_cluster_connections(), 0u);
  {
    auto a = open_rbd_backend(rbd_spec("img"), false);
    auto b = open_rbd_backend(rbd_spec("ro"), true);
    EXPECT_EQ(rbd_cluster_connections(), 1u);
    auto c = open_rbd_backend(rbd_spec("img", "other"), true);
    EXPECT_EQ(rbd_cluster_connections(), 2u);
    // Both still serve after the other's handle is gone.
    c.reset();
    auto q = b->open_queue({}, 1);
    std::vector<std::byte> buf(4096);
    EXPECT_EQ(Runner(*q).one(Op::kRead, 0, 4096, buf.data()), 4096);
  }
  EXPECT_EQ(rbd_cluster_connections(), 0u);
}

template <typename F>
std::string error_of(F&& open) {
  try {
    open();
  } catch (const SetupError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RbdBackend, ClearErrors) {
  EXPECT_NE(error_of([] { open_rbd_backend(rbd_spec("nope"), false); }).find("no such image"), std::string::npos);
  std::string snap = error_of([] { open_rbd_backend(rbd_spec("img@nope"), false); });
  EXPECT_NE(snap.find("no such image or snapshot"), std::string::npos) << snap;
  ExportSpec pool = rbd_spec("img");
  pool.rbd.pool = "nopool";
  EXPECT_NE(error_of([&] { open_rbd_backend(pool, false); }).find("no pool 'nopool'"), std::string::npos);

  // A key the cluster does not know.
  std::string bad_keyring = g_cluster->dir + "/bad.keyring";
  {
    std::ofstream k(bad_keyring);
    k << "[client.gw]\n\tkey = AQBzSm9lAAAAABAAbm9uc2Vuc2Vub25zZW5zZQ==\n";
  }
  std::string bad_conf = g_cluster->dir + "/bad.conf";
  {
    std::ifstream in(g_cluster->conf);
    std::ofstream out(bad_conf);
    out << in.rdbuf() << "[client.gw]\nkeyring = " << bad_keyring << "\n";
  }
  ExportSpec wrong_key = rbd_spec("img");
  wrong_key.rbd.ceph_conf = bad_conf;
  wrong_key.rbd.connect_timeout_s = 10;
  std::string e = error_of([&] { open_rbd_backend(wrong_key, false); });
  EXPECT_NE(e.find("client.gw"), std::string::npos) << e;
  EXPECT_TRUE(e.find("refused the key") != std::string::npos || e.find("cannot connect") != std::string::npos) << e;

  // No cluster at all at that address: fails within the timeout, saying so.
  std::string down_conf = g_cluster->dir + "/down.conf";
  {
    std::ofstream out(down_conf);
    out << "[global]\nmon host = [v2:127.0.0.1:" << (g_cluster->port + 1) << "]\nkeyring = " << g_cluster->dir
        << "/ceph.client.gw.keyring\n";
  }
  ExportSpec down = rbd_spec("img");
  down.rbd.ceph_conf = down_conf;
  auto t0 = std::chrono::steady_clock::now();
  down.rbd.connect_timeout_s = 3;
  e = error_of([&] { open_rbd_backend(down, false); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  EXPECT_NE(e.find("did not answer within 3 s"), std::string::npos) << e;

  ExportSpec no_conf = rbd_spec("img");
  no_conf.rbd.ceph_conf = g_cluster->dir + "/missing.conf";
  EXPECT_NE(error_of([&] { open_rbd_backend(no_conf, false); }).find("cannot read the Ceph configuration"),
            std::string::npos);
}

TEST(RbdBackend, WritableNeedsExclusiveLock) {
  ASSERT_EQ(run(rbd_cmd("create --size 8M --image-feature layering rbd/nolock")), 0);
  std::string e = error_of([] { open_rbd_backend(rbd_spec("nolock"), false); });
  EXPECT_NE(e.find("exclusive-lock"), std::string::npos) << e;
  EXPECT_NE(e.find("rbd feature enable rbd/nolock exclusive-lock"), std::string::npos) << e;
  EXPECT_TRUE(open_rbd_backend(rbd_spec("nolock"), true)->read_only());
}

}  // namespace
}  // namespace ublkrdma::server

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new ublkrdma::server::CephEnvironment);
  return RUN_ALL_TESTS();
}
