#include "server/command_validator.h"

#include <cerrno>

#include "server/backend.h"

namespace ublkrdma::server {


CommandCheck validate_command(const CommandToValidate& cmd, const CommandLimits& limits) {
  bool writes = false;  // changes the export's contents
  bool has_range = true;
  uint32_t needs = 0;   // kSupports* bit the op needs
  switch (wire::Opcode(cmd.opcode)) {
    case wire::Opcode::kRead:
      break;
    case wire::Opcode::kWrite:
      writes = true;
      if (cmd.flags & wire::kCmdFlagFua) needs = kSupportsFua;
      break;
    case wire::Opcode::kFlush:
      has_range = false;
      needs = kSupportsFlush;
      break;
    case wire::Opcode::kDiscard:
      writes = true;
      needs = kSupportsDiscard;
      break;
    case wire::Opcode::kWriteZeroes:
      writes = true;
      needs = kSupportsWriteZeroes;
      break;
    default:
      return CommandCheck::kUnknownOpcode;
  }

  if (cmd.flags & ~(wire::kCmdFlagFua | wire::kCmdFlagPushed)) return CommandCheck::kUnknownFlags;
  if ((cmd.flags & (wire::kCmdFlagFua | wire::kCmdFlagPushed)) && wire::Opcode(cmd.opcode) != wire::Opcode::kWrite)
    return CommandCheck::kUnknownFlags;
  if ((cmd.flags & wire::kCmdFlagPushed) && !limits.push_writes) return CommandCheck::kUnknownFlags;
  if (cmd.tag >= limits.depth) return CommandCheck::kBadTag;

  if (has_range) {
    if (cmd.length == 0) return CommandCheck::kZeroLength;
    if (cmd.length > limits.max_io_bytes) return CommandCheck::kTooLong;
    // Overflow-safe form of offset + length > export_size.
    if (cmd.offset > limits.export_size || cmd.length > limits.export_size - cmd.offset)
      return CommandCheck::kOutOfRange;
    // A zero or non-power-of-two block size would be a server bug: treat as misaligned.
    uint32_t bs = limits.block_size;
    if (bs == 0 || (bs & (bs - 1)) != 0) return CommandCheck::kMisaligned;
    if ((cmd.offset & (bs - 1)) != 0 || (cmd.length & (bs - 1)) != 0) return CommandCheck::kMisaligned;
  }

  if (writes && limits.read_only) return CommandCheck::kReadOnly;
  if (needs && !(limits.supported_ops & needs)) return CommandCheck::kNotSupported;
  return CommandCheck::kOk;
}

int command_check_errno(CommandCheck check) {
  switch (check) {
    case CommandCheck::kOk:
      return 0;
    case CommandCheck::kOutOfRange:
      return -ERANGE;
    case CommandCheck::kReadOnly:
      return -EROFS;
    case CommandCheck::kNotSupported:
      return -EOPNOTSUPP;
    case CommandCheck::kUnknownOpcode:
    case CommandCheck::kUnknownFlags:
    case CommandCheck::kBadTag:
    case CommandCheck::kZeroLength:
    case CommandCheck::kTooLong:
    case CommandCheck::kMisaligned:
      return -EINVAL;
  }
  return -EINVAL;
}

const char* command_check_name(CommandCheck check) {
  switch (check) {
    case CommandCheck::kOk: return "ok";
    case CommandCheck::kUnknownOpcode: return "unknown_opcode";
    case CommandCheck::kUnknownFlags: return "unknown_flags";
    case CommandCheck::kBadTag: return "bad_tag";
    case CommandCheck::kZeroLength: return "zero_length";
    case CommandCheck::kTooLong: return "too_long";
    case CommandCheck::kOutOfRange: return "out_of_range";
    case CommandCheck::kMisaligned: return "misaligned";
    case CommandCheck::kReadOnly: return "read_only";
    case CommandCheck::kNotSupported: return "not_supported";
  }
  return "unknown";
}

}  // namespace ublkrdma::server
