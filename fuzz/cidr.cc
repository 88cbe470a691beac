// `serve --allow` values: any text either parses to a network (host bits cleared, prefix within
// the family) or throws SetupError (nothing else); a network prints to text that parses back to
// itself and contains its own address, also as an IPv4-mapped IPv6 peer.
#include <netinet/in.h>

#include <cstring>
#include <string_view>

#include "base/errors.h"
#include "fuzz/fuzz_check.h"
#include "server/export_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::server;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Cidr c;
  try {
    c = parse_cidr(text);
  } catch (const SetupError& e) {
    FUZZ_CHECK(e.errno_value() == EINVAL && *e.what() != '\0');
    return 0;
  }
  FUZZ_CHECK(c.family == AF_INET || c.family == AF_INET6);
  unsigned bits = c.family == AF_INET ? 32 : 128;
  FUZZ_CHECK(c.prefix_length <= bits);
  for (unsigned bit = c.prefix_length; bit < 128; ++bit) FUZZ_CHECK((c.address[bit / 8] & (0x80u >> (bit % 8))) == 0);

  Cidr again = parse_cidr(c.to_string());
  FUZZ_CHECK(again.family == c.family && again.address == c.address && again.prefix_length == c.prefix_length);

  sockaddr_in6 v6{};
  v6.sin6_family = AF_INET6;
  if (c.family == AF_INET) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    std::memcpy(&v4.sin_addr, c.address.data(), 4);
    FUZZ_CHECK(c.contains(reinterpret_cast<const sockaddr*>(&v4)));
    v6.sin6_addr.s6_addr[10] = v6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(v6.sin6_addr.s6_addr + 12, c.address.data(), 4);
  } else {
    std::memcpy(v6.sin6_addr.s6_addr, c.address.data(), 16);
  }
  FUZZ_CHECK(c.contains(reinterpret_cast<const sockaddr*>(&v6)));
  FUZZ_CHECK(!c.contains(nullptr));
  return 0;
}
