// The server's answer to a CONNECT request: every reason to refuse, and what an accept says.
#include "server/negotiation.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "server/backend.h"

namespace ublkrdma::server {
namespace {

sockaddr_in peer(const char* ip) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

struct Fixture {
  ExportInfo vol0{64ull << 20, 512, false, kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes,
                  true};
  ExportInfo file4k{1ull << 30, 4096, false, kSupportsFlush, false};
  ExportInfo ro{1ull << 20, 512, true, kSupportsFlush | kSupportsDiscard | kSupportsWriteZeroes, true};
  ExportInfo rofile{1ull << 20, 512, true, kSupportsFlush, false};
  ServerLimits limits;
  std::vector<Cidr> allow;

  Fixture() { limits.client_rdma_reads = 128; }  // what our client offers with PULL_READS

  ExportLookup lookup() {
    return [this](std::string_view name, ExportInfo& info) {
      if (name == "vol0") return info = vol0, 0;
      if (name == "file4k") return info = file4k, 1;
      if (name == "ro") return info = ro, 2;
      if (name == "rofile") return info = rofile, 3;
      if (name == "down") return kExportUnavailable;
      return -1;
    };
  }
  Negotiation run(const wire::ConnectRequest& r, const char* from = "192.0.2.7") {
    auto b = wire::encode(r);
    auto p = peer(from);
    return negotiate(b, reinterpret_cast<sockaddr*>(&p), allow, lookup(), limits);
  }
};

wire::ConnectRequest request(const char* name, uint16_t depth = 128, uint32_t max_io = 512 * 1024) {
  wire::ConnectRequest r;
  r.queue_depth = depth;
  r.max_io_bytes = max_io;
  r.queue_id = 1;
  EXPECT_TRUE(r.set_name(name));
  return r;
}

TEST(RdmaNegotiation, AcceptCarriesTheExport) {
  Fixture f;
  Negotiation n = f.run(request("vol0"));
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_EQ(n.export_index, 0);
  EXPECT_EQ(n.accept.export_size, 64ull << 20);
  EXPECT_EQ(n.accept.block_shift, 9);
  EXPECT_EQ(n.accept.queue_depth, 128);
  EXPECT_EQ(n.accept.max_io_bytes, 512u * 1024);
  EXPECT_EQ(n.accept.version, wire::kVersion);
  EXPECT_TRUE(n.accept.flush() && n.accept.fua() && n.accept.discard() && n.accept.write_zeroes());
  EXPECT_FALSE(n.accept.read_only());
  // What the client decodes is what was built.
  auto d = wire::decode_accept_data(wire::encode(n.accept));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.export_flags, n.accept.export_flags);

  Negotiation m = f.run(request("file4k", 64, 1 << 20));
  ASSERT_TRUE(m.accepted) << m.reason;
  EXPECT_EQ(m.accept.block_shift, 12);
  EXPECT_TRUE(m.accept.flush());
  EXPECT_FALSE(m.accept.discard());
}

TEST(RdmaNegotiation, ReadOnlyExportAdvertisesNoWritingOps) {
  Fixture f;
  Negotiation n = f.run(request("ro"));
  ASSERT_TRUE(n.accepted);
  EXPECT_TRUE(n.accept.read_only());
  EXPECT_FALSE(n.accept.discard());
  EXPECT_FALSE(n.accept.write_zeroes());
}

TEST(RdmaNegotiation, UnknownExport) {
  Fixture f;
  Negotiation n = f.run(request("vol1"));
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kUnknownExport);
  EXPECT_EQ(n.request.name(), "vol1");
}

TEST(RdmaNegotiation, UnavailableExport) {
  Fixture f;
  Negotiation n = f.run(request("down"));
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kUnavailable);
  EXPECT_NE(std::string(n.reason).find("unavailable"), std::string::npos);
  // Not told to a peer outside --allow.
  f.allow.push_back(parse_cidr("10.0.0.0/8"));
  EXPECT_EQ(f.run(request("down")).reject.status, wire::ConnectStatus::kAccessDenied);
}

TEST(RdmaNegotiation, AllowListIsCheckedBeforeTheName) {
  Fixture f;
  f.allow.push_back(parse_cidr("10.0.0.0/8"));
  EXPECT_EQ(f.run(request("vol1"), "192.0.2.7").reject.status, wire::ConnectStatus::kAccessDenied);
  EXPECT_EQ(f.run(request("vol0"), "192.0.2.7").reject.status, wire::ConnectStatus::kAccessDenied);
  EXPECT_TRUE(f.run(request("vol0"), "10.1.2.3").accepted);
}

