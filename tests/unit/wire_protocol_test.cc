// The wire codec: round trips, exact byte layout (little endian, fixed offsets), and every
// malformed case each decoder must refuse.
#include "base/work_id.h"
#include "transport/wire_protocol.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <vector>

namespace ublkrdma::wire {
namespace {

ConnectRequest sample_request() {
  ConnectRequest r;
  r.queue_id = 3;
  r.queue_depth = 128;
  r.max_io_bytes = 512 * 1024;
  r.session_id = 0x0102030405060708ull;
  EXPECT_TRUE(r.set_name("vol0"));
  return r;
}

TEST(WireProtocol, ConnectRequestRoundTripAndLayout) {
  ConnectRequest r = sample_request();
  auto b = encode(r);
  ASSERT_EQ(b.size(), 56u);
  // "URDM" in wire order, then little-endian fields at their documented offsets.
  EXPECT_EQ(b[0], 'U');
  EXPECT_EQ(b[1], 'R');
  EXPECT_EQ(b[2], 'D');
  EXPECT_EQ(b[3], 'M');
  EXPECT_EQ(b[4], 10);  // version
  EXPECT_EQ(b[5], 0);
  EXPECT_EQ(b[6], 0);  // flags
  EXPECT_EQ(b[8], 3);     // queue id
  EXPECT_EQ(b[10], 128);  // depth
  EXPECT_EQ(b[12], 0);
  EXPECT_EQ(b[14], 0x08);  // 512 KiB = 0x80000
  EXPECT_EQ(b[16], 0x08);  // session id, low byte first
  EXPECT_EQ(b[23], 0x01);
  EXPECT_EQ(b[24], 'v');
  EXPECT_EQ(b[28], 0);

  auto d = decode_connect_request(b);
  ASSERT_TRUE(d.ok()) << decode_error_text(d.error);
  EXPECT_EQ(d.value.queue_id, 3);
  EXPECT_EQ(d.value.queue_depth, 128);
  EXPECT_EQ(d.value.max_io_bytes, 512u * 1024);
  EXPECT_EQ(d.value.session_id, 0x0102030405060708ull);
  EXPECT_EQ(d.value.name(), "vol0");
}

TEST(WireProtocol, ConnectRequestNameLimits) {
  ConnectRequest r;
  EXPECT_FALSE(r.set_name(""));
  EXPECT_FALSE(r.set_name(std::string(33, 'a')));
  EXPECT_FALSE(r.set_name("bad name"));
  EXPECT_FALSE(r.set_name("a/b"));
  EXPECT_TRUE(r.set_name(std::string(32, 'z')));
  r.queue_depth = 1;
  r.max_io_bytes = 4096;
  auto d = decode_connect_request(encode(r));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.name(), std::string(32, 'z'));  // no terminating NUL needed at 32
}

TEST(WireProtocol, ConnectRequestMalformed) {
  auto good = encode(sample_request());
  auto with = [&](size_t off, uint8_t v) {
    auto b = good;
    b[off] = v;
    return decode_connect_request(b).error;
  };
  EXPECT_EQ(decode_connect_request(std::span(good).first(55)).error, DecodeError::kTooShort);
  EXPECT_EQ(decode_connect_request({}).error, DecodeError::kTooShort);
  EXPECT_EQ(with(0, 'X'), DecodeError::kBadMagic);
  EXPECT_EQ(with(4, 0), DecodeError::kBadVersion);  // version 0
  EXPECT_EQ(with(7, 1), DecodeError::kBadFlags);    // a flag v9 does not know (bit 8)
  {
    auto b = good;
    b[4] = 3;  // v3 knows READ_IMM and BATCH, not PUSH_WRITES
    b[6] = kConnectPushWrites;
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[6] = kConnectReadImm | kConnectBatch;
    EXPECT_TRUE(decode_connect_request(b).ok());  // a v3 client still decodes
    b[4] = 4;
    b[6] = kConnectReadImm | kConnectBatch | kConnectPushWrites;
    EXPECT_TRUE(decode_connect_request(b).ok());
    b[6] |= kConnectPushSlots;  // PUSH_SLOTS is v5's
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[4] = 5;
    EXPECT_TRUE(decode_connect_request(b).ok());
    b[6] |= kConnectPullReads;  // PULL_READS is v6's
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[4] = 7;
    EXPECT_TRUE(decode_connect_request(b).ok());
    b[6] |= kConnectKeepAlive;  // KEEP_ALIVE is v8's
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[4] = 8;
    EXPECT_TRUE(decode_connect_request(b).ok());
    b[4] = 6;
    b[6] &= uint8_t(~kConnectKeepAlive);
    EXPECT_TRUE(decode_connect_request(b).ok());
  }
  {
    auto b = good;
    b[4] = 2;  // v2 knows READ_IMM only
    b[6] = kConnectBatch;
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[6] = kConnectReadImm;
    EXPECT_TRUE(decode_connect_request(b).ok());  // a v2 client still decodes
  }
  {
    auto b = good;
    b[4] = 1;  // v1 has no flags at all
    b[6] = kConnectReadImm;
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadFlags);
    b[6] = 0;
    EXPECT_TRUE(decode_connect_request(b).ok());  // a v1 client still decodes
  }
  {
    auto b = good;
    b[6] = kConnectReadImm | kConnectBatch;
    auto d = decode_connect_request(b);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.value.flags, kConnectReadImm | kConnectBatch);
  }
  EXPECT_EQ(with(24, 0), DecodeError::kBadName);    // empty name
  EXPECT_EQ(with(25, ' '), DecodeError::kBadName);  // bad character
  EXPECT_EQ(with(30, 'x'), DecodeError::kBadName);  // junk after the NUL
  {
    auto b = good;
    b[10] = 0;  // depth 0
    b[11] = 0;
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadParams);
  }
  {
    auto b = good;
    b[11] = 0x20;  // depth 8192 + 128
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadParams);
  }
  EXPECT_EQ(with(12, 1), DecodeError::kBadParams);  // max IO not a multiple of 4096
  {
    auto b = good;
    for (int i = 12; i < 16; ++i) b[i] = 0;  // max IO 0
    EXPECT_EQ(decode_connect_request(b).error, DecodeError::kBadParams);
  }
  // A newer client version decodes (the server decides what to do with it), even with flags.
  {
    auto b = good;
    b[4] = 8;
    b[6] = 1;
    auto d = decode_connect_request(b);
    EXPECT_TRUE(d.ok());
    EXPECT_EQ(d.value.version, 8);
  }
}

