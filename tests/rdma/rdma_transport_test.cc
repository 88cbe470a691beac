// Transport tests over real verbs: the server (RdmaServer) and the client (the rdma target's
// queue targets, driven by an in-process stand-in for the ublk queue loop) in one process,
// talking over an RDMA device (rxe in the test guest). Skips, saying so, only when the
// machine has no RDMA device at all.
//
// The address: $UBLK_RDMA_TEST_ADDR, else the first IPv4 address of the netdev behind the
// first RDMA device.
#include <set>
#include <nlohmann/json.hpp>

#include "tests/rdma/rdma_fixture.h"

namespace ublkrdma::test {
namespace {

TEST_F(RdmaTransport, RamExportRoundTripInEveryPollMode) {
  start_server({server::parse_export_spec("vol0=ram:64M")});
  for (auto mode : {ublk::PollMode::kBusy, ublk::PollMode::kEvent, ublk::PollMode::kHybrid}) {
    SCOPED_TRACE(int(mode));
    auto o = client_opts("vol0", 2, 16, 64 * 1024);
    o.poll_mode = mode;
    auto factory = targets::make_rdma_target_factory(o);
    EXPECT_EQ(factory->geometry().size_bytes, 64ull << 20);
    EXPECT_FALSE(factory->geometry().read_only);
    for (uint16_t qid = 0; qid < 2; ++qid) {
      FakeQueue q(qid, 16, 64 * 1024);
      auto t = factory->make_queue_target(qid);
      t->start_st(q);
      write_read_roundtrip(*t, q, mode, 16, 64 * 1024);
      auto stats = nlohmann::json::parse(t->stats_json());
      EXPECT_EQ(stats["copied_bytes"], 0);
      EXPECT_EQ(stats["rdma_bytes"], 2u * 16 * 64 * 1024);
      EXPECT_EQ(stats["pulled_reads"], 16);  // a ram export: READs are our own RDMA READs (PULL_READS)
      EXPECT_EQ(stats["errors"], 0);
      EXPECT_EQ(stats["stale_completions"], 0);
      t->stop_st();
    }
  }
  auto s = nlohmann::json::parse(server_->stats_json());
  EXPECT_EQ(s["exports"]["vol0"]["copied_bytes"], 0);
}

TEST_F(RdmaTransport, FileExportThroughBufferPool) {
  std::string path = "/tmp/rdma_transport_test.img";
  {
    std::ofstream f(path, std::ios::trunc);
  }
  ASSERT_EQ(::truncate(path.c_str(), 16 << 20), 0);
  start_server({server::parse_export_spec("disk=file:" + path)});
  auto factory = targets::make_rdma_target_factory(client_opts("disk", 1, 8, 64 * 1024));
  EXPECT_EQ(factory->geometry().size_bytes, 16ull << 20);
  FakeQueue q(0, 8, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  write_read_roundtrip(*t, q, ublk::PollMode::kHybrid, 8, 64 * 1024);
  // FLUSH, DISCARD and WRITE_ZEROES reach the file and answer.
  t->submit_st(ublk::IoRequest{0, ublk::kOpFlush, 0, 0, 0, q.io_buffer(0)});
  t->submit_st(ublk::IoRequest{1, ublk::kOpWriteZeroes, 0, 0, 64 * 1024, q.io_buffer(1)});
  t->submit_st(ublk::IoRequest{2, ublk::kOpWrite, ublk::kIoFFua, 1 << 20, 4096, q.io_buffer(2)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == 3; }));
  EXPECT_GE(q.results[0], 0);
  EXPECT_GE(q.results[1], 0);
  EXPECT_EQ(q.results[2], 4096);
  q.results.clear();
  t->submit_st(ublk::IoRequest{3, ublk::kOpRead, 0, 0, 64 * 1024, q.io_buffer(3)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == 1; }));
  const std::byte* p = q.io_buffer(3);
  EXPECT_TRUE(std::all_of(p, p + 64 * 1024, [](std::byte b) { return b == std::byte{0}; })) << "zeroed range reads zeros";
  t->stop_st();
  ::unlink(path.c_str());
}

// A server restart with requests in flight and more arriving while it is gone: the connections
// are rebuilt (on the reconnect thread, handed to the queue thread: TSan watches that) and every
// request is reissued and completes with the file's data.
TEST_F(RdmaTransport, ServerRestartReissuesHeldRequests) {
  std::string path = "/tmp/rdma_transport_restart.img";
  {
    std::ofstream f(path, std::ios::trunc);
  }
  ASSERT_EQ(::truncate(path.c_str(), 16 << 20), 0);
  auto spec = server::parse_export_spec("disk=file:" + path);
  start_server({spec});
  auto opts = client_opts("disk", 1, 8, 64 * 1024);
  opts.conns_per_queue = 2;
  opts.recovery.reconnect_delay = 200ms;
  auto factory = targets::make_rdma_target_factory(opts);
  FakeQueue q(0, 8, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  for (uint16_t tag = 0; tag < 8; ++tag) {
    fill(q.io_buffer(tag), 64 * 1024, tag + 1);
    t->submit_st(ublk::IoRequest{tag, ublk::kOpWrite, 0, uint64_t(tag) << 16, 64 * 1024, q.io_buffer(tag)});
  }
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] { return q.results.size() == 8; }));
  for (auto [tag, r] : q.results) EXPECT_EQ(r, 64 * 1024) << tag;
  q.results.clear();

  uint16_t port = port_;
  stop_server();
  server_.reset();  // its connections and listener are gone: the client sees DISCONNECTED
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] {
    return nlohmann::json::parse(t->stats_json())["state"] == "reconnecting";
  }, 15s));
  for (uint16_t tag = 0; tag < 8; ++tag) {
    std::memset(q.io_buffer(tag), 0, 64 * 1024);
    t->submit_st(ublk::IoRequest{tag, ublk::kOpRead, 0, uint64_t(tag) << 16, 64 * 1024, q.io_buffer(tag)});
  }
  EXPECT_EQ(nlohmann::json::parse(t->stats_json())["held"], 8);
  start_server({spec}, {}, port);
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] { return q.results.size() == 8; }, 30s));
  for (uint16_t tag = 0; tag < 8; ++tag) {
    EXPECT_EQ(q.results[tag], 64 * 1024) << tag;
    EXPECT_TRUE(check(q.io_buffer(tag), 64 * 1024, tag + 1)) << "tag " << tag << " read other data";
  }
  // The reads may all have gone out on the first connection back (depth 4 each: the rest
  // waited for its slots); the other one follows.
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] {
    return nlohmann::json::parse(t->stats_json())["state"] == "live";
  }, 15s));
  auto s = nlohmann::json::parse(t->stats_json());
  EXPECT_EQ(s["held"], 0);
  EXPECT_EQ(s["errors"], 0);
  for (auto& c : s["connection_states"]) EXPECT_GE(c["reconnects"].get<int>(), 1);
  t->stop_st();
  ::unlink(path.c_str());
}

