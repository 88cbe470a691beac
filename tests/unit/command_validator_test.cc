#include "server/command_validator.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <set>
#include <string>

#include "server/backend.h"

namespace ublkrdma::server {
namespace {

constexpr uint64_t kSize = 1ull << 30;
constexpr uint32_t kAllOps = kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes;

CommandLimits limits(bool read_only = false, uint32_t ops = kAllOps, uint32_t block = 512) {
  return CommandLimits{kSize, block, read_only, ops, 1u << 20, 128};
}

CommandToValidate cmd(wire::Opcode op, uint64_t offset = 0, uint32_t length = 4096, uint16_t tag = 0,
                      uint32_t flags = 0) {
  return CommandToValidate{uint8_t(op), flags, tag, offset, length};
}

constexpr wire::Opcode kRangeOps[] = {wire::Opcode::kRead, wire::Opcode::kWrite, wire::Opcode::kDiscard, wire::Opcode::kWriteZeroes};

TEST(CommandValidator, AcceptsEveryOpInRange) {
  for (wire::Opcode op : kRangeOps) EXPECT_EQ(validate_command(cmd(op), limits()), CommandCheck::kOk) << int(op);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 0, 0), limits()), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagFua), limits()), CommandCheck::kOk);
}

TEST(CommandValidator, UnknownOpcodes) {
  for (int op : {4, 6, 7, 0x20, 0xff}) {
    CommandToValidate c{uint8_t(op), 0, 0, 0, 4096};
    EXPECT_EQ(validate_command(c, limits()), CommandCheck::kUnknownOpcode) << op;
  }
}

TEST(CommandValidator, Flags) {
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, 1u << 2), limits()), CommandCheck::kUnknownFlags);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, 0x80000000u), limits()), CommandCheck::kUnknownFlags);
  for (wire::Opcode op : {wire::Opcode::kRead, wire::Opcode::kDiscard, wire::Opcode::kWriteZeroes})
    EXPECT_EQ(validate_command(cmd(op, 0, 4096, 0, wire::kCmdFlagFua), limits()), CommandCheck::kUnknownFlags);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 0, 0, 0, wire::kCmdFlagFua), limits()), CommandCheck::kUnknownFlags);
}

// PUSHED (the data is already in the export) only on a WRITE, only where it was negotiated,
// and it changes none of the other checks: the range is still the export's.
TEST(CommandValidator, PushedWrites) {
  CommandLimits push = limits();
  push.push_writes = true;
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagPushed), limits()),
            CommandCheck::kUnknownFlags);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagPushed), push), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagPushed | wire::kCmdFlagFua), push),
            CommandCheck::kOk);
  for (wire::Opcode op : {wire::Opcode::kRead, wire::Opcode::kDiscard, wire::Opcode::kWriteZeroes})
    EXPECT_EQ(validate_command(cmd(op, 0, 4096, 0, wire::kCmdFlagPushed), push), CommandCheck::kUnknownFlags);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, kSize - 512, 4096, 0, wire::kCmdFlagPushed), push),
            CommandCheck::kOutOfRange);
  CommandLimits ro = push;
  ro.read_only = true;
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagPushed), ro), CommandCheck::kReadOnly);
}

TEST(CommandValidator, TagBelowDepth) {
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead, 0, 4096, 127), limits()), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead, 0, 4096, 128), limits()), CommandCheck::kBadTag);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead, 0, 4096, 0xffff), limits()), CommandCheck::kBadTag);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 0, 0, 128), limits()), CommandCheck::kBadTag);
}

TEST(CommandValidator, ZeroLength) {
  for (wire::Opcode op : kRangeOps) EXPECT_EQ(validate_command(cmd(op, 0, 0), limits()), CommandCheck::kZeroLength);
}

TEST(CommandValidator, MaxIoBytes) {
  for (wire::Opcode op : kRangeOps) {
    EXPECT_EQ(validate_command(cmd(op, 0, 1u << 20), limits()), CommandCheck::kOk);
    EXPECT_EQ(validate_command(cmd(op, 0, (1u << 20) + 512), limits()), CommandCheck::kTooLong);
    EXPECT_EQ(validate_command(cmd(op, 0, UINT32_MAX), limits()), CommandCheck::kTooLong);
  }
}