TEST(WireProtocol, AcceptRoundTrip) {
  AcceptData a;
  a.export_size = 4ull << 30;
  a.queue_depth = 64;
  a.block_shift = 12;
  a.max_io_bytes = 1 << 20;
  a.export_flags = kExportFlush | kExportDiscard;
  auto b = encode(a);
  ASSERT_EQ(b.size(), 48u);
  auto d = decode_accept_data(b);
  ASSERT_TRUE(d.ok()) << decode_error_text(d.error);
  EXPECT_EQ(d.value.export_size, 4ull << 30);
  EXPECT_EQ(d.value.queue_depth, 64);
  EXPECT_EQ(d.value.block_shift, 12);
  EXPECT_EQ(d.value.max_io_bytes, 1u << 20);
  EXPECT_FALSE(d.value.read_only());
  EXPECT_TRUE(d.value.flush());
  EXPECT_TRUE(d.value.discard());
  EXPECT_FALSE(d.value.fua());
  EXPECT_FALSE(d.value.write_zeroes());
  {
    // Read-only: FLUSH and FUA may stay, DISCARD and WRITE_ZEROES never come with it.
    AcceptData ro = a;
    ro.export_flags = kExportReadOnly | kExportFlush | kExportFua;
    auto rd = decode_accept_data(encode(ro));
    ASSERT_TRUE(rd.ok()) << decode_error_text(rd.error);
    EXPECT_TRUE(rd.value.read_only());
    ro.export_flags = kExportReadOnly | kExportDiscard;
    EXPECT_EQ(decode_accept_data(encode(ro)).error, DecodeError::kBadFlags);
    ro.export_flags = kExportReadOnly | kExportWriteZeroes;
    EXPECT_EQ(decode_accept_data(encode(ro)).error, DecodeError::kBadFlags);
  }
  // rdma_cm may hand over more bytes than were sent (padded with zeros): still fine.
  std::vector<uint8_t> padded(b.begin(), b.end());
  padded.resize(196, 0);
  EXPECT_TRUE(decode_accept_data(padded).ok());
}