TEST_F(RdmaTransport, UnknownExportIsRefusedWithTheReason) {
  start_server({server::parse_export_spec("vol0=ram:16M")});
  try {
    targets::make_rdma_target_factory(client_opts("nosuch"));
    FAIL() << "connect to an unknown export succeeded";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("no export named 'nosuch'"), std::string::npos) << e.what();
    EXPECT_EQ(e.errno_value(), ENOENT);
  }
  auto s = nlohmann::json::parse(server_->stats_json());
  EXPECT_EQ(s["rejected_connections"], 1);
}

TEST_F(RdmaTransport, AllowListRefusesOtherPeers) {
  start_server({server::parse_export_spec("vol0=ram:16M")}, {server::parse_cidr("198.51.100.0/24")});
  try {
    targets::make_rdma_target_factory(client_opts("vol0"));
    FAIL() << "a peer outside --allow connected";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("denies access"), std::string::npos) << e.what();
  }
}

TEST_F(RdmaTransport, NothingListeningIsConnectionRefused) {
  // A port nobody listens on (server never started).
  port_ = 18599;
  try {
    targets::make_rdma_target_factory(client_opts("vol0"));
    FAIL() << "connected to nothing";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("refused"), std::string::npos) << e.what();
  }
}

TEST_F(RdmaTransport, ReadOnlyExportRefusesWrites) {
  auto spec = server::parse_export_spec("ro=ram:16M");
  spec.read_only = true;
  start_server({spec});
  auto factory = targets::make_rdma_target_factory(client_opts("ro", 1, 4, 64 * 1024));
  EXPECT_TRUE(factory->geometry().read_only);
  FakeQueue q(0, 4, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  t->submit_st(ublk::IoRequest{0, ublk::kOpWrite, 0, 0, 4096, q.io_buffer(0)});
  t->submit_st(ublk::IoRequest{1, ublk::kOpRead, 0, 0, 4096, q.io_buffer(1)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kBusy, [&] { return q.results.size() == 2; }));
  EXPECT_EQ(q.results[0], -EROFS);
  EXPECT_EQ(q.results[1], 4096);
  t->stop_st();
}

// A client speaking the wire protocol by hand (raw verbs), for what the client target never
// does: malformed commands, not taking answers. Receive slot i is the 64 bytes at 4096 * i of
// `mem`; IO data goes to and from data_buffer(). Every SEND is signaled with kSendWrId.
// Raw commands the client target would never send: each gets an error answer, the server
// survives and still serves a good command on the same connection.
TEST_F(RdmaTransport, MalformedCommandsGetErrorAnswers) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  constexpr uint16_t kDepth = 8;
  wire::ConnectRequest req;
  req.version = 1;  // a version 1 client: every answer, the good READ's too, is a Response SEND
  req.queue_depth = kDepth;
  req.max_io_bytes = 64 * 1024;
  auto client = connect_raw(addr_, port_, req, 64);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  auto send = [&](const std::array<uint8_t, wire::kCommandSize>& b) { ASSERT_EQ(raw.send(b), 0); };
  auto answer = [&]() -> wire::Response {
    auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      ibv_wc wc;
      int n = ibv_poll_cq(raw.conn->cq(), 1, &wc);
      if (n <= 0) continue;
      EXPECT_EQ(wc.status, IBV_WC_SUCCESS) << ibv_wc_status_str(wc.status);
      if (wc.wr_id == RawClient::kSendWrId) continue;  // our send
      EXPECT_EQ(wc.opcode, IBV_WC_RECV) << "an answer other than a Response SEND";
      auto d = raw.response(wc.wr_id);
      EXPECT_TRUE(d.ok());
      EXPECT_EQ(raw.post_recv(wc.wr_id), 0);
      return d.value;
    }
    ADD_FAILURE() << "no answer";
    return {};
  };
  uint64_t buf = raw.data_buffer();
  auto cmd = [&](wire::Opcode op, uint16_t tag, uint64_t off, uint32_t len) {
    return wire::Command{op, 0, tag, 7, off, len, raw.mr->rkey, buf};
  };
  struct Case {
    const char* what;
    std::array<uint8_t, wire::kCommandSize> bytes;
    int want;
  };
  auto bad_opcode = wire::encode(cmd(wire::Opcode::kRead, 1, 0, 4096));
  bad_opcode[0] = 9;
  auto reserved = wire::encode(cmd(wire::Opcode::kRead, 1, 0, 4096));
  reserved[40] = 1;
  std::vector<Case> cases = {
      {"beyond the export", wire::encode(cmd(wire::Opcode::kRead, 1, (1 << 20) - 4096, 8192)), -ERANGE},
      {"offset overflow", wire::encode(cmd(wire::Opcode::kWrite, 1, ~0ull - 100, 4096)), -ERANGE},
      {"longer than max IO", wire::encode(cmd(wire::Opcode::kRead, 1, 0, 128 * 1024)), -EINVAL},
      {"misaligned", wire::encode(cmd(wire::Opcode::kRead, 1, 100, 4096)), -EINVAL},
      {"tag beyond depth", wire::encode(cmd(wire::Opcode::kRead, kDepth + 3, 0, 4096)), -EINVAL},
      {"zero length", wire::encode(cmd(wire::Opcode::kWrite, 1, 0, 0)), -EINVAL},
      {"unknown opcode", bad_opcode, -EINVAL},
      {"reserved bytes", reserved, -EINVAL},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    send(c.bytes);
    wire::Response r = answer();
    EXPECT_EQ(wire::status_to_errno(r.status), c.want);
    EXPECT_EQ(r.generation, 7u);
  }
  // Still alive: a good write then read.
  std::memset(reinterpret_cast<void*>(buf), 0x5a, 4096);
  send(wire::encode(cmd(wire::Opcode::kWrite, 2, 8192, 4096)));
  EXPECT_EQ(answer().status, 0);
  std::memset(reinterpret_cast<void*>(buf), 0, 4096);
  send(wire::encode(cmd(wire::Opcode::kRead, 3, 8192, 4096)));
  EXPECT_EQ(answer().status, 0);
  EXPECT_EQ(static_cast<uint8_t*>(reinterpret_cast<void*>(buf))[4095], 0x5a);
  auto s = nlohmann::json::parse(server_->stats_json());
  EXPECT_EQ(s["exports"]["vol0"]["rejected_commands"], cases.size());
  raw.conn->close_st();
}

