// REJECT private data, as the client decodes it: the decoder accepts exactly what
// docs/protocol.md allows, maps a newer server's unknown reasons to "internal", and otherwise
// re-encodes to the same bytes.
#include <array>
#include <cstring>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::fuzz {
namespace {

constexpr uint16_t kLastKnownStatus = 9;  // export unavailable

bool spec_valid(const uint8_t* p, size_t n) {
  return n >= 16 && le(p, 4) == 0x4d445255 && le(p + 6, 2) != 0 && all_zero(p + 10, 6);
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  auto d = wire::decode_reject_data({data, size});
  FUZZ_CHECK(d.ok() == spec_valid(data, size));
  if (!d.ok()) return 0;
  FUZZ_CHECK(d.value.status != wire::ConnectStatus::kOk && uint16_t(d.value.status) <= kLastKnownStatus);
  std::array<uint8_t, wire::kRejectDataSize> expect;
  std::memcpy(expect.data(), data, expect.size());
  if (le(data + 6, 2) > kLastKnownStatus) {
    expect[6] = uint8_t(wire::ConnectStatus::kInternal);
    expect[7] = 0;
  }
  FUZZ_CHECK(wire::encode(d.value) == expect);
  FUZZ_CHECK(wire::connect_status_text(d.value.status) != nullptr);
  return 0;
}
