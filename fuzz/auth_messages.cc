// Protocol v9's authentication messages (docs/protocol.md, "Authentication"): each decoder
// accepts exactly what the layout allows and re-encodes it to the same bytes; and the server's
// decision on an arbitrary AUTH_REQUEST never authenticates it (a forged proof would need the key).
#include <cstring>

#include "fuzz/bytes.h"
#include "fuzz/fuzz_check.h"
#include "server/auth_keys.h"
#include "server/authenticator.h"
#include "transport/auth_protocol.h"

namespace ublkrdma::fuzz {
namespace {

bool identity_ok(const uint8_t* p) {
  size_t n = 0;
  while (n < wire::kIdentityMax && p[n] != 0) {
    if (!wire::identity_char_ok(char(p[n]))) return false;
    ++n;
  }
  return n > 0 && all_zero(p + n, wire::kIdentityMax - n);
}

const server::AuthTable& table() {
  static const server::AuthTable t = server::AuthTable::parse(
      "host-a URDMA-KEY-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9jDc0p: *\n", "fuzz");
  return t;
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  std::span<const uint8_t> in(data, size);

  auto req = wire::decode_auth_request(in);
  bool req_valid = size == wire::kAuthRequestSize && le(data, 4) == wire::kMagic && data[4] == 1 && data[5] <= 1 &&
                   data[6] == 0 && data[7] == 0 && identity_ok(data + 40);
  FUZZ_CHECK(req.ok() == req_valid);
  if (req.ok()) FUZZ_CHECK(std::memcmp(wire::encode(req.value).data(), data, size) == 0);

  auto res = wire::decode_auth_result(in);
  if (res.ok()) {
    FUZZ_CHECK(size == wire::kAuthResultSize && le(data, 4) == wire::kMagic && data[4] == 2);
    if (le(data + 6, 2) <= uint16_t(wire::AuthStatus::kMalformed))
      FUZZ_CHECK(std::memcmp(wire::encode(res.value).data(), data, size) == 0);
    if (res.value.status != wire::AuthStatus::kOk)
      FUZZ_CHECK(res.value.window_rkey == 0 && res.value.window_addr == 0);
  }

  auto aa = wire::decode_accept_auth(in);
  FUZZ_CHECK(aa.ok() == (size >= wire::kAcceptAuthSize && identity_ok(data + 32)));
  if (aa.ok()) FUZZ_CHECK(std::memcmp(wire::encode(aa.value).data(), data, wire::kAcceptAuthSize) == 0);

  server::AuthContext ctx;
  ctx.table = &table();
  static const std::optional<auth::Key> no_server_key;
  ctx.server_key = &no_server_key;
  ctx.server_id = "srv";
  ctx.export_name = "vol0";
  server::AuthVerdict v = server::check_auth_request(in, ctx);
  FUZZ_CHECK(!v.ok());
  FUZZ_CHECK(v.result.window_rkey == 0 && v.result.window_addr == 0);
  return 0;
}