// A client that sends commands but does not take the answers (no receives reposted): the
// server's answers cannot leave, so it stops taking commands (holds back their receives)
// instead of queueing without bound. Once the client takes answers again, every command is
// answered and the connection still serves IO.
TEST_F(RdmaTransport, ClientThatDoesNotTakeAnswersStallsOnlyItself) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  constexpr uint16_t kDepth = 8;
  constexpr int kFlood = 100;  // > the server's send queue + batch + parked commands
  wire::ConnectRequest req;
  req.queue_depth = kDepth;
  req.max_io_bytes = 64 * 1024;
  auto client = connect_raw(addr_, port_, req, kFlood + 8);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  // Malformed on purpose (tag beyond the depth): each is answered -EINVAL without holding a tag.
  std::vector<std::array<uint8_t, wire::kCommandSize>> cmds(kFlood);
  for (int i = 0; i < kFlood; ++i) {
    cmds[size_t(i)] = wire::encode(
        wire::Command{wire::Opcode::kRead, 0, uint16_t(kDepth + 1), uint32_t(i), 0, 4096, raw.mr->rkey, raw.data_buffer()});
    ASSERT_EQ(raw.send(cmds[size_t(i)]), 0);
  }
  // Let the server run into the wall: its answers wait on our empty receive queue.
  std::this_thread::sleep_for(2s);
  auto conn_stats = [&] { return nlohmann::json::parse(server_->stats_json())["connections"][0]; };
  // How far the server got depends on the device: rxe stops delivering our SENDs after a few
  // dozen while the server's answers wait (then nothing is held back by the server itself);
  // a NIC that keeps delivering makes the server hold commands back (parked_max > 0).
  auto stalled = conn_stats();
  EXPECT_LT(stalled["commands"].get<uint64_t>(), uint64_t(kFlood)) << stalled.dump();
  // Now take the answers: every command gets one, in order.
  int answers = 0, sends_done = 0;
  auto deadline = Clock::now() + 30s;
  while ((answers < kFlood || sends_done < kFlood) && Clock::now() < deadline) {
    ibv_wc wc;
    if (ibv_poll_cq(raw.conn->cq(), 1, &wc) <= 0) continue;
    ASSERT_EQ(wc.status, IBV_WC_SUCCESS) << ibv_wc_status_str(wc.status);
    if (wc.wr_id == RawClient::kSendWrId) {
      ++sends_done;
      continue;
    }
    auto d = raw.response(wc.wr_id);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(wire::status_to_errno(d.value.status), -EINVAL);
    EXPECT_EQ(d.value.generation, uint32_t(answers));
    ++answers;
    ASSERT_EQ(raw.post_recv(wc.wr_id), 0);
  }
  EXPECT_EQ(answers, kFlood);
  EXPECT_EQ(sends_done, kFlood);
  EXPECT_EQ(conn_stats()["rejected_commands"].get<uint64_t>(), uint64_t(kFlood));
  // Still serving: a good write and read on the same connection.
  uint64_t buf = raw.data_buffer();
  auto roundtrip = [&](wire::Opcode op, uint32_t gen) {
    EXPECT_EQ(raw.send(wire::encode(wire::Command{op, 0, 1, gen, 8192, 4096, raw.mr->rkey, buf})), 0);
    auto until = Clock::now() + 10s;
    while (Clock::now() < until) {
      ibv_wc wc;
      if (ibv_poll_cq(raw.conn->cq(), 1, &wc) <= 0 || wc.wr_id == RawClient::kSendWrId) continue;
      EXPECT_EQ(wc.status, IBV_WC_SUCCESS);
      auto d = raw.response(wc.wr_id);
      EXPECT_EQ(raw.post_recv(wc.wr_id), 0);
      return d.ok() && d.value.generation == gen ? d.value.status : -1;
    }
    return -2;
  };
  std::memset(reinterpret_cast<void*>(buf), 0x6b, 4096);
  EXPECT_EQ(roundtrip(wire::Opcode::kWrite, 500), 0);
  std::memset(reinterpret_cast<void*>(buf), 0, 4096);
  EXPECT_EQ(roundtrip(wire::Opcode::kRead, 501), 0);
  EXPECT_EQ(static_cast<uint8_t*>(reinterpret_cast<void*>(buf))[100], 0x6b);
  raw.conn->close_st();
}