TEST(RdmaNegotiation, LimitsRefuseWithBadParams) {
  Fixture f;
  f.limits.max_queue_depth = 256;
  f.limits.max_io_bytes = 1 << 20;
  f.limits.max_pool_bytes = 64ull << 20;
  EXPECT_EQ(f.run(request("vol0", 512)).reject.status, wire::ConnectStatus::kBadParams);
  EXPECT_EQ(f.run(request("vol0", 128, 2 << 20)).reject.status, wire::ConnectStatus::kBadParams);
  // The pool bound applies only where the server needs buffers of its own (not direct).
  EXPECT_TRUE(f.run(request("vol0", 256, 1 << 20)).accepted);
  EXPECT_EQ(f.run(request("file4k", 256, 1 << 20)).reject.status, wire::ConnectStatus::kBadParams);
  EXPECT_TRUE(f.run(request("file4k", 64, 1 << 20)).accepted);
  f.limits.max_rdma_reads = 0;
  EXPECT_EQ(f.run(request("vol0")).reject.status, wire::ConnectStatus::kBadParams);
}

// Found by fuzz/negotiation: a block size of 0 divided by zero before it was checked.
TEST(RdmaNegotiation, BlockSizeTheProtocolCannotCarryIsInternal) {
  for (uint32_t bs : {0u, 256u, 1000u, 8192u}) {
    Fixture f;
    f.vol0.block_size = bs;
    EXPECT_EQ(f.run(request("vol0")).reject.status, wire::ConnectStatus::kInternal) << bs;
  }
}

TEST(RdmaNegotiation, ServerWideBudgetRefusesAsBusy) {
  Fixture f;
  f.limits.max_memory = 256ull << 20;
  f.limits.max_host_memory = 256ull << 20;
  const uint64_t pool128 = connection_memory(128, 512 * 1024, false);
  EXPECT_EQ(pool128, 64ull * 1024 * 1024 + kConnectionFixedBytes + 128 * kConnectionPerTagBytes);
  f.limits.memory_in_use = f.limits.max_memory - pool128;
  // Exactly what is left fits; one more tag does not.
  Negotiation n = f.run(request("file4k", 128, 512 * 1024));
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_EQ(n.memory_bytes, pool128);
  n = f.run(request("file4k", 129, 512 * 1024));
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kBusy);
  // Direct exports need no pool, but their slots and queues count too: a ram export at depth
  // 4096 takes 16 MiB of the budget.
  f.limits.memory_in_use = f.limits.max_memory - connection_memory(4096, 1 << 20, true);
  EXPECT_TRUE(f.run(request("vol0", 4096, 1 << 20)).accepted);
  f.limits.memory_in_use += 1;
  EXPECT_EQ(f.run(request("vol0", 4096, 1 << 20)).reject.status, wire::ConnectStatus::kBusy);
  // One host's share.
  f.limits.memory_in_use = 0;
  f.limits.max_host_memory = 32ull << 20;
  f.limits.host_memory_in_use = 16ull << 20;
  EXPECT_TRUE(f.run(request("vol0", 2048, 1 << 20)).accepted);
  n = f.run(request("vol0", 4096, 1 << 20));
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kBusy);
  EXPECT_NE(std::string(n.reason).find("--max-host-memory"), std::string::npos);

  f.limits.host_memory_in_use = 0;
  f.limits.max_connections = 2;
  f.limits.connections_in_use = 1;
  EXPECT_TRUE(f.run(request("vol0")).accepted);
  f.limits.connections_in_use = 2;
  EXPECT_EQ(f.run(request("vol0")).reject.status, wire::ConnectStatus::kBusy);
}

TEST(RdmaNegotiation, MalformedPrivateData) {
  Fixture f;
  auto p = peer("192.0.2.7");
  auto* sa = reinterpret_cast<sockaddr*>(&p);
  std::vector<uint8_t> junk(56, 0xab);
  EXPECT_EQ(negotiate(junk, sa, f.allow, f.lookup(), f.limits).reject.status, wire::ConnectStatus::kBadParams);
  EXPECT_EQ(negotiate({}, sa, f.allow, f.lookup(), f.limits).reject.status, wire::ConnectStatus::kBadParams);
  auto b = wire::encode(request("vol0"));
  b[4] = 0;  // version 0
  EXPECT_EQ(negotiate(b, sa, f.allow, f.lookup(), f.limits).reject.status, wire::ConnectStatus::kBadVersion);
  b = wire::encode(request("vol0"));
  b[26] = '/';
  EXPECT_EQ(negotiate(b, sa, f.allow, f.lookup(), f.limits).reject.status, wire::ConnectStatus::kUnknownExport);
}

