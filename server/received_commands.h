#pragma once
// What one receive holds, as the server takes it (docs/protocol.md, "What the server checks"):
// one Command, or with BATCH 1..kMaxBatch back to back. A length that fits neither is malformed:
// only the first 48 bytes of the slot are decoded, so that their refusal echoes the tag and
// generation they name. Pure, so that the fuzzer runs exactly what the connection runs.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "transport/wire_protocol.h"

namespace ublkrdma::server {

struct ReceivedCommands {
  std::array<wire::Decoded<wire::Command>, wire::kMaxBatch> commands;
  size_t count = 0;        // 1..kMaxBatch: a malformed message is refused as one command
  bool malformed = false;  // the message's length was wrong: each command in it is refused
};

// `slot`: the receive buffer the message landed in; `byte_len`: the length its completion
// reports. A message the slot cannot hold (the NIC would have failed it) is malformed too.
inline ReceivedCommands decode_received(std::span<const uint8_t> slot, uint32_t byte_len, bool batch) {
  ReceivedCommands r;
  r.count = wire::messages_in(byte_len, wire::kCommandSize, batch);
  r.malformed = r.count == 0 || byte_len > slot.size();
  if (r.malformed) r.count = 1;
  // decode_command reads the first kCommandSize bytes it is given (kTooShort on fewer).
  for (size_t i = 0; i < r.count; ++i) r.commands[i] = wire::decode_command(slot.subspan(i * wire::kCommandSize));
  return r;
}

}  // namespace ublkrdma::server