TEST(WireProtocol, AcceptPushWindow) {
  AcceptData a;
  a.export_size = 1 << 20;
  a.queue_depth = 8;
  a.max_io_bytes = 4096;
  a.features = kFeaturePushWrites | kFeatureBatch;
  a.window_rkey = 0xa1b2c3d4;
  a.window_addr = 0x7f0012345000;
  auto b = encode(a);
  EXPECT_EQ(b[32], 0xd4);  // little endian at 32 and 40
  EXPECT_EQ(b[35], 0xa1);
  EXPECT_EQ(b[40], 0x00);
  EXPECT_EQ(b[41], 0x50);
  EXPECT_EQ(b[45], 0x7f);
  auto d = decode_accept_data(b);
  ASSERT_TRUE(d.ok()) << decode_error_text(d.error);
  EXPECT_TRUE(d.value.push_writes());
  EXPECT_EQ(d.value.window_rkey, 0xa1b2c3d4u);
  EXPECT_EQ(d.value.window_addr, 0x7f0012345000ull);
  {
    auto c = b;
    c[4] = 3;  // PUSH_WRITES is v4's
    EXPECT_EQ(decode_accept_data(c).error, DecodeError::kBadFlags);
  }
  {
    AcceptData ro = a;
    ro.export_flags = kExportReadOnly;  // never a push window into a read-only export
    EXPECT_EQ(decode_accept_data(encode(ro)).error, DecodeError::kBadParams);
    AcceptData noaddr = a;
    noaddr.window_addr = 0;
    noaddr.version = 8;
    EXPECT_EQ(decode_accept_data(encode(noaddr)).error, DecodeError::kBadParams);
    noaddr.version = 9;  // v9 windows are zero-based
    EXPECT_TRUE(decode_accept_data(encode(noaddr)).ok());
  }
  // Export-addressed window: the data of a WRITE at `offset` goes to window_addr + offset.
  EXPECT_EQ(d.value.push_target(5, 8192), 0x7f0012345000ull + 8192);
  {
    // v5 PUSH_SLOTS: the window is the connection's buffer pool, one max_io_bytes slot per tag.
    AcceptData s = a;
    s.features |= kFeaturePushSlots;
    auto sd = decode_accept_data(encode(s));
    ASSERT_TRUE(sd.ok()) << decode_error_text(sd.error);
    EXPECT_TRUE(sd.value.push_slots());
    EXPECT_EQ(sd.value.push_target(5, 8192), 0x7f0012345000ull + 5 * 4096);
    auto c = encode(s);
    c[4] = 4;  // PUSH_SLOTS is v5's
    EXPECT_EQ(decode_accept_data(c).error, DecodeError::kBadFlags);
    AcceptData alone = s;  // slots without a window
    alone.features = kFeaturePushSlots;
    alone.window_rkey = 0;
    alone.window_addr = 0;
    EXPECT_EQ(decode_accept_data(encode(alone)).error, DecodeError::kBadFlags);
  }
}