// BATCH (v3): four commands in one SEND are all served, and their four answers come back
// together in one SEND; a torn message (not a whole number of commands) is refused as malformed
// and the connection goes on.
TEST_F(RdmaTransport, BatchedCommandsGetBatchedAnswers) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  constexpr uint16_t kDepth = 8;
  wire::ConnectRequest req;
  req.flags = wire::kConnectBatch;  // no READ_IMM: every answer is a Response
  req.queue_depth = kDepth;
  req.max_io_bytes = 64 * 1024;
  auto client = connect_raw(addr_, port_, req, 64);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  uint64_t buf = raw.data_buffer();
  auto* data = static_cast<uint8_t*>(reinterpret_cast<void*>(buf));
  auto cmd = [&](wire::Opcode op, uint16_t tag, uint32_t gen) {
    return wire::encode(wire::Command{op, 0, tag, gen, uint64_t(tag) * 4096, 4096, raw.mr->rkey, buf + tag * 4096u});
  };
  std::vector<std::array<uint8_t, wire::kCommandSize>> writes, reads;
  for (uint16_t tag = 0; tag < 4; ++tag) {
    std::memset(data + tag * 4096u, 0x30 + tag, 4096);
    writes.push_back(cmd(wire::Opcode::kWrite, tag, 10 + tag));
    reads.push_back(cmd(wire::Opcode::kRead, tag, 20 + tag));
  }
  ASSERT_EQ(raw.send_batch(writes), 0);
  std::vector<wire::Response> got;
  EXPECT_EQ(raw.collect(4, got), 1u) << "four answers, one message";
  ASSERT_EQ(got.size(), 4u);
  std::set<uint16_t> tags;
  for (const auto& r : got) {
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.opcode, wire::Opcode::kWrite);
    EXPECT_EQ(r.generation, 10u + r.tag);
    tags.insert(r.tag);
  }
  EXPECT_EQ(tags.size(), 4u);
  std::memset(data, 0, 4 * 4096);
  ASSERT_EQ(raw.send_batch(reads), 0);
  got.clear();
  EXPECT_EQ(raw.collect(4, got), 1u);
  ASSERT_EQ(got.size(), 4u);
  for (const auto& r : got) {
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.generation, 20u + r.tag);
  }
  for (uint16_t tag = 0; tag < 4; ++tag) EXPECT_EQ(data[tag * 4096u + 100], 0x30 + tag) << "tag " << tag;
  // Two commands and a torn third: only the first is answered, as malformed; nothing moved.
  std::memset(data, 0x77, 4096);
  ASSERT_EQ(raw.send_batch({cmd(wire::Opcode::kWrite, 5, 30), cmd(wire::Opcode::kWrite, 6, 31)}, 20), 0);
  got.clear();
  raw.collect(1, got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(wire::status_to_errno(got[0].status), -EINVAL);
  EXPECT_EQ(got[0].tag, 5);
  auto conn = nlohmann::json::parse(server_->stats_json())["connections"][0];
  EXPECT_EQ(conn["batch"], true);
  EXPECT_EQ(conn["commands"].get<uint64_t>(), 9u);
  EXPECT_EQ(conn["rejected_commands"].get<uint64_t>(), 1u);
  EXPECT_EQ(conn["answer_sends"].get<uint64_t>(), 3u);
  // Still serving, one command per SEND too.
  ASSERT_EQ(raw.send(cmd(wire::Opcode::kRead, 1, 40)), 0);
  got.clear();
  raw.collect(1, got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, 0);
  EXPECT_EQ(data[4096 + 5], 0x31);
  raw.conn->close_st();
}