TEST(RdmaNegotiation, ReadImmOnlyWhenAskedInV2) {
  Fixture f;
  auto r = request("vol0");
  Negotiation n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_FALSE(n.accept.read_imm());  // not asked
  r.flags = wire::kConnectReadImm;
  n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_TRUE(n.accept.read_imm());
  auto d = wire::decode_accept_data(wire::encode(n.accept));
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d.value.read_imm());
  // BATCH, like READ_IMM, only on request; a v2 client gets a v2 accept without it.
  EXPECT_FALSE(n.accept.batch());
  r.flags = wire::kConnectReadImm | wire::kConnectBatch;
  n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_TRUE(n.accept.batch() && n.accept.read_imm());
  EXPECT_TRUE(wire::decode_accept_data(wire::encode(n.accept)).value.batch());
  r.version = 2;
  r.flags = wire::kConnectReadImm;
  n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.accept.version, 2);
  EXPECT_EQ(n.accept.features, wire::kFeatureReadImm);
  EXPECT_TRUE(wire::decode_accept_data(wire::encode(n.accept)).ok());
  // A v1 client cannot ask (its flags must be 0) and gets a v1 accept without features.
  r.version = 1;
  r.flags = 0;
  n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.accept.version, 1);
  EXPECT_EQ(n.accept.features, 0);
  EXPECT_TRUE(wire::decode_accept_data(wire::encode(n.accept)).ok());
}

// v7 names the export's data so that a client that reconnects can tell a recreated export.
TEST(RdmaNegotiation, InstanceIdFromV7) {
  Fixture f;
  f.vol0.instance_id = 0xabcdef01;
  Negotiation n = f.run(request("vol0"));
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.accept.instance_id, 0xabcdef01u);
  auto d = wire::decode_accept_data(wire::encode(n.accept));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.instance_id, 0xabcdef01u);
  auto r = request("vol0");
  r.version = 6;
  n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.accept.version, 6);
  EXPECT_EQ(n.accept.instance_id, 0u);  // reserved in v6
  EXPECT_TRUE(wire::decode_accept_data(wire::encode(n.accept)).ok());
}

// v8: KEEP_ALIVE only when asked, by a client that speaks v8.
TEST(RdmaNegotiation, KeepAliveFromV8WhenAsked) {
  Fixture f;
  auto r = request("vol0");
  EXPECT_FALSE(f.run(r).accept.keep_alive());
  r.flags = wire::kConnectKeepAlive;
  Negotiation n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.keep_alive());
  EXPECT_TRUE(wire::decode_accept_data(wire::encode(n.accept)).ok());
  r.version = 7;  // the flag is unknown to v7: refused as malformed
  EXPECT_FALSE(f.run(r).accepted);
}

TEST(RdmaNegotiation, NewerClientGetsOurVersion) {
  Fixture f;
  auto r = request("vol0");
  r.version = 11;
  r.flags = 0xffff;  // bits we do not know are ignored; those we know are granted as asked
  Negotiation n = f.run(r);
  ASSERT_TRUE(n.accepted);
  EXPECT_EQ(n.accept.version, wire::kVersion);
  EXPECT_EQ(n.accept.features, wire::kFeatureReadImm | wire::kFeatureBatch | wire::kFeaturePushWrites |
                                    wire::kFeaturePullReads | wire::kFeatureKeepAlive);
  r = request("file4k");
  r.version = 11;
  r.flags = 0xffff;
  EXPECT_EQ(f.run(r).accept.features, wire::kFeatureReadImm | wire::kFeatureBatch | wire::kFeaturePushWrites |
                                          wire::kFeaturePushSlots | wire::kFeatureKeepAlive);
}