TEST(WireProtocol, AcceptPullWindow) {
  // v6 PULL_READS: the window is the export, read by the client's RDMA READ; read-only too.
  AcceptData a;
  a.export_size = 1 << 20;
  a.queue_depth = 8;
  a.max_io_bytes = 4096;
  a.export_flags = kExportReadOnly;
  a.features = kFeaturePullReads | kFeatureBatch;
  a.window_rkey = 0x01020304;
  a.window_addr = 0x7f0012345000;
  auto b = encode(a);
  EXPECT_EQ(b[28], kFeaturePullReads | kFeatureBatch);
  EXPECT_EQ(kFeaturePullReads, 16);
  auto d = decode_accept_data(b);
  ASSERT_TRUE(d.ok()) << decode_error_text(d.error);
  EXPECT_TRUE(d.value.pull_reads());
  EXPECT_FALSE(d.value.push_writes());
  EXPECT_EQ(d.value.pull_source(8192), 0x7f0012345000ull + 8192);
  {
    auto c = b;
    c[4] = 5;  // PULL_READS is v6's
    EXPECT_EQ(decode_accept_data(c).error, DecodeError::kBadFlags);
  }
  {
    AcceptData noaddr = a;  // a pull window needs an address before v9
    noaddr.window_addr = 0;
    noaddr.version = 8;
    EXPECT_EQ(decode_accept_data(encode(noaddr)).error, DecodeError::kBadParams);
    noaddr.version = 9;
    EXPECT_TRUE(decode_accept_data(encode(noaddr)).ok());
    AcceptData both = a;  // with PUSH_WRITES into the same export: fine where it is writable
    both.export_flags = 0;
    both.features |= kFeaturePushWrites;
    auto bd = decode_accept_data(encode(both));
    ASSERT_TRUE(bd.ok()) << decode_error_text(bd.error);
    EXPECT_EQ(bd.value.push_target(3, 8192), bd.value.pull_source(8192));
    AcceptData slots = both;  // a window of slots is not the export: nothing to pull from
    slots.features |= kFeaturePushSlots;
    EXPECT_EQ(decode_accept_data(encode(slots)).error, DecodeError::kBadFlags);
  }
}

TEST(WireProtocol, AcceptMalformed) {
  AcceptData a;
  a.export_size = 1 << 20;
  a.queue_depth = 8;
  a.max_io_bytes = 4096;
  auto good = encode(a);
  auto with = [&](size_t off, uint8_t v) {
    auto b = good;
    b[off] = v;
    return decode_accept_data(b).error;
  };
  EXPECT_EQ(decode_accept_data(std::span(good).first(47)).error, DecodeError::kTooShort);
  EXPECT_EQ(with(1, 0), DecodeError::kBadMagic);
  EXPECT_EQ(with(4, 0), DecodeError::kBadVersion);
  EXPECT_EQ(with(4, 11), DecodeError::kBadVersion);  // newer than we speak: the server must not pick it
  EXPECT_EQ(with(6, 1), DecodeError::kBadParams);   // status != ok inside an accept
  EXPECT_EQ(with(19, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(28, 128), DecodeError::kBadFlags);  // a feature v10 does not know
  {
    auto b = good;
    b[28] = kFeatureKeepAlive;
    auto d = decode_accept_data(b);
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.value.keep_alive());
    b[4] = 7;  // KEEP_ALIVE is v8's
    EXPECT_EQ(decode_accept_data(b).error, DecodeError::kBadFlags);
  }
  {
    auto b = good;
    b[28] = kFeatureReadImm | kFeatureBatch;
    auto d = decode_accept_data(b);
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.value.batch());
    b[4] = 2;  // BATCH is v3's
    EXPECT_EQ(decode_accept_data(b).error, DecodeError::kBadFlags);
  }
  EXPECT_EQ(with(30, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(31, 1), DecodeError::kReservedNonZero);
  {
    // v7's instance id: any value, reserved before v7.
    auto b = good;
    b[36] = 0x78;
    b[39] = 0x12;
    auto d = decode_accept_data(b);
    ASSERT_TRUE(d.ok()) << decode_error_text(d.error);
    EXPECT_EQ(d.value.instance_id, 0x12000078u);
    b[4] = 6;
    EXPECT_EQ(decode_accept_data(b).error, DecodeError::kReservedNonZero);
  }
  // The push window's fields are reserved without the feature.
  EXPECT_EQ(with(32, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(47, 1), DecodeError::kReservedNonZero);
  {
    auto b = good;
    b[28] = kFeatureReadImm;
    auto d = decode_accept_data(b);
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.value.read_imm());
    b[4] = 1;  // v1: the features field is reserved
    EXPECT_EQ(decode_accept_data(b).error, DecodeError::kReservedNonZero);
  }
  EXPECT_EQ(with(24, 0x20), DecodeError::kBadFlags);
  EXPECT_EQ(with(18, 8), DecodeError::kBadParams);   // 256-byte blocks
  EXPECT_EQ(with(18, 13), DecodeError::kBadParams);  // 8 KiB blocks
  EXPECT_EQ(with(16, 0), DecodeError::kBadParams);   // depth 0
  EXPECT_EQ(with(17, 0x10), DecodeError::kBadParams);  // depth 4104: no CONNECT asks for it
  EXPECT_EQ(with(8, 1), DecodeError::kBadParams);    // size not a multiple of the block size
  {
    auto b = good;
    for (int i = 20; i < 24; ++i) b[i] = 0;
    EXPECT_EQ(decode_accept_data(b).error, DecodeError::kBadParams);  // max IO 0
  }
  EXPECT_EQ(with(20, 1), DecodeError::kBadParams);  // max IO 4097: no CONNECT asks for it
}

