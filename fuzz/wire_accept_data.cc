// ACCEPT private data, as the client decodes it from the server it dialled (which may be anyone
// listening there): the decoder accepts exactly what docs/protocol.md allows, and what it accepts
// re-encodes to the same bytes.
#include <cstring>
#include <iterator>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::fuzz {
namespace {

// The feature bits each version defines (index: version 1..10; v10 added none): the CONNECT
// flags' bits.
constexpr uint16_t kDefinedFeatures[] = {0, 0, 0x01, 0x03, 0x07, 0x0f, 0x1f, 0x1f, 0x3f, 0x7f, 0x7f};
constexpr uint16_t kNewestVersion = std::size(kDefinedFeatures) - 1;
constexpr uint16_t kPushWrites = 1 << 2, kPushSlots = 1 << 3, kPullReads = 1 << 4, kAuth = 1 << 6;
constexpr uint32_t kReadOnly = 1 << 0, kDiscard = 1 << 3, kWriteZeroes = 1 << 4;

bool spec_valid(const uint8_t* p, size_t n) {
  if (n < 48 || le(p, 4) != 0x4d445255) return false;
  uint16_t version = uint16_t(le(p + 4, 2));
  if (version < 1 || version > kNewestVersion) return false;  // chosen by the server: one the client speaks
  if (le(p + 6, 2) != 0 || p[19] != 0 || le(p + 30, 2) != 0) return false;  // status, reserved
  uint64_t export_size = le(p + 8, 8);
  uint16_t depth = uint16_t(le(p + 16, 2));
  uint8_t block_shift = p[18];
  uint32_t max_io = uint32_t(le(p + 20, 4));
  uint32_t export_flags = uint32_t(le(p + 24, 4));
  uint16_t features = uint16_t(le(p + 28, 2));
  uint32_t rkey = uint32_t(le(p + 32, 4)), instance_id = uint32_t(le(p + 36, 4));
  uint64_t addr = le(p + 40, 8);
  if (features & ~kDefinedFeatures[version]) return false;
  if (version < 7 && instance_id != 0) return false;
  // A window only with a feature that reaches into it; with AUTH (v9) none yet: the AUTH_RESULT
  // carries it. Before v9 its address is the server's (never 0); from v9 on it is zero-based.
  bool window = (features & (kPushWrites | kPullReads)) && !(features & kAuth);
  if (!window && (rkey != 0 || addr != 0)) return false;
  if (window && version < 9 && addr == 0) return false;
  if ((features & kPushWrites) && (export_flags & kReadOnly)) return false;
  if ((features & kPushSlots) && !(features & kPushWrites)) return false;
  if ((features & kPullReads) && (features & kPushSlots)) return false;
  if (export_flags & ~0x1fu) return false;
  // "A read-only export never advertises DISCARD or WRITE_ZEROES."
  if ((export_flags & kReadOnly) && (export_flags & (kDiscard | kWriteZeroes))) return false;
  if (block_shift < 9 || block_shift > 12 || export_size % (uint64_t(1) << block_shift) != 0) return false;
  // Depth and max IO are the client's, which CONNECT bounds to 1..4096 and multiples of 4096.
  return depth >= 1 && depth <= 4096 && max_io > 0 && max_io % 4096 == 0;
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  auto d = wire::decode_accept_data({data, size});
  FUZZ_CHECK(d.ok() == spec_valid(data, size));
  if (!d.ok()) return 0;
  auto bytes = wire::encode(d.value);
  FUZZ_CHECK(std::memcmp(bytes.data(), data, bytes.size()) == 0);
  // What the client derives from it stays inside what was granted.
  const wire::AcceptData& a = d.value;
  FUZZ_CHECK(!a.push_slots() || a.push_writes());
  FUZZ_CHECK(a.window_addr == 0 || (a.has_window() && !a.auth()));
  FUZZ_CHECK(!a.read_only() || !a.push_writes());
  return 0;
}
