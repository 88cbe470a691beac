#pragma once
// What the transport tests over real verbs share: the address of the RDMA device, a stand-in
// for ublk's queue loop (FakeQueue, drive), a fixture that runs an RdmaServer in-process, and a
// raw verbs client that speaks the wire protocol byte by byte (RawClient, connect_raw).
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <thread>

#include "base/errors.h"
#include "base/log.h"
#include "base/mapped_region.h"
#include "server/rdma_server.h"
#include "targets/rdma_target.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"
#include "ublk/queue_target.h"
#include "ublk/uapi.h"

namespace ublkrdma::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::string find_rdma_ipv4() {
  if (const char* a = std::getenv("UBLK_RDMA_TEST_ADDR"); a && *a) return a;
  auto devs = transport::rdma_device_names();
  if (devs.empty()) return "";
  std::string ifname;
  std::ifstream f("/sys/class/infiniband/" + devs[0] + "/ports/1/gid_attrs/ndevs/0");
  std::getline(f, ifname);
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) != 0) return "";
  std::string found;
  for (ifaddrs* p = ifa; p; p = p->ifa_next) {
    if (!p->ifa_addr || p->ifa_addr->sa_family != AF_INET) continue;
    if (!ifname.empty() && ifname != p->ifa_name) continue;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(p->ifa_addr)->sin_addr, buf, sizeof(buf));
    found = buf;
    break;
  }
  freeifaddrs(ifa);
  return found;
}

// Stands in for ublk's QueueLoop: a slab, a completion record, and the fd watches.
class FakeQueue final : public ublk::QueueContext {
 public:
  FakeQueue(uint16_t q, uint16_t depth, uint32_t max_io)
      : q_(q), depth_(depth), max_io_(max_io), slab_(MappedRegion::anonymous(size_t(depth) * max_io, true)) {}
  uint16_t queue_id() const override { return q_; }
  uint16_t depth() const override { return depth_; }
  uint32_t max_io_bytes() const override { return max_io_; }
  std::span<std::byte> io_slab() const override { return slab_.bytes(); }
  std::byte* io_buffer(uint16_t tag) const override {
    return static_cast<std::byte*>(slab_.get()) + size_t(tag) * max_io_;
  }
  void complete_st(uint16_t tag, int result) override {
    EXPECT_FALSE(results.count(tag)) << "tag " << tag << " completed twice";
    results[tag] = result;
  }
  io_uring_sqe* get_sqe_st() override {
    ADD_FAILURE() << "the rdma target must not use the ring";
    std::abort();
  }
  int register_fixed_buffers_st(std::span<const iovec>) override { return -EOPNOTSUPP; }
  void watch_fd_st(int fd, uint8_t token) override {
    for (auto& w : watches)
      if (w.second == token) return void(w.first = fd);  // replaced (-1: ended; poll skips it)
    watches.push_back({fd, token});
  }
  void report_capacity_st(uint64_t bytes) override { capacity = bytes; }

  std::map<uint16_t, int> results;
  uint64_t capacity = 0;  // what the target last reported (a resized export)
  std::vector<std::pair<int, uint8_t>> watches;

 private:
  uint16_t q_, depth_;
  uint32_t max_io_;
  MappedRegion slab_;
};