// PULL_READS (v6): the client reads a ram export's memory with its own RDMA READ, and only it:
// the window's memory region covers exactly the export, so a READ past its end fails on the
// NIC (remote access error), not in the server's memory, and breaks only that connection.
TEST_F(RdmaTransport, PulledReadsStayInsideTheExport) {
  start_server({server::parse_export_spec("vol0=ram:1M")});
  wire::ConnectRequest req;
  req.flags = wire::kConnectPullReads | wire::kConnectPushWrites;
  req.queue_depth = 8;
  req.max_io_bytes = 64 * 1024;
  auto client = connect_raw(addr_, port_, req, 64);
  ASSERT_TRUE(client);
  RawClient& raw = *client;
  ASSERT_TRUE(raw.accepted.pull_reads());
  ASSERT_TRUE(raw.accepted.push_writes());
  ASSERT_EQ(raw.accepted.window_addr, 0u);  // v9: the window is zero-based
  uint64_t buf = raw.data_buffer();
  auto* data = static_cast<uint8_t*>(reinterpret_cast<void*>(buf));
  // One signaled RDMA WRITE or READ of `len` bytes at export offset `off`; the completion status.
  auto rdma = [&](ibv_wr_opcode op, uint64_t off, uint32_t len) {
    ibv_sge sge{buf, len, raw.mr->lkey};
    ibv_send_wr wr{}, *bad = nullptr;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr_id = 77;
    wr.wr.rdma.remote_addr = raw.accepted.pull_source(off);
    wr.wr.rdma.rkey = raw.accepted.window_rkey;
    EXPECT_EQ(ibv_post_send(raw.conn->qp(), &wr, &bad), 0);
    auto deadline = Clock::now() + 20s;
    while (Clock::now() < deadline) {
      ibv_wc wc;
      if (ibv_poll_cq(raw.conn->cq(), 1, &wc) > 0 && wc.wr_id == 77) return wc.status;
    }
    ADD_FAILURE() << "no completion";
    return IBV_WC_GENERAL_ERR;
  };
  std::memset(data, 0x3c, 8192);
  EXPECT_EQ(rdma(IBV_WR_RDMA_WRITE, 12288, 8192), IBV_WC_SUCCESS);  // a pushed WRITE's data
  std::memset(data, 0, 8192);
  EXPECT_EQ(rdma(IBV_WR_RDMA_READ, 12288, 8192), IBV_WC_SUCCESS);
  EXPECT_EQ(data[0], 0x3c);
  EXPECT_EQ(data[8191], 0x3c);
  std::memset(data, 0, 8192);
  EXPECT_EQ(rdma(IBV_WR_RDMA_READ, (1 << 20) - 4096, 4096), IBV_WC_SUCCESS);  // the last block
  // Past the export's end: refused by the NIC, and the connection is done.
  EXPECT_EQ(rdma(IBV_WR_RDMA_READ, (1 << 20) - 4096, 8192), IBV_WC_REM_ACCESS_ERR);
  raw.conn->close_st();

  // The server goes on: another client with pulls reads what the first one wrote.
  auto o = client_opts("vol0", 1, 4, 64 * 1024);
  auto factory = targets::make_rdma_target_factory(o);
  FakeQueue q(0, 4, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  std::memset(q.io_buffer(2), 0, 8192);
  t->submit_st(ublk::IoRequest{2, ublk::kOpRead, 0, 12288, 8192, q.io_buffer(2)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kBusy, [&] { return q.results.size() == 1; }));
  EXPECT_EQ(q.results[2], 8192);
  EXPECT_EQ(uint8_t(q.io_buffer(2)[8191]), 0x3c);
  auto stats = nlohmann::json::parse(t->stats_json());
  EXPECT_EQ(stats["pull_reads"], true);
  EXPECT_EQ(stats["pulled_reads"], 1);
  EXPECT_EQ(stats["commands"], 0);  // the server heard nothing of it
  t->stop_st();
}

// Fenced WRITEs: small WRITEs to a ram export are the client's RDMA WRITEs with no command,
// completed by one RDMA READ fence per pass. Another client that reads through the server
// (no pulls) finds every byte in the export.
TEST_F(RdmaTransport, FencedWritesLandInTheExport) {
  start_server({server::parse_export_spec("vol0=ram:16M")});
  constexpr uint16_t kDepth = 16;
  constexpr uint32_t kLen = 8192;
  auto writer = targets::make_rdma_target_factory(client_opts("vol0", 1, kDepth, 64 * 1024));
  FakeQueue q(0, kDepth, 64 * 1024);
  auto t = writer->make_queue_target(0);
  t->start_st(q);
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    fill(q.io_buffer(tag), kLen, tag + 40);
    t->submit_st(ublk::IoRequest{tag, ublk::kOpWrite, 0, uint64_t(tag) * kLen, kLen, q.io_buffer(tag)});
  }
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kHybrid, [&] { return q.results.size() == kDepth; }));
  for (auto [tag, res] : q.results) EXPECT_EQ(res, int(kLen)) << "tag " << tag;
  auto ws = nlohmann::json::parse(t->stats_json());
  EXPECT_EQ(ws["fence_writes"], true);
  EXPECT_EQ(ws["fenced_writes"], kDepth);
  EXPECT_GE(ws["fences"].get<uint64_t>(), 1u);
  EXPECT_LE(ws["fences"].get<uint64_t>(), uint64_t(kDepth));
  EXPECT_EQ(ws["commands"], 0);  // the server heard nothing of them
  EXPECT_EQ(ws["errors"], 0);
  t->stop_st();

  auto o = client_opts("vol0", 1, kDepth, 64 * 1024);
  o.pull_max_bytes = 0;
  o.fence_writes = false;
  auto reader_factory = targets::make_rdma_target_factory(o);
  FakeQueue rq(0, kDepth, 64 * 1024);
  auto r = reader_factory->make_queue_target(0);
  r->start_st(rq);
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    std::memset(rq.io_buffer(tag), 0, kLen);
    r->submit_st(ublk::IoRequest{tag, ublk::kOpRead, 0, uint64_t(tag) * kLen, kLen, rq.io_buffer(tag)});
  }
  ASSERT_TRUE(drive(*r, rq, ublk::PollMode::kHybrid, [&] { return rq.results.size() == kDepth; }));
  for (uint16_t tag = 0; tag < kDepth; ++tag) {
    EXPECT_EQ(rq.results[tag], int(kLen));
    EXPECT_TRUE(check(rq.io_buffer(tag), kLen, tag + 40)) << "data of tag " << tag;
  }
  auto rs = nlohmann::json::parse(r->stats_json());
  EXPECT_EQ(rs["pull_reads"], false);
  EXPECT_EQ(rs["commands"], kDepth);
  r->stop_st();
}