TEST(WireProtocol, RejectRoundTripAndMalformed) {
  for (auto s : {ConnectStatus::kUnknownExport, ConnectStatus::kAccessDenied, ConnectStatus::kBadVersion,
                 ConnectStatus::kBusy, ConnectStatus::kBadParams, ConnectStatus::kInternal,
                 ConnectStatus::kAuthRequired, ConnectStatus::kAuthBackoff, ConnectStatus::kUnavailable}) {
    auto d = decode_reject_data(encode(RejectData{kVersion, s, kMinVersion}));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.value.status, s);
    EXPECT_STRNE(connect_status_text(s), "unknown reason");
  }
  auto good = encode(RejectData{kVersion, ConnectStatus::kUnknownExport, kMinVersion});
  EXPECT_EQ(decode_reject_data(std::span(good).first(15)).error, DecodeError::kTooShort);
  {
    auto b = good;
    b[0] = 0;
    EXPECT_EQ(decode_reject_data(b).error, DecodeError::kBadMagic);
  }
  {
    auto b = good;
    b[6] = 0;  // "ok" is not a rejection
    EXPECT_EQ(decode_reject_data(b).error, DecodeError::kBadParams);
  }
  {
    auto b = good;
    b[12] = 1;
    EXPECT_EQ(decode_reject_data(b).error, DecodeError::kReservedNonZero);
  }
  {
    auto b = good;
    b[6] = 200;  // a reason from a newer server: still a rejection
    auto d = decode_reject_data(b);
    EXPECT_TRUE(d.ok());
    EXPECT_EQ(d.value.status, ConnectStatus::kInternal);
  }
}

TEST(WireProtocol, CommandRoundTripAndLayout) {
  Command c{Opcode::kWrite, kCmdFlagFua, 77, 0x01020304, 0x1000, 8192, 0xaabbccdd, 0x7f0000001000};
  auto b = encode(c);
  ASSERT_EQ(b.size(), 48u);
  EXPECT_EQ(b[0], 1);  // WRITE
  EXPECT_EQ(b[1], 1);  // FUA
  EXPECT_EQ(b[2], 77);
  EXPECT_EQ(b[4], 0x04);
  EXPECT_EQ(b[9], 0x10);  // offset 0x1000
  EXPECT_EQ(b[17], 0x20);  // length 8192
  EXPECT_EQ(b[20], 0xdd);
  EXPECT_EQ(b[25], 0x10);
  auto d = decode_command(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.opcode, Opcode::kWrite);
  EXPECT_EQ(d.value.tag, 77);
  EXPECT_EQ(d.value.generation, 0x01020304u);
  EXPECT_EQ(d.value.offset, 0x1000u);
  EXPECT_EQ(d.value.length, 8192u);
  EXPECT_EQ(d.value.rkey, 0xaabbccddu);
  EXPECT_EQ(d.value.addr, 0x7f0000001000u);
  for (Opcode op : {Opcode::kRead, Opcode::kFlush, Opcode::kDiscard, Opcode::kWriteZeroes}) {
    c.opcode = op;
    c.flags = 0;
    EXPECT_TRUE(decode_command(encode(c)).ok());
  }
}