TEST(CommandValidator, RangeBoundaries) {
  for (wire::Opcode op : kRangeOps) {
    EXPECT_EQ(validate_command(cmd(op, kSize - 4096, 4096), limits()), CommandCheck::kOk);   // ends at size
    EXPECT_EQ(validate_command(cmd(op, kSize - 512, 512), limits()), CommandCheck::kOk);
    EXPECT_EQ(validate_command(cmd(op, kSize - 4096 + 512, 4096), limits()), CommandCheck::kOutOfRange);  // +1 block
    EXPECT_EQ(validate_command(cmd(op, kSize - 4095, 4096), limits()), CommandCheck::kOutOfRange);  // +1 byte
    EXPECT_EQ(validate_command(cmd(op, kSize, 512), limits()), CommandCheck::kOutOfRange);
    EXPECT_EQ(validate_command(cmd(op, kSize + 512, 512), limits()), CommandCheck::kOutOfRange);
    // offset + length wraps around 2^64: must not look small.
    EXPECT_EQ(validate_command(cmd(op, UINT64_MAX - 511, 4096), limits()), CommandCheck::kOutOfRange);
    EXPECT_EQ(validate_command(cmd(op, UINT64_MAX - 4095, 4096), limits()), CommandCheck::kOutOfRange);
    EXPECT_EQ(validate_command(cmd(op, UINT64_MAX, 512), limits()), CommandCheck::kOutOfRange);
  }
}

TEST(CommandValidator, RangeBoundaryOfAnUnalignedSize) {
  // An export size that is not a multiple of the block size is a server bug, but stay safe.
  CommandLimits l = limits();
  l.export_size = 4096 + 100;
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead, 4096, 512), l), CommandCheck::kOutOfRange);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead, 3584, 512), l), CommandCheck::kOk);
}

TEST(CommandValidator, Alignment) {
  for (wire::Opcode op : kRangeOps) {
    EXPECT_EQ(validate_command(cmd(op, 1, 4096), limits()), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 511, 4096), limits()), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 0, 4095), limits()), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 0, 1), limits()), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 512, 512), limits()), CommandCheck::kOk);
    // 4096-byte blocks.
    EXPECT_EQ(validate_command(cmd(op, 512, 4096), limits(false, kAllOps, 4096)), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 0, 512), limits(false, kAllOps, 4096)), CommandCheck::kMisaligned);
    EXPECT_EQ(validate_command(cmd(op, 8192, 4096), limits(false, kAllOps, 4096)), CommandCheck::kOk);
  }
  // A broken block size never lets anything through.
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead), limits(false, kAllOps, 0)), CommandCheck::kMisaligned);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead), limits(false, kAllOps, 1000)), CommandCheck::kMisaligned);
}

TEST(CommandValidator, FlushIgnoresRange) {
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, UINT64_MAX, UINT32_MAX), limits()), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 3, 0), limits()), CommandCheck::kOk);
}

TEST(CommandValidator, ReadOnly) {
  CommandLimits ro = limits(true);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead), ro), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 0, 0), ro), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite), ro), CommandCheck::kReadOnly);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagFua), ro), CommandCheck::kReadOnly);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kDiscard), ro), CommandCheck::kReadOnly);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWriteZeroes), ro), CommandCheck::kReadOnly);
  // Range problems are still reported as such on a read-only export.
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, kSize, 512), ro), CommandCheck::kOutOfRange);
}

TEST(CommandValidator, UnsupportedOps) {
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kFlush, 0, 0), limits(false, kAllOps & ~kSupportsFlush)),
            CommandCheck::kNotSupported);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite, 0, 4096, 0, wire::kCmdFlagFua), limits(false, kAllOps & ~kSupportsFua)),
            CommandCheck::kNotSupported);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite), limits(false, kAllOps & ~kSupportsFua)), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kDiscard), limits(false, kAllOps & ~kSupportsDiscard)),
            CommandCheck::kNotSupported);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWriteZeroes), limits(false, kAllOps & ~kSupportsWriteZeroes)),
            CommandCheck::kNotSupported);
  // READ and WRITE need no bit.
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kRead), limits(false, 0)), CommandCheck::kOk);
  EXPECT_EQ(validate_command(cmd(wire::Opcode::kWrite), limits(false, 0)), CommandCheck::kOk);
}

TEST(CommandValidator, ErrnoAndNames) {
  EXPECT_EQ(command_check_errno(CommandCheck::kOk), 0);
  EXPECT_EQ(command_check_errno(CommandCheck::kOutOfRange), -ERANGE);
  EXPECT_EQ(command_check_errno(CommandCheck::kReadOnly), -EROFS);
  EXPECT_EQ(command_check_errno(CommandCheck::kNotSupported), -EOPNOTSUPP);
  std::set<std::string> names;
  for (unsigned i = 0; i < kCommandCheckCount; ++i) {
    auto c = CommandCheck(i);
    if (c != CommandCheck::kOk) {
      EXPECT_LT(command_check_errno(c), 0) << i;
    }
    names.insert(command_check_name(c));
  }
  EXPECT_EQ(names.size(), kCommandCheckCount);
  EXPECT_EQ(names.count("unknown"), 0u);
  EXPECT_STREQ(command_check_name(CommandCheck::kOutOfRange), "out_of_range");
}

}  // namespace
}  // namespace ublkrdma::server
