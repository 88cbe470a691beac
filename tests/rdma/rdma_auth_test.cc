// Authentication (protocol v9) against the real server, spoken byte by byte by a raw verbs
// client: every refusal grants nothing (no window in the ACCEPT, none in a failed AUTH_RESULT,
// no command served), a replayed AUTH_REQUEST fails on a new connection, a client that goes
// silent mid-exchange is dropped and counted, and the right key opens exactly the window the
// ACCEPT announced, zero-based.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/rdma/rdma_fixture.h"
#include "transport/auth.h"
#include "transport/auth_protocol.h"

namespace ublkrdma::test {
namespace {

class RdmaAuth : public RdmaTransport {
 protected:
  void SetUp() override {
    RdmaTransport::SetUp();
    if (IsSkipped()) return;
    key_ = auth::generate_key();
    char tmpl[] = "/tmp/ublk-rdma-auth-keys-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    keys_path_ = tmpl;
    std::string line = "host-a " + auth::format_key(key_) + " vol0\n";
    ASSERT_EQ(write(fd, line.data(), line.size()), ssize_t(line.size()));
    close(fd);
    server_options_.auth_keys_path = keys_path_;
    server_options_.server_id = "srv";
    start_server({server::parse_export_spec("vol0=ram:1M")});
  }
  void TearDown() override {
    RdmaTransport::TearDown();
    if (!keys_path_.empty()) unlink(keys_path_.c_str());
  }

  // A connection that asks for AUTH, PUSH_WRITES and PULL_READS, queue `queue`.
  std::unique_ptr<RawClient> connect(uint16_t queue = 0, uint16_t flags = wire::kConnectAuth) {
    wire::ConnectRequest req;
    req.flags = flags | wire::kConnectPushWrites | wire::kConnectPullReads;
    req.queue_depth = 4;
    req.max_io_bytes = 64 * 1024;
    req.queue_id = queue;
    req.session_id = 0x5e55;
    return connect_raw(addr_, port_, req, 64);
  }
  // The AUTH_REQUEST an honest client with `key` sends on `c`.
  std::array<uint8_t, wire::kAuthRequestSize> request(const RawClient& c, const auth::Key& key, uint16_t queue = 0) {
    auto aa = wire::decode_accept_auth(std::span<const uint8_t>(c.accept_bytes).subspan(wire::kAcceptDataSize));
    EXPECT_TRUE(aa.ok());
    auth::ProofInputs in;
    in.server_nonce = aa.value.server_nonce;
    in.client_nonce = auth::random_nonce();
    in.session_id = 0x5e55;
    in.queue_id = queue;
    in.export_name = "vol0";
    in.host_id = "host-a";
    in.server_id = wire::identity_view(aa.value.server_id);
    wire::AuthRequest r;
    r.client_nonce = in.client_nonce;
    wire::set_identity(r.host_id, "host-a");
    r.client_proof = auth::compute_proof(key, auth::Role::kClient, in);
    return wire::encode(r);
  }
  // The next message the server sends (receive slot i's bytes), or nullopt when none comes
  // within `limit` (or the connection broke).
  std::optional<std::vector<uint8_t>> next_message(RawClient& c, std::chrono::milliseconds limit = 10s) {
    auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      ibv_wc wc{};
      if (ibv_poll_cq(c.conn->cq(), 1, &wc) <= 0) continue;
      if (wc.status != IBV_WC_SUCCESS) return std::nullopt;
      if (wc.wr_id == RawClient::kSendWrId) continue;
      return std::vector<uint8_t>(c.slot(wc.wr_id), c.slot(wc.wr_id) + wc.byte_len);
    }
    return std::nullopt;
  }
  uint64_t failed_authentications() {
    return nlohmann::json::parse(server_->stats_json())["failed_authentications"].get<uint64_t>();
  }

  auth::Key key_{};
  std::string keys_path_;
};

TEST_F(RdmaAuth, NoAuthFlagIsRefusedAtConnect) {
  EXPECT_EQ(connect(0, 0), nullptr);
  EXPECT_GE(nlohmann::json::parse(server_->stats_json())["rejected_connections"].get<int>(), 1);
}

TEST_F(RdmaAuth, AcceptAnnouncesButGrantsNoWindow) {
  auto c = connect();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->accepted.auth());
  EXPECT_TRUE(c->accepted.push_writes());
  EXPECT_TRUE(c->accepted.pull_reads());
  EXPECT_EQ(c->accepted.window_rkey, 0u);
  EXPECT_EQ(c->accepted.window_addr, 0u);
  ASSERT_GE(c->accept_bytes.size(), wire::kAcceptDataSize + wire::kAcceptAuthSize);
  c->conn->close_st();
}

TEST_F(RdmaAuth, CommandBeforeAuthenticationIsNotServed) {
  auto c = connect();
  ASSERT_TRUE(c);
  std::memset(reinterpret_cast<void*>(c->data_buffer()), 0xee, 4096);
  ASSERT_EQ(c->send(wire::encode(wire::Command{wire::Opcode::kRead, 0, 0, 1, 0, 4096, c->mr->rkey, c->data_buffer()})), 0);
  auto m = next_message(*c);
  ASSERT_TRUE(m) << "the server sent nothing";
  auto r = wire::decode_auth_result(*m);
  ASSERT_TRUE(r.ok()) << "not an AUTH_RESULT: " << m->size() << " bytes";
  EXPECT_EQ(r.value.status, wire::AuthStatus::kMalformed);
  EXPECT_EQ(r.value.window_rkey, 0u);
  EXPECT_EQ(static_cast<uint8_t*>(reinterpret_cast<void*>(c->data_buffer()))[0], 0xee) << "the READ was served";
  EXPECT_FALSE(next_message(*c, 2s)) << "more came after the refusal";
  EXPECT_EQ(failed_authentications(), 1u);
  c->conn->close_st();
}

