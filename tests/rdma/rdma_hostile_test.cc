// A hostile client against the real server, byte by byte over raw verbs: CONNECTs with bad
// fields, a tag sent twice, messages too short, too long or of no command's length, and a
// client that vanishes between the ACCEPT and its AUTH_REQUEST. Each is refused (with its
// reason where the protocol has a place for one) and the server goes on serving others.
// (Malformed commands, floods beyond the depth, out-of-window RDMA: rdma_transport_test.cc;
// authentication: rdma_auth_test.cc.)
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "tests/rdma/rdma_fixture.h"
#include "transport/auth.h"

namespace ublkrdma::test {
namespace {

using RdmaHostile = RdmaTransport;

// CONNECT with these private data bytes; the outcome (rejected or connected).
transport::ConnectOutcome connect_bytes(const std::string& addr, uint16_t port, std::span<const uint8_t> pdata) {
  transport::ClientConnectParams p;
  p.address = addr;
  p.port = port;
  p.sizes = {16, 16, 64, 1};
  p.private_data = pdata;
  p.responder_resources = 16;
  return transport::connect_client(p, [](transport::Connection&) {});
}

// A good request's bytes, for the cases to spoil.
std::array<uint8_t, wire::kConnectRequestSize> good_connect() {
  wire::ConnectRequest req;
  req.queue_depth = 8;
  req.max_io_bytes = 64 * 1024;
  EXPECT_TRUE(req.set_name("vol0"));
  return wire::encode(req);
}

// The client's IO is served: one write and read back through the client target.
void still_serves(const std::string& addr, uint16_t port) {
  targets::RdmaTargetOptions o;
  o.paths = {targets::RdmaPath{addr, port}};
  o.export_name = "vol0";
  o.queue_depth = 4;
  o.max_io_bytes = 64 * 1024;
  o.conns_per_queue = 1;
  auto factory = targets::make_rdma_target_factory(o);
  FakeQueue q(0, 4, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  fill(q.io_buffer(0), 8192, 42);
  t->submit_st(ublk::IoRequest{0, ublk::kOpWrite, 0, 40960, 8192, q.io_buffer(0)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == 1; }));
  std::memset(q.io_buffer(1), 0, 8192);
  t->submit_st(ublk::IoRequest{1, ublk::kOpRead, 0, 40960, 8192, q.io_buffer(1)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == 2; }));
  EXPECT_EQ(q.results[0], 8192);
  EXPECT_EQ(q.results[1], 8192);
  EXPECT_TRUE(check(q.io_buffer(1), 8192, 42));
  t->stop_st();
}

TEST_F(RdmaHostile, BadConnectFieldsAreRefusedWithTheirReason) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  struct Case {
    const char* what;
    size_t offset;
    std::vector<uint8_t> bytes;  // written at offset
    wire::ConnectStatus want;
  };
  // ConnectRequest layout (docs/protocol.md, little-endian): magic 0, version 4, flags 6, queue 8,
  // depth 10, max IO 12, session 16, name 24.
  std::vector<Case> cases = {
      {"bad magic", 0, {0xde, 0xad, 0xbe, 0xef}, wire::ConnectStatus::kBadParams},
      {"version 0", 4, {0, 0}, wire::ConnectStatus::kBadVersion},
      {"a version from the future", 4, {0xff, 0x7f}, wire::ConnectStatus::kOk},  // negotiated down
      {"unknown flags", 6, {0x00, 0x80}, wire::ConnectStatus::kBadParams},
      {"depth 0", 10, {0, 0}, wire::ConnectStatus::kBadParams},
      {"depth 65535", 10, {0xff, 0xff}, wire::ConnectStatus::kBadParams},
      {"max IO not a multiple of 4 KiB", 12, {0x01, 0x10, 0x00, 0x00}, wire::ConnectStatus::kBadParams},
      {"max IO 0", 12, {0, 0, 0, 0}, wire::ConnectStatus::kBadParams},
      {"a name with a newline", 24, {'v', '\n', '0'}, wire::ConnectStatus::kUnknownExport},
      {"an empty name", 24, {0, 0, 0, 0}, wire::ConnectStatus::kUnknownExport},
      {"an unknown export", 24, {'v', 'o', 'l', '9'}, wire::ConnectStatus::kUnknownExport},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto pdata = good_connect();
    std::copy(c.bytes.begin(), c.bytes.end(), pdata.begin() + ptrdiff_t(c.offset));
    transport::ConnectOutcome out = connect_bytes(addr_, port_, pdata);
    if (c.want == wire::ConnectStatus::kOk) {
      ASSERT_FALSE(out.rejected);
      auto a = wire::decode_accept_data(out.private_data);
      ASSERT_TRUE(a.ok());
      EXPECT_EQ(a.value.version, wire::kVersion);
      out.conn->close_st();
      continue;
    }
    ASSERT_TRUE(out.rejected);
    auto r = wire::decode_reject_data(out.private_data);
    ASSERT_TRUE(r.ok()) << "the refusal carries no REJECT data";
    EXPECT_EQ(int(r.value.status), int(c.want)) << wire::connect_status_text(r.value.status);
  }
  // Truncated private data: fewer bytes than a CONNECT.
  auto pdata = good_connect();
  transport::ConnectOutcome out = connect_bytes(addr_, port_, std::span<const uint8_t>(pdata).first(20));
  EXPECT_TRUE(out.rejected);
  still_serves(addr_, port_);
}

// The raw client of these tests: version 9 with BATCH (several commands per SEND), no READ_IMM.
std::unique_ptr<RawClient> batch_client(const std::string& addr, uint16_t port) {
  wire::ConnectRequest req;
  req.flags = wire::kConnectBatch;
  req.queue_depth = 8;
  req.max_io_bytes = 64 * 1024;
  return connect_raw(addr, port, req, 64);
}