// The export's memory opens to the client's RDMA WRITEs only when asked, only for an export served
// from memory that the client may write, and never when the server forbids it.
TEST(RdmaNegotiation, PushWritesOnlyIntoWritableMemory) {
  Fixture f;
  auto r = request("vol0");
  r.flags = wire::kConnectPushWrites;
  Negotiation n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.push_writes());
  EXPECT_EQ(n.accept.window_rkey, 0u);  // the window is the connection's to fill in, after registration
  EXPECT_EQ(n.accept.window_addr, 0u);

  r.flags = 0;  // not asked
  EXPECT_FALSE(f.run(r).accept.push_writes());

  r = request("file4k");  // a buffer pool, no export memory: only into its slots, if the client knows them
  r.flags = wire::kConnectPushWrites;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.push_writes());
  r.flags = wire::kConnectPushWrites | wire::kConnectPushSlots;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.push_writes());
  EXPECT_TRUE(n.accept.push_slots());
  r.version = 4;  // a v4 client does not know slots (a v5 one that sets the flag alone gets nothing)
  r.flags = wire::kConnectPushWrites;
  EXPECT_FALSE(f.run(r).accept.push_writes());
  r.version = wire::kVersion;
  r.flags = wire::kConnectPushSlots;
  EXPECT_FALSE(f.run(r).accept.push_writes());

  r = request("vol0");  // export memory: never slots, even when the client knows them
  r.flags = wire::kConnectPushWrites | wire::kConnectPushSlots;
  n = f.run(r);
  EXPECT_TRUE(n.accept.push_writes());
  EXPECT_FALSE(n.accept.push_slots());

  r = request("ro");  // read-only memory
  r.flags = wire::kConnectPushWrites | wire::kConnectPushSlots;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.push_writes());
  r = request("rofile");  // a read-only export's buffer pool: no slots either
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.push_writes());

  f.limits.push_writes = false;  // serve --no-push-writes
  r = request("vol0");
  r.flags = wire::kConnectPushWrites | wire::kConnectBatch;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.push_writes());
  EXPECT_TRUE(n.accept.batch());
  r = request("file4k");
  r.flags = wire::kConnectPushWrites | wire::kConnectPushSlots;
  EXPECT_FALSE(f.run(r).accept.push_writes());

  f.limits.push_writes = true;
  r.version = 3;  // a v3 client cannot ask for it: its flag is unknown there
  n = f.run(r);
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kBadParams);
}

// The export's memory opens to the client's RDMA READs only when asked by a v6 client, only for
// an export served from memory (read-only ones too: reading is what the client may do there), only
// when the client will issue RDMA READs, and never when the server forbids it.
TEST(RdmaNegotiation, PullReadsOnlyFromExportMemory) {
  Fixture f;
  auto r = request("vol0");
  r.flags = wire::kConnectPullReads;
  Negotiation n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.pull_reads());
  EXPECT_FALSE(n.accept.push_writes());
  EXPECT_EQ(n.accept.window_addr, 0u);  // filled in by the connection after registration

  r.flags = 0;  // not asked
  EXPECT_FALSE(f.run(r).accept.pull_reads());

  r = request("ro");  // read-only memory: pulls yes, pushes no
  r.flags = wire::kConnectPullReads | wire::kConnectPushWrites | wire::kConnectPushSlots;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_TRUE(n.accept.pull_reads());
  EXPECT_FALSE(n.accept.push_writes());

  r = request("file4k");  // a buffer pool: nothing to read from, and never beside slots
  r.flags = wire::kConnectPullReads | wire::kConnectPushWrites | wire::kConnectPushSlots;
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.pull_reads());
  EXPECT_TRUE(n.accept.push_slots());
  r.flags = wire::kConnectPullReads;
  EXPECT_FALSE(f.run(r).accept.pull_reads());
  r = request("rofile");
  r.flags = wire::kConnectPullReads;
  EXPECT_FALSE(f.run(r).accept.pull_reads());

  r = request("vol0");
  r.flags = wire::kConnectPullReads;
  f.limits.client_rdma_reads = 0;  // a client that will not issue RDMA READs
  EXPECT_FALSE(f.run(r).accept.pull_reads());
  f.limits.client_rdma_reads = 128;
  f.limits.pull_reads = false;  // serve --no-pull-reads
  n = f.run(r);
  ASSERT_TRUE(n.accepted) << n.reason;
  EXPECT_FALSE(n.accept.pull_reads());
  f.limits.pull_reads = true;
  r.version = 5;  // a v5 client cannot ask for it: its flag is unknown there
  n = f.run(r);
  EXPECT_FALSE(n.accepted);
  EXPECT_EQ(n.reject.status, wire::ConnectStatus::kBadParams);
}

}  // namespace
}  // namespace ublkrdma::server
