#pragma once
// The protocol's vocabulary, in one place: the opcodes, the command flags and the default port.
// The rdma client maps ublk's requests onto them, the wire codec (wire_protocol.h) encodes and
// checks them, and the server's validator and backends act on them as decoded: no other set of
// opcodes or flags exists beside these.
#include <cstdint>

namespace ublkrdma::wire {

inline constexpr uint16_t kDefaultPort = 18520;

// The ublk numbering (ublk/uapi.h kOp*), so the client's mapping is 1:1; 4 (ublk's WRITE_SAME)
// is not part of the protocol. KEEP_ALIVE is the protocol's own (v8), far from ublk's numbers.
enum class Opcode : uint8_t {
  kRead = 0,
  kWrite = 1,
  kFlush = 2,
  kDiscard = 3,
  kWriteZeroes = 5,
  kKeepAlive = 0x10,  // v8, with KEEP_ALIVE negotiated: answered at once, touches no data
};
constexpr bool is_known_opcode(uint8_t op) { return op <= 3 || op == 5 || op == 0x10; }

// Command flags.
inline constexpr uint8_t kCmdFlagFua = 1u << 0;     // WRITE: durable before the response
inline constexpr uint8_t kCmdFlagPushed = 1u << 1;  // WRITE (v4, PUSH_WRITES): the data is already there
inline constexpr uint8_t kCmdFlagsKnown = kCmdFlagFua | kCmdFlagPushed;

}  // namespace ublkrdma::wire
