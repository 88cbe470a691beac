// `--listen` / `--traddr` values (base/host_port.h): any text either parses as its header says
// ("[V6]:PORT", "[V6]", "HOST:PORT", or a host or bare IPv6 address without one) or throws
// SetupError (nothing else); what parses prints back to text that parses to the same.
#include <algorithm>
#include <string>
#include <string_view>

#include "base/errors.h"
#include "base/host_port.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  if (size < 2) return 0;
  uint16_t default_port = uint16_t(data[0] | data[1] << 8);
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  HostPort hp;
  try {
    hp = parse_host_port(text, default_port, "--traddr");
  } catch (const SetupError& e) {
    FUZZ_CHECK(*e.what() != '\0');
    return 0;
  }
  FUZZ_CHECK(!hp.host.empty());
  size_t colons = size_t(std::count(text.begin(), text.end(), ':'));
  bool bracketed = text.starts_with('[');
  if (bracketed) {
    FUZZ_CHECK(text.substr(1).starts_with(hp.host + "]"));
  } else if (colons == 1) {
    FUZZ_CHECK(text.starts_with(hp.host + ":"));
  } else {
    FUZZ_CHECK(hp.host == text && hp.port == default_port);
  }
  bool port_given = bracketed ? text.size() > hp.host.size() + 2 : colons == 1;
  if (port_given) {
    // Decimal digits only (leading zeros allowed), 1..65535.
    std::string_view digits = text.substr(text.rfind(':') + 1);
    FUZZ_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos);
    unsigned v = 0;
    for (char c : digits) v = std::min(v * 10 + unsigned(c - '0'), 100000u);
    FUZZ_CHECK(v >= 1 && v == hp.port);
  } else {
    FUZZ_CHECK(hp.port == default_port);
  }

  // Printed the usual way, it reads back the same (hosts with brackets of their own aside).
  if (hp.port == 0 || hp.host.find_first_of("[]") != std::string::npos) return 0;
  std::string printed = hp.host.find(':') != std::string::npos ? "[" + hp.host + "]:" + std::to_string(hp.port)
                                                                : hp.host + ":" + std::to_string(hp.port);
  HostPort again = parse_host_port(printed, 1, "--traddr");
  FUZZ_CHECK(again.host == hp.host && again.port == hp.port);
  return 0;
}