// Runs the target like the queue loop does in `mode` until `done()` or the deadline.
inline bool drive(ublk::QueueTarget& t, FakeQueue& q, ublk::PollMode mode, const std::function<bool()>& done,
           std::chrono::milliseconds limit = 20s) {
  auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    int n = t.poll_st();
    bool spin = mode == ublk::PollMode::kBusy ||
                (mode == ublk::PollMode::kHybrid && t.idle_advice_st() == ublk::IdleAdvice::kSpin);
    if (spin || n > 0) continue;
    if (!t.prepare_to_sleep_st()) continue;
    std::vector<pollfd> fds;
    for (auto [fd, tok] : q.watches) fds.push_back({fd, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    for (size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents) t.on_fd_ready_st(q.watches[i].second);
  }
  return true;
}

class RdmaTransport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (transport::rdma_device_names().empty())
      GTEST_SKIP() << "no RDMA device on this machine (the e2e suite runs this test in the guest with rxe)";
    addr_ = find_rdma_ipv4();
    ASSERT_FALSE(addr_.empty()) << "an RDMA device exists but no IPv4 address on its netdev: set UBLK_RDMA_TEST_ADDR";
    if (const char* l = std::getenv("UBLK_RDMA_LOG")) log::apply_levels(l);
  }
  void TearDown() override { stop_server(); }

  // On `port` (0: an ephemeral one); a server started before is destroyed first.
  void start_server(std::vector<server::ExportSpec> exports, std::vector<server::Cidr> allow = {},
                    uint16_t port = 0) {
    stop_server();
    server_.reset();
    server::ServerOptions o = server_options_;
    o.listen_addr = addr_;
    o.port = port;
    o.exports = std::move(exports);
    o.allow = std::move(allow);
    server_ = std::make_unique<server::RdmaServer>(o);
    port_ = server_->port();
    stop_ = false;
    server_thread_ = std::thread([this] { server_->run(stop_); });
  }
  void stop_server() {
    stop_ = true;
    if (server_thread_.joinable()) server_thread_.join();
  }

  targets::RdmaTargetOptions client_opts(const std::string& exp, uint16_t queues = 1, uint16_t depth = 16,
                                         uint32_t max_io = 128 * 1024) {
    targets::RdmaTargetOptions o;
    o.paths = {targets::RdmaPath{addr_, port_}};
    o.export_name = exp;
    o.nr_queues = queues;
    o.queue_depth = depth;
    o.max_io_bytes = max_io;
    o.io_timeout = 5000ms;
    return o;
  }

  std::string addr_;
  uint16_t port_ = 0;
  server::ServerOptions server_options_;  // what start_server does not set (e.g. authentication)
  std::unique_ptr<server::RdmaServer> server_;
  std::atomic<bool> stop_{false};
  std::thread server_thread_;
};

inline void fill(std::byte* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = std::byte(uint8_t((i * 131 + seed * 7) ^ (i >> 9)));
}
inline bool check(const std::byte* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != std::byte(uint8_t((i * 131 + seed * 7) ^ (i >> 9)))) return false;
  return true;
}

// Writes a pattern with every tag, reads it back into other tags, for a ram (direct) and a
// file-less null-free path, in each completion mode.
inline void write_read_roundtrip(ublk::QueueTarget& t, FakeQueue& q, ublk::PollMode mode, uint16_t depth, uint32_t len) {
  for (uint16_t tag = 0; tag < depth; ++tag) {
    fill(q.io_buffer(tag), len, tag + 1);
    t.submit_st(ublk::IoRequest{tag, ublk::kOpWrite, 0, uint64_t(tag) * len, len, q.io_buffer(tag)});
  }
  ASSERT_TRUE(drive(t, q, mode, [&] { return q.results.size() == depth; }));
  for (auto [tag, res] : q.results) ASSERT_EQ(res, int(len)) << "write tag " << tag;
  q.results.clear();
  for (uint16_t tag = 0; tag < depth; ++tag) {
    std::memset(q.io_buffer(tag), 0, len);
    // Read back what the mirror tag wrote.
    uint16_t src = uint16_t(depth - 1 - tag);
    t.submit_st(ublk::IoRequest{tag, ublk::kOpRead, 0, uint64_t(src) * len, len, q.io_buffer(tag)});
  }
  ASSERT_TRUE(drive(t, q, mode, [&] { return q.results.size() == depth; }));
  for (uint16_t tag = 0; tag < depth; ++tag) {
    ASSERT_EQ(q.results[tag], int(len)) << "read tag " << tag;
    ASSERT_TRUE(check(q.io_buffer(tag), len, uint32_t(depth - 1 - tag) + 1)) << "data of tag " << tag;
  }
  q.results.clear();
}

struct RawClient {
  static constexpr uint64_t kSendWrId = 1000;
  MappedRegion mem = MappedRegion::anonymous(1 << 20, true);
  ibv_mr* mr = nullptr;
  std::unique_ptr<transport::Connection> conn;
  wire::AcceptData accepted;
  std::vector<uint8_t> accept_bytes;  // the ACCEPT's private data as received

