// What the client decodes from the server: a Response (the decoder accepts exactly what
// docs/protocol.md allows and re-encodes it to the same bytes; its status maps to a local errno
// and back) and the ReadDone immediate (the first 4 bytes: every value names one tag and
// generation, and encodes back to itself).
#include <cerrno>
#include <cstring>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::fuzz {
namespace {

bool spec_valid(const uint8_t* p, size_t n) {
  if (n < 16) return false;
  uint8_t op = p[2];
  bool known_op = op == 0 || op == 1 || op == 2 || op == 3 || op == 5 || op == 0x10;
  // Bytes 3 and 12..15: a KEEP_ALIVE answer's export size (v10), zero in any other answer.
  bool size_ok = op == 0x10 || (p[3] == 0 && all_zero(p + 12, 4));
  return known_op && size_ok && int32_t(uint32_t(le(p + 8, 4))) <= 0;
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  if (size >= 4) {
    uint32_t imm = uint32_t(le(data, 4));
    wire::ReadDone rd = wire::decode_read_done(imm);
    FUZZ_CHECK(rd.tag < 4096 && rd.generation_low <= wire::kGenerationMask);
    FUZZ_CHECK(wire::encode_read_done(rd.tag, rd.generation_low) == imm);
    FUZZ_CHECK(wire::read_done_matches(rd, rd.generation_low));
  }

  auto d = wire::decode_response({data, size});
  FUZZ_CHECK(d.ok() == spec_valid(data, size));
  if (!d.ok()) return 0;
  FUZZ_CHECK(d.value.export_sectors <= wire::kMaxExportSectors);
  FUZZ_CHECK(d.value.export_sectors == 0 || d.value.opcode == wire::Opcode::kKeepAlive);
  auto bytes = wire::encode(d.value);
  FUZZ_CHECK(std::memcmp(bytes.data(), data, bytes.size()) == 0);
  // Known codes map to their errno and back; any other negative code is EIO.
  int err = wire::status_to_errno(d.value.status);
  FUZZ_CHECK(err <= 0 && (err == 0) == (d.value.status == 0));
  int32_t back = wire::errno_to_status(err);
  FUZZ_CHECK(back == d.value.status || (err == -EIO && back == int32_t(wire::Status::kIoError)));
  return 0;
}