TEST_F(RdmaTransport, ServerStopFailsClientIoPromptly) {
  start_server({server::parse_export_spec("vol0=ram:16M")});
  auto opts = client_opts("vol0", 1, 4, 64 * 1024);
  opts.recovery.ctrl_loss_tmo = std::chrono::milliseconds(0);  // no reconnecting: fail at once
  auto factory = targets::make_rdma_target_factory(opts);
  FakeQueue q(0, 4, 64 * 1024);
  auto t = factory->make_queue_target(0);
  t->start_st(q);
  t->submit_st(ublk::IoRequest{0, ublk::kOpRead, 0, 0, 4096, q.io_buffer(0)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] { return q.results.size() == 1; }));
  q.results.clear();
  auto t0 = Clock::now();
  stop_server();  // drains and disconnects
  // The client notices the disconnect of each connection without any IO in flight, then
  // fails new IO at once.
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] {
    auto j = nlohmann::json::parse(t->stats_json());
    return j["state"] == "failed" && j["connection_lost"] == j["connections"];
  }, 15s));
  t->submit_st(ublk::IoRequest{1, ublk::kOpRead, 0, 0, 4096, q.io_buffer(1)});
  ASSERT_TRUE(drive(*t, q, ublk::PollMode::kEvent, [&] { return q.results.size() == 1; }, 5s));
  EXPECT_EQ(q.results[1], -EIO);
  EXPECT_LT(Clock::now() - t0, 15s);
  t->stop_st();
}

}  // namespace
}  // namespace ublkrdma::test