TEST(WireProtocol, CommandMalformedKeepsTagForTheAnswer) {
  Command c{Opcode::kRead, 0, 9, 42, 0, 4096, 1, 2};
  auto good = encode(c);
  auto with = [&](size_t off, uint8_t v) {
    auto b = good;
    b[off] = v;
    return decode_command(b);
  };
  EXPECT_EQ(decode_command(std::span(good).first(47)).error, DecodeError::kTooShort);
  for (uint8_t op : {4, 6, 7, 0x80, 0xff}) {
    auto d = with(0, op);
    EXPECT_EQ(d.error, DecodeError::kBadOpcode) << int(op);
    EXPECT_EQ(d.value.tag, 9);  // still readable: the server answers tag 9, generation 42
    EXPECT_EQ(d.value.generation, 42u);
  }
  EXPECT_TRUE(with(1, kCmdFlagPushed).ok());  // known to the codec; the server checks it was negotiated
  EXPECT_EQ(with(1, 4).error, DecodeError::kBadFlags);
  EXPECT_EQ(with(1, 0x80).error, DecodeError::kBadFlags);
  for (size_t off = 32; off < 48; ++off) EXPECT_EQ(with(off, 1).error, DecodeError::kReservedNonZero) << off;
}

TEST(WireProtocol, ResponseRoundTripAndMalformed) {
  Response r{5, Opcode::kWrite, 1234, int32_t(Status::kReadOnly)};
  auto good = encode(r);
  ASSERT_EQ(good.size(), 16u);
  auto d = decode_response(good);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.tag, 5);
  EXPECT_EQ(d.value.generation, 1234u);
  EXPECT_EQ(status_to_errno(d.value.status), -EROFS);
  auto with = [&](size_t off, uint8_t v) {
    auto b = good;
    b[off] = v;
    return decode_response(b).error;
  };
  EXPECT_EQ(decode_response(std::span(good).first(15)).error, DecodeError::kTooShort);
  EXPECT_EQ(with(2, 9), DecodeError::kBadOpcode);
  EXPECT_EQ(with(3, 1), DecodeError::kReservedNonZero);
  EXPECT_EQ(with(12, 1), DecodeError::kReservedNonZero);
  {
    auto b = encode(Response{5, Opcode::kRead, 1, 7});  // positive status is not a thing
    EXPECT_EQ(decode_response(b).error, DecodeError::kBadParams);
  }
}

TEST(WireProtocol, KeepAliveAnswerCarriesTheExportSize) {
  // v10: 40 bits of 512-byte sectors, bits 32..39 in byte 3 and 0..31 in bytes 12..15.
  Response r{64, Opcode::kKeepAlive, 7, 0, 0x12'3456'789aull};
  auto b = encode(r);
  EXPECT_EQ(b[3], 0x12);
  EXPECT_EQ(b[12], 0x9a);
  EXPECT_EQ(b[15], 0x34);
  auto d = decode_response(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.export_sectors, 0x12'3456'789aull);
  d = decode_response(encode(Response{64, Opcode::kKeepAlive, 7, 0, kMaxExportSectors}));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value.export_sectors, kMaxExportSectors);
  // Any other answer carries none.
  EXPECT_EQ(decode_response(encode(Response{3, Opcode::kRead, 7, 0, 8})).error, DecodeError::kReservedNonZero);
}

