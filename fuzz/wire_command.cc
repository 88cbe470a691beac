// A Command as the server decodes it from a receive: the decoder accepts exactly what
// docs/protocol.md allows (known opcode, known flags, reserved bytes zero), keeps the tag and
// generation a refusal echoes even when it fails, and what it accepts re-encodes to the same bytes.
#include <cstring>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::fuzz {
namespace {

bool spec_valid(const uint8_t* p, size_t n) {
  if (n < 48) return false;
  uint8_t op = p[0];
  bool known_op = op == 0 || op == 1 || op == 2 || op == 3 || op == 5 || op == 0x10;
  return known_op && (p[1] & ~0x03) == 0 && all_zero(p + 32, 16);
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  auto d = wire::decode_command({data, size});
  FUZZ_CHECK(d.ok() == spec_valid(data, size));
  if (size < wire::kCommandSize) return 0;
  // A refusal answers with the tag and generation as received.
  FUZZ_CHECK(d.value.tag == le(data + 2, 2) && d.value.generation == le(data + 4, 4));
  if (!d.ok()) return 0;
  auto bytes = wire::encode(d.value);
  FUZZ_CHECK(std::memcmp(bytes.data(), data, bytes.size()) == 0);
  return 0;
}
