#pragma once
// Addresses as users write them: "ADDR", "ADDR:PORT", "[V6ADDR]:PORT" or "V6ADDR" (no port).
#include <cstdint>
#include <string>
#include <string_view>

namespace ublkrdma {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// The host and its port (`default_port` where none is given). Throws SetupError
// "<what> TEXT: <reason>" for a missing ']', an empty host or a port outside 1..65535.
HostPort parse_host_port(std::string_view text, uint16_t default_port, std::string_view what);

}  // namespace ublkrdma
