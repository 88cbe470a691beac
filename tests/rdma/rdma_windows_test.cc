// add --mr-per-io over real verbs: the client's IO buffers are reachable by the server only
// through a memory window bound for one request and invalidated before the request completes.
// A raw verbs "server" plays the hostile peer: it keeps a request's key and tries it again
// after the answer, writes into a WRITE's buffer, reads a READ's, and reaches past the
// request's buffer into the next one (from a READ's window and from a WRITE's); every such
// access fails with a remote access error and
// leaves the client's memory as it was. (rxe checks a window's access against the range of the
// MR it is bound over, not its own: the client binds over one MR per tag buffer, so on rxe the
// bound is the request's buffer, on hardware the request's bytes.)
#include <nlohmann/json.hpp>

#include "tests/rdma/rdma_fixture.h"

namespace ublkrdma::test {
namespace {

constexpr uint32_t kLen = 4096;

// One connection accepted by hand: the client's commands arrive in `mem`'s receive slots, and
// the test moves data and answers as it pleases.
class HostileServer {
 public:
  explicit HostileServer(const std::string& addr) : listener_(addr, 0) {}
  uint16_t port() const { return listener_.port(); }

  // Accepts the next connection: a file-like export of 16 MiB with no window of its own, so
  // every READ and WRITE names a client buffer.
  void accept() {
    auto req = listener_.next_request(10s);
    ASSERT_TRUE(req.has_value()) << "no CONNECT within 10 s";
    auto d = wire::decode_connect_request(req->private_data());
    ASSERT_TRUE(d.ok());
    depth_ = d.value.queue_depth;
    conn_ = req->take(transport::QpSizes{64, uint32_t(depth_) + 1, 64, 1});
    mr_ = conn_->register_memory(mem_.get(), mem_.size(), IBV_ACCESS_LOCAL_WRITE, "hostile server memory");
    for (uint16_t i = 0; i <= depth_; ++i) ASSERT_EQ(post_recv(i), 0);
    wire::AcceptData a;
    a.version = d.value.version;
    a.export_size = 16 << 20;
    a.queue_depth = depth_;
    a.max_io_bytes = d.value.max_io_bytes;
    a.export_flags = wire::kExportFlush;
    auto pdata = wire::encode(a);
    transport::accept_connection(*conn_, pdata, req->initiator_depth(), req->responder_resources());
  }

  // The next command the client sent (KEEP_ALIVEs are answered and skipped).
  wire::Command next_command() {
    for (;;) {
      ibv_wc wc = wait_completion(true);
      EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
      auto c = wire::decode_command(std::span<const uint8_t>(slot(wc.wr_id), wire::kCommandSize));
      EXPECT_EQ(post_recv(uint16_t(wc.wr_id)), 0);
      EXPECT_TRUE(c.ok());
      if (c.value.opcode != wire::Opcode::kKeepAlive) return c.value;
      answer(c.value, 0);
    }
  }

  // One RDMA READ or WRITE of `len` bytes between our data area and the client's (addr, rkey);
  // returns its completion status.
  ibv_wc_status rdma(ibv_wr_opcode op, uint64_t addr, uint32_t rkey, uint32_t len) {
    ibv_sge sge{reinterpret_cast<uint64_t>(data()), len, mr_->lkey};
    ibv_send_wr wr{}, *bad = nullptr;
    wr.wr_id = kRdmaId;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = addr;
    wr.wr.rdma.rkey = rkey;
    EXPECT_EQ(ibv_post_send(conn_->qp(), &wr, &bad), 0);
    return wait_completion(false).status;
  }

  void answer(const wire::Command& c, int32_t status) {
    wire::Response r{c.tag, c.opcode, c.generation, status};
    auto b = wire::encode(r);
    std::memcpy(out(), b.data(), b.size());
    ibv_sge sge{reinterpret_cast<uint64_t>(out()), uint32_t(b.size()), mr_->lkey};
    ibv_send_wr wr{}, *bad = nullptr;
    wr.wr_id = kSendId;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    ASSERT_EQ(ibv_post_send(conn_->qp(), &wr, &bad), 0);
    ASSERT_EQ(wait_completion(false).status, IBV_WC_SUCCESS);
  }