TEST(WireProtocol, StatusErrnoMapping) {
  for (int e : {0, -EIO, -EACCES, -EBUSY, -EINVAL, -ENOSPC, -EROFS, -ERANGE, -EOPNOTSUPP, -ETIMEDOUT})
    EXPECT_EQ(status_to_errno(errno_to_status(e)), e) << e;
  EXPECT_EQ(errno_to_status(-ENOMEM), int32_t(Status::kIoError));  // no wire code: EIO
  EXPECT_EQ(status_to_errno(-9999), -EIO);                           // unknown code: EIO
}

TEST(WireProtocol, ReadDoneImmediate) {
  // bits 0..11 tag, 12..31 the generation's low 20 bits
  EXPECT_EQ(encode_read_done(0, 0), 0u);
  EXPECT_EQ(encode_read_done(4095, 0), 0xfffu);
  EXPECT_EQ(encode_read_done(1, 1), 0x1001u);
  EXPECT_EQ(encode_read_done(7, 0x123456), 0x23456007u);  // generation wraps at 20 bits
  ReadDone d = decode_read_done(0x23456007u);
  EXPECT_EQ(d.tag, 7);
  EXPECT_EQ(d.generation_low, 0x23456u);
  EXPECT_TRUE(read_done_matches(d, 0x23456));
  EXPECT_FALSE(read_done_matches(d, 0x23457));
  for (uint16_t tag : {0, 1, 100, 4095})
    for (uint32_t gen : {0u, 1u, 0xffffeu, 0xfffffu}) {
      ReadDone r = decode_read_done(encode_read_done(tag, gen));
      EXPECT_EQ(r.tag, tag);
      EXPECT_TRUE(read_done_matches(r, gen));
    }
}

// Every generation a client draws is carried whole by every message that names its command:
// a ReadDone cannot match a command whose generation differs only above the bits it carries
// (a 24-bit counter matched by 20 bits made a stale ReadDone complete the command 2^20 later).
TEST(WireProtocol, EveryGenerationDrawnRoundTripsThroughReadDone) {
  uint32_t gen = 0;
  for (uint32_t i = 0; i < (1u << 21) + 5; ++i) {
    gen = next_generation(gen);
    ASSERT_EQ(decode_read_done(encode_read_done(4095, gen)).generation_low, gen) << i;
    ASSERT_LE(gen, kGenerationMask);
  }
  EXPECT_EQ(next_generation(kGenerationMask), 0u);
  static_assert(kGenerationMask <= WorkId::kGenMask, "a work id carries every generation too");
}

TEST(WireProtocol, BatchedMessageLengths) {
  // Without BATCH a SEND holds exactly one message.
  EXPECT_EQ(messages_in(kCommandSize, kCommandSize, false), 1u);
  EXPECT_EQ(messages_in(2 * kCommandSize, kCommandSize, false), 0u);
  EXPECT_EQ(messages_in(kResponseSize, kResponseSize, false), 1u);
  EXPECT_EQ(messages_in(2 * kResponseSize, kResponseSize, false), 0u);
  // With it, 1..kMaxBatch whole messages.
  for (size_t n = 1; n <= kMaxBatch; ++n) {
    EXPECT_EQ(messages_in(uint32_t(n * kCommandSize), kCommandSize, true), n);
    EXPECT_EQ(messages_in(uint32_t(n * kResponseSize), kResponseSize, true), n);
  }
  EXPECT_EQ(messages_in(uint32_t((kMaxBatch + 1) * kCommandSize), kCommandSize, true), 0u);
  EXPECT_EQ(messages_in(0, kCommandSize, true), 0u);
  EXPECT_EQ(messages_in(kCommandSize + 1, kCommandSize, true), 0u);   // a torn message
  EXPECT_EQ(messages_in(kCommandSize - 1, kCommandSize, false), 0u);  // a short one
  EXPECT_EQ(flags_known_in(1), 0);
  EXPECT_EQ(flags_known_in(2), kConnectReadImm);
  EXPECT_EQ(flags_known_in(3), kConnectReadImm | kConnectBatch);
}

}  // namespace
}  // namespace ublkrdma::wire