// A file export: a READ waits for the backend, so its tag is still in flight when the second
// command of the same SEND arrives (a ram export's READ is done within the pass).
TEST_F(RdmaHostile, TagSentTwiceIsRefusedBusy) {
  std::string path = "/tmp/rdma_hostile_test.img";
  {
    std::ofstream f(path, std::ios::trunc);
  }
  ASSERT_EQ(::truncate(path.c_str(), 1 << 20), 0);
  start_server({server::parse_export_spec("vol0=file:" + path)});
  auto client = batch_client(addr_, port_);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  auto cmd = [&](uint16_t tag, uint32_t gen) {
    return wire::encode(
        wire::Command{wire::Opcode::kRead, 0, tag, gen, 0, 4096, raw.mr->rkey, raw.data_buffer()});
  };
  // One SEND: tag 3 twice. The first is in flight when the second arrives.
  ASSERT_EQ(raw.send_batch({cmd(3, 1), cmd(3, 2)}), 0);
  std::vector<wire::Response> got;
  raw.collect(2, got);
  ASSERT_EQ(got.size(), 2u);
  std::map<uint32_t, int32_t> by_gen;
  for (const auto& r : got) by_gen[r.generation] = r.status;
  EXPECT_EQ(by_gen[1], 0);
  EXPECT_EQ(wire::status_to_errno(by_gen[2]), -EBUSY);
  auto s = nlohmann::json::parse(server_->stats_json());
  EXPECT_EQ(s["exports"]["vol0"]["rejected_commands"], 1);
  raw.conn->close_st();
  still_serves(addr_, port_);
  ::unlink(path.c_str());
}

TEST_F(RdmaHostile, MessagesOfNoCommandsLengthAreRefused) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  auto client = batch_client(addr_, port_);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  auto good = wire::encode(wire::Command{wire::Opcode::kRead, 0, 1, 9, 0, 4096, raw.mr->rkey, raw.data_buffer()});
  // Truncated: a command's first 20 bytes. Between one and two commands: 1.5 of them.
  for (size_t len : {size_t(20), wire::kCommandSize + wire::kCommandSize / 2}) {
    SCOPED_TRACE(len);
    std::vector<uint8_t> msg(len);
    for (size_t i = 0; i < len; ++i) msg[i] = good[i % wire::kCommandSize];
    ASSERT_EQ(raw.send_bytes(msg), 0);
    std::vector<wire::Response> got;
    raw.collect(1, got);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_NE(got[0].status, 0) << "a malformed message was served";
  }
  auto s = nlohmann::json::parse(server_->stats_json());
  EXPECT_GE(s["exports"]["vol0"]["rejected_commands"].get<uint64_t>(), 2u);
  raw.conn->close_st();
  still_serves(addr_, port_);
}

// Longer than any receive the server posted: the SEND fails on the NIC (the server's receive
// completes in error, the connection is closed) and the server goes on serving others.
TEST_F(RdmaHostile, OversizedMessageBreaksOnlyItsConnection) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  auto client = batch_client(addr_, port_);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  std::vector<uint8_t> big(64 * 1024, 0x41);
  ASSERT_EQ(raw.send_bytes(big), 0);
  auto deadline = Clock::now() + 20s;
  ibv_wc_status status = IBV_WC_SUCCESS;
  while (Clock::now() < deadline) {
    ibv_wc wc;
    if (ibv_poll_cq(raw.conn->cq(), 1, &wc) > 0 && wc.wr_id == RawClient::kSendWrId) {
      status = wc.status;
      break;
    }
  }
  EXPECT_NE(status, IBV_WC_SUCCESS) << "a 64 KiB SEND was taken by a receive of a few commands";
  raw.conn->close_st();
  still_serves(addr_, port_);
}

// Authentication: a client that disappears between the ACCEPT and its AUTH_REQUEST costs the
// server nothing it keeps, and others still authenticate and are served.
TEST_F(RdmaHostile, ClientThatVanishesMidAuthenticationLeavesNothing) {
  auto key = auth::generate_key();
  std::string path = "/tmp/rdma_hostile_auth_keys";
  {
    std::ofstream f(path, std::ios::trunc);
    f << "host-a " << auth::format_key(key) << " vol0\n";
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  server_options_.auth_keys_path = path;
  server_options_.server_id = "srv";
  start_server({server::parse_export_spec("vol0=ram:1M")});
  for (int i = 0; i < 3; ++i) {
    wire::ConnectRequest req;
    req.flags = wire::kConnectAuth;
    req.queue_depth = 8;
    req.max_io_bytes = 64 * 1024;
    auto client = connect_raw(addr_, port_, req, 16);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->accepted.auth());
    client->conn.reset();  // gone without a word
  }
  // The server noticed each (its connections are gone) and serves a client with the key.
  auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline) {
    auto s = nlohmann::json::parse(server_->stats_json());
    if (s["connections"].empty()) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(nlohmann::json::parse(server_->stats_json())["connections"].empty());
  auto o = client_opts("vol0", 1, 4, 64 * 1024);
  o.conns_per_queue = 1;
  o.auth.enabled = true;
  o.auth.host_id = "host-a";
  o.auth.key = key;
  auto factory = targets::make_rdma_target_factory(o);
  FakeQueue q(0, 4, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  t->submit_st(ublk::IoRequest{0, ublk::kOpRead, 0, 0, 4096, q.io_buffer(0)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == 1; }));
  EXPECT_EQ(q.results[0], 4096);
  t->stop_st();
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace ublkrdma::test