  std::byte* data() const { return static_cast<std::byte*>(mem_.get()) + (512 << 10); }
  // Gone without a word: the client sees the disconnect at once, not after the CM's timeouts.
  void close() { conn_.reset(); }

 private:
  static constexpr uint64_t kRdmaId = 1u << 20, kSendId = (1u << 20) + 1;
  uint8_t* slot(uint64_t i) const { return static_cast<uint8_t*>(mem_.get()) + 64 * i; }
  uint8_t* out() const { return static_cast<uint8_t*>(mem_.get()) + (256 << 10); }
  int post_recv(uint16_t i) const {
    ibv_sge sge{reinterpret_cast<uint64_t>(slot(i)), 64, mr_->lkey};
    ibv_recv_wr wr{}, *bad = nullptr;
    wr.wr_id = i;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    return ibv_post_recv(conn_->qp(), &wr, &bad);
  }
  // The next completion of the kind asked for (receive or send queue); others are kept.
  ibv_wc wait_completion(bool receive) {
    auto deadline = Clock::now() + 10s;
    for (;;) {
      for (size_t i = 0; i < stash_.size(); ++i) {
        if ((stash_[i].wr_id < kRdmaId) == receive) {
          ibv_wc wc = stash_[i];
          stash_.erase(stash_.begin() + ptrdiff_t(i));
          return wc;
        }
      }
      ibv_wc wc{};
      int n = ibv_poll_cq(conn_->cq(), 1, &wc);
      if (n == 1) {
        stash_.push_back(wc);
        continue;
      }
      if (Clock::now() > deadline) {
        ADD_FAILURE() << "no " << (receive ? "receive" : "send") << " completion within 10 s";
        return ibv_wc{.wr_id = 0, .status = IBV_WC_GENERAL_ERR};
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  transport::Listener listener_;
  std::unique_ptr<transport::Connection> conn_;
  MappedRegion mem_ = MappedRegion::anonymous(1 << 20, true);
  ibv_mr* mr_ = nullptr;
  uint16_t depth_ = 0;
  std::vector<ibv_wc> stash_;
};

class RdmaWindows : public RdmaTransport {
 protected:
  void TearDown() override {
    if (hostile_) hostile_->close();  // the client sees the disconnect at once
    if (target_) target_->stop_st();
    RdmaTransport::TearDown();
  }
  // A one-queue, one-connection client of a hostile server (which accepts it meanwhile), with
  // --mr-per-io as given: hostile(), queue() and target().
  void connect(bool mr_per_io) {
    hostile_ = std::make_unique<HostileServer>(addr_);
    port_ = hostile_->port();
    auto o = client_opts("vol0", 1, 8, 64 * 1024);
    o.conns_per_queue = 1;
    o.keep_alive_tmo = 0ms;
    o.io_timeout = 0ms;
    o.recovery.ctrl_loss_tmo = 0ms;  // a connection our hostility kills fails its IO, no reconnecting
    o.mr_per_io = mr_per_io;
    std::thread accepter([&] { hostile_->accept(); });
    auto factory = targets::make_rdma_target_factory(o);
    accepter.join();
    queue_ = std::make_unique<FakeQueue>(0, 8, 64 * 1024);
    target_ = factory->make_queue_target(0);
    target_->start_st(*queue_);
  }
  HostileServer& hostile() { return *hostile_; }
  std::byte* buffer(uint16_t tag) { return queue_->io_buffer(tag); }
  // Drives the target until tag `tag` completed; its result.
  int complete(uint16_t tag) {
    FakeQueue& q = *queue_;
    EXPECT_TRUE(drive(*target_, q, ublk::PollMode::kHybrid, [&] { return q.results.count(tag) > 0; }, 10s));
    return q.results.count(tag) ? q.results[tag] : INT32_MIN;
  }
  // Submits request `tag` (`op`, `len` bytes at offset 0) and returns its command as the
  // server received it.
  wire::Command request(uint8_t op, uint16_t tag, uint32_t len) {
    target_->submit_st(ublk::IoRequest{tag, op, 0, 0, len, buffer(tag)});
    for (int i = 0; i < 10; ++i) target_->poll_st();  // posts it
    wire::Command c = hostile_->next_command();
    EXPECT_EQ(uint8_t(c.opcode), op == ublk::kOpRead ? uint8_t(wire::Opcode::kRead) : uint8_t(wire::Opcode::kWrite));
    EXPECT_EQ(c.length, len);
    return c;
  }
  nlohmann::json stats() { return nlohmann::json::parse(target_->stats_json()); }

 private:
  std::unique_ptr<HostileServer> hostile_;
  std::unique_ptr<FakeQueue> queue_;
  std::unique_ptr<ublk::QueueTarget> target_;
};

std::vector<std::byte> pattern(uint32_t seed) {
  std::vector<std::byte> v(kLen);
  fill(v.data(), kLen, seed);
  return v;
}

TEST_F(RdmaWindows, KeyKeptFromAnAnsweredReadReachesNothing) {
  connect(true);
  HostileServer& server = hostile();
  std::memset(buffer(0), 0, kLen);
  wire::Command c = request(ublk::kOpRead, 0, kLen);
  EXPECT_NE(c.rkey, 0u);
  // In flight: the window takes the READ's data.
  fill(server.data(), kLen, 1);
  ASSERT_EQ(server.rdma(IBV_WR_RDMA_WRITE, c.addr, c.rkey, kLen), IBV_WC_SUCCESS);
  server.answer(c, 0);
  ASSERT_EQ(complete(0), int(kLen));
  EXPECT_TRUE(check(buffer(0), kLen, 1));
  auto st = stats();
  EXPECT_EQ(st["window_binds"], 1);
  EXPECT_EQ(st["window_invalidations"], 1);
  EXPECT_EQ(st["mr_per_io"], true);
  // Answered and completed: the same key writes nothing.
  fill(server.data(), kLen, 2);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_WRITE, c.addr, c.rkey, kLen), IBV_WC_REM_ACCESS_ERR);
  EXPECT_TRUE(check(buffer(0), kLen, 1)) << "a stale key changed the client's buffer";
}

// One forbidden access per test: the first remote access error ends the connection.
TEST_F(RdmaWindows, WriteWindowIsNotWritable) {
  connect(true);
  HostileServer& server = hostile();
  fill(buffer(1), kLen, 3);
  wire::Command c = request(ublk::kOpWrite, 1, kLen);
  // The WRITE's own data: readable, exactly.
  ASSERT_EQ(server.rdma(IBV_WR_RDMA_READ, c.addr, c.rkey, kLen), IBV_WC_SUCCESS);
  EXPECT_EQ(std::memcmp(server.data(), pattern(3).data(), kLen), 0);
  fill(server.data(), kLen, 9);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_WRITE, c.addr, c.rkey, kLen), IBV_WC_REM_ACCESS_ERR);
  EXPECT_TRUE(check(buffer(1), kLen, 3)) << "the server changed a WRITE's data";
}

TEST_F(RdmaWindows, WriteWindowStaysInsideItsBuffer) {
  connect(true);
  HostileServer& server = hostile();
  fill(buffer(2), kLen, 4);  // the next tag's buffer, right behind tag 1's 64 KiB
  wire::Command c = request(ublk::kOpWrite, 1, kLen);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_READ, c.addr + 64 * 1024 - kLen / 2, c.rkey, kLen), IBV_WC_REM_ACCESS_ERR);
  EXPECT_NE(std::memcmp(server.data() + kLen / 2, pattern(4).data(), kLen / 2), 0) << "the next buffer leaked";
}

