#pragma once
// Checks one decoded command against the export and the connection's negotiated limits
// before anything touches memory. Pure: no state, no IO, no logging, so the server can count
// every rejection by reason and answer with an error status.
//
// Opcodes and flags are the protocol's (transport/protocol.h). FLUSH ignores offset and length
// (it touches no data). Flags: FUA on WRITEs only; PUSHED on WRITEs only, and only where the
// connection negotiated PUSH_WRITES; any other bit is rejected.
#include <cstdint>

#include "transport/protocol.h"

namespace ublkrdma::server {

struct CommandToValidate {
  uint8_t opcode;
  uint32_t flags;
  uint16_t tag;
  uint64_t offset;  // bytes
  uint32_t length;  // bytes
};

struct CommandLimits {
  uint64_t export_size;    // bytes (Backend::size())
  uint32_t block_size;     // power of two (Backend::block_size())
  bool read_only;          // Backend::read_only()
  uint32_t supported_ops;  // kSupports* bits (Backend::supported_ops())
  uint32_t max_io_bytes;   // negotiated per-command maximum
  uint32_t depth;          // negotiated queue depth: tags are 0..depth-1
  bool push_writes = false;  // PUSH_WRITES negotiated: WRITEs may carry wire::kCmdFlagPushed
};

enum class CommandCheck : uint8_t {
  kOk = 0,
  kUnknownOpcode,
  kUnknownFlags,   // a flag bit we do not know, FUA or PUSHED on something other than WRITE, or
                   // PUSHED where PUSH_WRITES was not negotiated
  kBadTag,         // tag >= depth
  kZeroLength,     // READ/WRITE/DISCARD/WRITE_ZEROES with length 0
  kTooLong,        // length > max_io_bytes
  kOutOfRange,     // offset + length > export size (or overflows)
  kMisaligned,     // offset or length not a multiple of the block size
  kReadOnly,       // WRITE/DISCARD/WRITE_ZEROES on a read-only export
  kNotSupported,   // FLUSH/FUA/DISCARD/WRITE_ZEROES the export does not support
};
inline constexpr unsigned kCommandCheckCount = 10;

CommandCheck validate_command(const CommandToValidate& cmd, const CommandLimits& limits);

// The negative errno to answer with: 0, -EINVAL, -ERANGE (kOutOfRange), -EROFS, -EOPNOTSUPP.
int command_check_errno(CommandCheck check);

// Short stable name ("out_of_range") for logs and per-reason counters.
const char* command_check_name(CommandCheck check);

}  // namespace ublkrdma::server