  uint64_t data_buffer() const { return reinterpret_cast<uint64_t>(mem.get()) + 512 * 1024; }
  uint8_t* slot(uint64_t i) const { return static_cast<uint8_t*>(mem.get()) + 4096u * i; }
  uint32_t recv_bytes = 64;  // 256 to take batched answers
  int post_recv(transport::Connection& c, uint64_t i) const {
    ibv_sge sge{reinterpret_cast<uint64_t>(slot(i)), recv_bytes, mr->lkey};
    ibv_recv_wr wr{}, *bad = nullptr;
    wr.wr_id = i;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    return ibv_post_recv(c.qp(), &wr, &bad);
  }
  int post_recv(uint64_t i) const { return post_recv(*conn, i); }
  int send(const std::array<uint8_t, wire::kCommandSize>& b) const {
    return post_send(ibv_sge{reinterpret_cast<uint64_t>(b.data()), uint32_t(b.size()), 0}, IBV_SEND_INLINE);
  }
  // Several commands in one SEND (from registered memory: too long to go inline).
  int send_batch(const std::vector<std::array<uint8_t, wire::kCommandSize>>& cmds, size_t extra_bytes = 0) const {
    uint8_t* out = static_cast<uint8_t*>(mem.get()) + 256 * 1024;
    for (size_t i = 0; i < cmds.size(); ++i) std::memcpy(out + i * wire::kCommandSize, cmds[i].data(), wire::kCommandSize);
    return post_send(
        ibv_sge{reinterpret_cast<uint64_t>(out), uint32_t(cmds.size() * wire::kCommandSize + extra_bytes), mr->lkey},
        0);
  }
  // Any bytes as one SEND (from registered memory).
  int send_bytes(std::span<const uint8_t> b) const {
    uint8_t* out = static_cast<uint8_t*>(mem.get()) + 256 * 1024;
    std::memcpy(out, b.data(), b.size());
    return post_send(ibv_sge{reinterpret_cast<uint64_t>(out), uint32_t(b.size()), mr->lkey}, 0);
  }
  // One signaled SEND of `sge`.
  int post_send(ibv_sge sge, unsigned flags) const {
    ibv_send_wr wr{}, *bad = nullptr;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = flags | IBV_SEND_SIGNALED;
    wr.wr_id = kSendWrId;
    return ibv_post_send(conn->qp(), &wr, &bad);
  }
  // The Response in receive slot i (check ok()); with BATCH, the j-th in it.
  wire::Decoded<wire::Response> response(uint64_t i, size_t j = 0) const {
    return wire::decode_response(std::span<const uint8_t>(slot(i) + j * wire::kResponseSize, wire::kResponseSize));
  }
  // Takes answer messages (a Response each, or with BATCH several) until `want` Responses are
  // in `got` or 10 s passed, reposting their receives; returns how many messages carried them.
  size_t collect(size_t want, std::vector<wire::Response>& got) const {
    size_t messages = 0;
    auto deadline = Clock::now() + 10s;
    while (got.size() < want && Clock::now() < deadline) {
      ibv_wc wc;
      if (ibv_poll_cq(conn->cq(), 1, &wc) <= 0) continue;
      EXPECT_EQ(wc.status, IBV_WC_SUCCESS) << ibv_wc_status_str(wc.status);
      if (wc.wr_id == kSendWrId) continue;
      EXPECT_EQ(wc.opcode, IBV_WC_RECV);
      size_t n = wire::messages_in(wc.byte_len, wire::kResponseSize, true);
      EXPECT_GT(n, 0u) << wc.byte_len << " bytes";
      for (size_t j = 0; j < n; ++j) {
        auto d = response(wc.wr_id, j);
        EXPECT_TRUE(d.ok());
        got.push_back(d.value);
      }
      ++messages;
      EXPECT_EQ(post_recv(wc.wr_id), 0);
    }
    return messages;
  }
};

// Connects a RawClient for export vol0 with `req` (name set here) and a receive posted per
// tag; null when the server refused.
inline std::unique_ptr<RawClient> connect_raw(const std::string& addr, uint16_t port, wire::ConnectRequest req,
                                       uint32_t send_wrs) {
  auto rc = std::make_unique<RawClient>();
  EXPECT_TRUE(req.set_name("vol0"));
  auto pdata = wire::encode(req);
  transport::ClientConnectParams p;
  p.address = addr;
  p.port = port;
  p.sizes = {send_wrs, req.queue_depth, 64, 1};
  p.private_data = pdata;
  p.responder_resources = 16;
  p.initiator_depth = (req.flags & wire::kConnectPullReads) ? 16 : 0;
  if (req.flags & wire::kConnectBatch) rc->recv_bytes = wire::kMaxBatch * wire::kResponseSize;
  auto out = transport::connect_client(p, [&](transport::Connection& c) {
    rc->mr = c.register_memory(rc->mem.get(), rc->mem.size(),
                               IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE,
                               "test memory");
    for (uint16_t i = 0; i < req.queue_depth; ++i) EXPECT_EQ(rc->post_recv(c, i), 0);
  });
  if (out.rejected) return nullptr;
  auto d = wire::decode_accept_data(out.private_data);
  EXPECT_TRUE(d.ok()) << wire::decode_error_text(d.error);
  rc->accepted = d.value;
  rc->accept_bytes = out.private_data;
  rc->conn = std::move(out.conn);
  return rc;
}

}  // namespace ublkrdma::test