TEST_F(RdmaWindows, ReadWindowIsNotReadable) {
  connect(true);
  HostileServer& server = hostile();
  fill(buffer(0), kLen, 5);  // what the buffer held before: not the server's to see
  wire::Command c = request(ublk::kOpRead, 0, kLen);
  std::memset(server.data(), 0, kLen);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_READ, c.addr, c.rkey, kLen), IBV_WC_REM_ACCESS_ERR);
  EXPECT_NE(std::memcmp(server.data(), pattern(5).data(), kLen), 0);
}

TEST_F(RdmaWindows, ReadWindowStaysInsideItsBuffer) {
  connect(true);
  HostileServer& server = hostile();
  fill(buffer(1), kLen, 6);  // the next tag's buffer, right behind tag 0's 64 KiB
  wire::Command c = request(ublk::kOpRead, 0, 64 * 1024);
  fill(server.data(), 2 * kLen, 7);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_WRITE, c.addr + 64 * 1024 - kLen, c.rkey, 2 * kLen), IBV_WC_REM_ACCESS_ERR);
  EXPECT_TRUE(check(buffer(1), kLen, 6)) << "a write past the window reached another buffer";
}

// The contrast: without --mr-per-io the key in a command opens the whole slab for the device's
// lifetime, which is what the option is for.
TEST_F(RdmaWindows, WithoutMrPerIoTheSlabStaysOpen) {
  connect(false);
  HostileServer& server = hostile();
  wire::Command c = request(ublk::kOpRead, 0, kLen);
  server.answer(c, 0);
  ASSERT_EQ(complete(0), int(kLen));
  fill(server.data(), kLen, 8);
  EXPECT_EQ(server.rdma(IBV_WR_RDMA_WRITE, c.addr + 64 * 1024, c.rkey, kLen), IBV_WC_SUCCESS);
  EXPECT_TRUE(check(buffer(1), kLen, 8));
  EXPECT_EQ(stats()["window_binds"], 0);
}

