// CONNECT private data, as the server decodes it from any peer: the decoder accepts exactly what
// docs/protocol.md allows, reports the errors negotiation turns into distinct reject reasons,
// and what it accepts re-encodes to the same bytes.
#include <cstring>
#include <iterator>
#include <string_view>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::fuzz {
namespace {

bool name_char(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

// The CONNECT table: [A-Za-z0-9._-]{1,32}, NUL padded.
bool name_valid(const uint8_t* p) {
  size_t n = 0;
  while (n < 32 && p[n] != 0) {
    if (!name_char(p[n])) return false;
    ++n;
  }
  return n > 0 && all_zero(p + n, 32 - n);
}

// The flag bits each version defines (index: version 1..10; v10 added none); a newer client's
// are ignored.
constexpr uint16_t kDefinedFlags[] = {0, 0, 0x01, 0x03, 0x07, 0x0f, 0x1f, 0x1f, 0x3f, 0x7f, 0x7f};
constexpr uint16_t kNewestVersion = std::size(kDefinedFlags) - 1;

bool spec_valid(const uint8_t* p, size_t n) {
  if (n < 56 || le(p, 4) != 0x4d445255) return false;
  uint16_t version = uint16_t(le(p + 4, 2)), flags = uint16_t(le(p + 6, 2));
  if (version == 0) return false;
  if (version <= kNewestVersion && (flags & ~kDefinedFlags[version])) return false;
  uint16_t depth = uint16_t(le(p + 10, 2));
  uint32_t max_io = uint32_t(le(p + 12, 4));
  return depth >= 1 && depth <= 4096 && max_io > 0 && max_io % 4096 == 0 && name_valid(p + 24);
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  auto d = wire::decode_connect_request({data, size});
  FUZZ_CHECK(d.ok() == spec_valid(data, size));
  // Negotiation answers these three with their own reject reasons.
  FUZZ_CHECK((d.error == wire::DecodeError::kTooShort) == (size < wire::kConnectRequestSize));
  if (size >= wire::kConnectRequestSize && le(data, 4) == wire::kMagic) {
    uint16_t version = uint16_t(le(data + 4, 2)), flags = uint16_t(le(data + 6, 2));
    FUZZ_CHECK((d.error == wire::DecodeError::kBadVersion) == (version == 0));
    bool flags_ok = version > kNewestVersion || (flags & ~kDefinedFlags[version]) == 0;
    if (version != 0 && flags_ok) FUZZ_CHECK((d.error == wire::DecodeError::kBadName) == !name_valid(data + 24));
  }
  if (!d.ok()) return 0;

  // Only the first 56 bytes count (rdma_cm may deliver more).
  auto again = wire::decode_connect_request({data, wire::kConnectRequestSize});
  FUZZ_CHECK(again.ok());
  auto bytes = wire::encode(d.value);
  FUZZ_CHECK(std::memcmp(bytes.data(), data, bytes.size()) == 0);
  // The name as the server looks it up, and as a client would set it.
  std::string_view name = d.value.name();
  FUZZ_CHECK(!name.empty() && name.size() <= wire::kExportNameMax);
  wire::ConnectRequest r = d.value;
  FUZZ_CHECK(r.set_name(name));
  FUZZ_CHECK(r.export_name == d.value.export_name);
  return 0;
}