TEST_F(RdmaAuth, WrongKeyGetsNothingAndRightKeyOpensTheWindow) {
  auth::Key wrong = key_;
  wrong[0] ^= 1;
  auto bad = connect();
  ASSERT_TRUE(bad);
  ASSERT_EQ(bad->send_bytes(request(*bad, wrong)), 0);
  auto m = next_message(*bad);
  ASSERT_TRUE(m);
  auto r = wire::decode_auth_result(*m);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value.status, wire::AuthStatus::kFailed);
  EXPECT_EQ(r.value.window_rkey, 0u);
  EXPECT_EQ(r.value.server_proof, wire::Proof{});
  bad->conn->close_st();

  auto good = connect();
  ASSERT_TRUE(good);
  ASSERT_EQ(good->send_bytes(request(*good, key_)), 0);
  m = next_message(*good);
  ASSERT_TRUE(m);
  r = wire::decode_auth_result(*m);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.value.status, wire::AuthStatus::kOk);
  EXPECT_NE(r.value.window_rkey, 0u);
  EXPECT_EQ(r.value.window_addr, 0u);  // zero-based
  ASSERT_EQ(good->post_recv(0), 0);
  // The window is the export: an RDMA READ of its last block works, one past its end fails.
  auto rdma_read = [&](uint64_t off, uint32_t len) {
    ibv_sge sge{good->data_buffer(), len, good->mr->lkey};
    ibv_send_wr wr{}, *badwr = nullptr;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_READ;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr_id = 77;
    wr.wr.rdma.remote_addr = r.value.window_addr + off;
    wr.wr.rdma.rkey = r.value.window_rkey;
    EXPECT_EQ(ibv_post_send(good->conn->qp(), &wr, &badwr), 0);
    auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      ibv_wc wc;
      if (ibv_poll_cq(good->conn->cq(), 1, &wc) > 0 && wc.wr_id == 77) return wc.status;
    }
    return IBV_WC_GENERAL_ERR;
  };
  EXPECT_EQ(rdma_read((1 << 20) - 4096, 4096), IBV_WC_SUCCESS);
  EXPECT_EQ(rdma_read((1 << 20) - 4096, 8192), IBV_WC_REM_ACCESS_ERR);
  good->conn->close_st();
  EXPECT_EQ(failed_authentications(), 1u);
}

TEST_F(RdmaAuth, ReplayedRequestFailsOnANewConnection) {
  auto first = connect();
  ASSERT_TRUE(first);
  auto recorded = request(*first, key_);
  ASSERT_EQ(first->send_bytes(recorded), 0);
  auto m = next_message(*first);
  ASSERT_TRUE(m);
  ASSERT_EQ(wire::decode_auth_result(*m).value.status, wire::AuthStatus::kOk);
  first->conn->close_st();

  auto second = connect();
  ASSERT_TRUE(second);
  ASSERT_EQ(second->send_bytes(recorded), 0);  // another nonce from the server this time
  m = next_message(*second);
  ASSERT_TRUE(m);
  EXPECT_EQ(wire::decode_auth_result(*m).value.status, wire::AuthStatus::kFailed);
  second->conn->close_st();
}

TEST_F(RdmaAuth, SilentClientIsDroppedAndCounted) {
  auto c = connect();
  ASSERT_TRUE(c);
  auto deadline = Clock::now() + 15s;
  while (failed_authentications() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(failed_authentications(), 1u) << "the server still waits for a client that never authenticates";
  c->conn->close_st();
  // The server goes on: an honest client gets in.
  auto good = connect();
  ASSERT_TRUE(good);
  ASSERT_EQ(good->send_bytes(request(*good, key_)), 0);
  auto m = next_message(*good);
  ASSERT_TRUE(m);
  EXPECT_EQ(wire::decode_auth_result(*m).value.status, wire::AuthStatus::kOk);
  good->conn->close_st();
}

// The client target end to end: the right key serves IO; a wrong one is refused with the reason.
TEST_F(RdmaAuth, ClientTargetAuthenticates) {
  auto o = client_opts("vol0", 1, 4, 64 * 1024);
  o.auth.enabled = true;
  o.auth.host_id = "host-a";
  o.auth.key = key_;
  {
    auto factory = targets::make_rdma_target_factory(o);
    FakeQueue q(0, 4, 64 * 1024);
    auto t = factory->make_queue_target(0);
    t->start_st(q);
    fill(q.io_buffer(1), 8192, 9);
    t->submit_st(ublk::IoRequest{1, ublk::kOpWrite, 0, 4096, 8192, q.io_buffer(1)});
    ASSERT_TRUE(drive(*t, q, ublk::PollMode::kBusy, [&] { return q.results.size() == 1; }));
    std::memset(q.io_buffer(2), 0, 8192);
    t->submit_st(ublk::IoRequest{2, ublk::kOpRead, 0, 4096, 8192, q.io_buffer(2)});
    ASSERT_TRUE(drive(*t, q, ublk::PollMode::kBusy, [&] { return q.results.size() == 2; }));
    EXPECT_TRUE(check(q.io_buffer(2), 8192, 9));
    t->stop_st();
  }
  o.auth.key[3] ^= 0x10;
  try {
    targets::make_rdma_target_factory(o);
    ADD_FAILURE() << "a wrong key was accepted";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown host id or wrong key"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ublkrdma::test