// The real server with --mr-per-io clients: every request the server moves is windowed, in
// every poll mode, on a file export (the server's RDMA for every READ and WRITE) and on a ram
// export without our own RDMA into it.
TEST_F(RdmaWindows, RealServerRoundTripsThroughWindows) {
  std::string path = "/tmp/rdma_windows_test.img";
  {
    std::ofstream f(path, std::ios::trunc);
  }
  ASSERT_EQ(::truncate(path.c_str(), 16 << 20), 0);
  start_server({server::parse_export_spec("disk=file:" + path), server::parse_export_spec("vol0=ram:16M")});
  for (const char* exp : {"disk", "vol0"}) {
    for (auto mode : {ublk::PollMode::kBusy, ublk::PollMode::kEvent, ublk::PollMode::kHybrid}) {
      SCOPED_TRACE(std::string(exp) + " mode " + std::to_string(int(mode)));
      auto o = client_opts(exp, 1, 16, 64 * 1024);
      o.poll_mode = mode;
      o.conns_per_queue = 2;
      o.push_max_bytes = 0;
      o.pull_max_bytes = 0;
      o.mr_per_io = true;
      auto factory = targets::make_rdma_target_factory(o);
      FakeQueue q(0, 16, 64 * 1024);
      auto t = factory->make_queue_target(0);
      t->start_st(q);
      write_read_roundtrip(*t, q, mode, 16, 64 * 1024);
      auto stats = nlohmann::json::parse(t->stats_json());
      EXPECT_EQ(stats["window_binds"], 32);
      EXPECT_EQ(stats["window_invalidations"], 32);
      EXPECT_EQ(stats["errors"], 0);
      EXPECT_EQ(stats["stale_completions"], 0);
      t->stop_st();
    }
  }
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace ublkrdma::test
