#pragma once
// The authentication messages of protocol version 9 (docs/protocol.md, "Authentication"): the
// ACCEPT's extension that carries the server's nonce and identity, the client's AUTH_REQUEST
// and the server's AUTH_RESULT, which carries the grants. Byte-by-byte codecs like
// wire_protocol.h; the proofs themselves are computed in transport/auth.h.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "transport/wire_protocol.h"

namespace ublkrdma::wire {

inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kProofSize = 32;  // HMAC-SHA-256
inline constexpr size_t kIdentityMax = 64;
inline constexpr size_t kAcceptAuthSize = 96;
inline constexpr size_t kAuthRequestSize = 136;
inline constexpr size_t kAuthResultSize = 64;
static_assert(kAcceptDataSize + kAcceptAuthSize <= 196, "ACCEPT private data is limited to 196 bytes");

// Message types (byte 4 of AUTH_REQUEST and AUTH_RESULT).
inline constexpr uint8_t kAuthRequestType = 1;
inline constexpr uint8_t kAuthResultType = 2;

// AuthRequest::flags.
inline constexpr uint8_t kAuthServerKey = 1u << 0;  // the server must prove itself with its own key
inline constexpr uint8_t kAuthRequestFlagsKnown = kAuthServerKey;

// Why an authentication failed (AuthResult::status). Stable numbers: never renumber.
enum class AuthStatus : uint16_t {
  kOk = 0,
  kFailed = 1,            // unknown host id or wrong key (the client is not told which)
  kExportDenied = 2,      // authenticated, but the host may not attach this export
  kNoServerKey = 3,       // the client asked for the server's own key; the server has none
  kMalformed = 4,         // the AUTH_REQUEST did not decode
};
const char* auth_status_text(AuthStatus s);

// Host ids and server ids: [A-Za-z0-9._:@-]{1,64} (an NQN fits), NUL padded on the wire.
constexpr bool identity_char_ok(char c) { return detail::export_name_char_ok(c) || c == ':' || c == '@'; }
constexpr bool valid_identity(std::string_view id) {
  if (id.empty() || id.size() > kIdentityMax) return false;
  for (char c : id)
    if (!identity_char_ok(c)) return false;
  return true;
}

using Nonce = std::array<uint8_t, kNonceSize>;
using Proof = std::array<uint8_t, kProofSize>;
using Identity = std::array<char, kIdentityMax>;

constexpr std::string_view identity_view(const Identity& id) {
  size_t n = 0;
  while (n < kIdentityMax && id[n] != '\0') ++n;
  return {id.data(), n};
}
// False (and `out` unchanged) if `id` is not a valid identity.
constexpr bool set_identity(Identity& out, std::string_view id) {
  if (!valid_identity(id)) return false;
  out = {};
  for (size_t i = 0; i < id.size(); ++i) out[i] = id[i];
  return true;
}

namespace detail {
// An identity field: 1..64 valid characters, then only NULs.
constexpr bool get_identity(std::span<const uint8_t> b, size_t off, Identity& out) {
  for (size_t i = 0; i < kIdentityMax; ++i) out[i] = char(b[off + i]);
  size_t n = 0;
  while (n < kIdentityMax && out[n] != '\0') {
    if (!identity_char_ok(out[n])) return false;
    ++n;
  }
  if (n == 0) return false;
  for (size_t i = n; i < kIdentityMax; ++i)
    if (out[i] != '\0') return false;
  return true;
}
template <size_t N>
constexpr void put_bytes(std::span<uint8_t> b, size_t off, const std::array<uint8_t, N>& v) {
  for (size_t i = 0; i < N; ++i) b[off + i] = v[i];
}
template <size_t N>
constexpr void get_bytes(std::span<const uint8_t> b, size_t off, std::array<uint8_t, N>& v) {
  for (size_t i = 0; i < N; ++i) v[i] = b[off + i];
}
}  // namespace detail

// ---------------------------------------------------------------- AcceptAuth
// Follows the 48 ACCEPT bytes when the ACCEPT has kFeatureAuth.
// offset size field (from the start of the ACCEPT)
// 48    32    server_nonce (fresh random bytes for this connection)
// 80    64    server_id (the server's identity, NUL padded)
struct AcceptAuth {
  Nonce server_nonce{};
  Identity server_id{};
};

constexpr std::array<uint8_t, kAcceptAuthSize> encode(const AcceptAuth& a) {
  std::array<uint8_t, kAcceptAuthSize> b{};
  detail::put_bytes(b, 0, a.server_nonce);
  for (size_t i = 0; i < kIdentityMax; ++i) b[32 + i] = uint8_t(a.server_id[i]);
  return b;
}
// `b` starts at the ACCEPT's byte 48.
constexpr Decoded<AcceptAuth> decode_accept_auth(std::span<const uint8_t> b) {
  Decoded<AcceptAuth> d;
  if (b.size() < kAcceptAuthSize) return {{}, DecodeError::kTooShort};
  detail::get_bytes(b, 0, d.value.server_nonce);
  if (!detail::get_identity(b, 32, d.value.server_id)) return {d.value, DecodeError::kBadName};
  return d;
}

// ---------------------------------------------------------------- AuthRequest
// Client -> server, the first SEND on a connection whose ACCEPT has kFeatureAuth.
// offset size field
//  0     4    magic
//  4     1    type (kAuthRequestType)
//  5     1    flags (kAuthServerKey)
//  6     2    reserved (0)
//  8    32    client_nonce (fresh random bytes)
// 40    64    host_id (NUL padded)
// 104   32    client_proof (transport/auth.h: HMAC-SHA-256 under the host's key)
struct AuthRequest {
  uint8_t flags = 0;
  Nonce client_nonce{};
  Identity host_id{};
  Proof client_proof{};
};

constexpr std::array<uint8_t, kAuthRequestSize> encode(const AuthRequest& r) {
  std::array<uint8_t, kAuthRequestSize> b{};
  detail::put32(b, 0, kMagic);
  detail::put8(b, 4, kAuthRequestType);
  detail::put8(b, 5, r.flags);
  detail::put_bytes(b, 8, r.client_nonce);
  for (size_t i = 0; i < kIdentityMax; ++i) b[40 + i] = uint8_t(r.host_id[i]);
  detail::put_bytes(b, 104, r.client_proof);
  return b;
}

// Exactly kAuthRequestSize bytes: a receive of any other length is not one.
constexpr Decoded<AuthRequest> decode_auth_request(std::span<const uint8_t> b) {
  Decoded<AuthRequest> d;
  if (b.size() != kAuthRequestSize) return {{}, DecodeError::kTooShort};
  if (detail::get32(b, 0) != kMagic) return {{}, DecodeError::kBadMagic};
  if (detail::get8(b, 4) != kAuthRequestType) return {{}, DecodeError::kBadOpcode};
  AuthRequest& r = d.value;
  r.flags = detail::get8(b, 5);
  if (r.flags & ~kAuthRequestFlagsKnown) return {r, DecodeError::kBadFlags};
  if (detail::get16(b, 6) != 0) return {r, DecodeError::kReservedNonZero};
  detail::get_bytes(b, 8, r.client_nonce);
  if (!detail::get_identity(b, 40, r.host_id)) return {r, DecodeError::kBadName};
  detail::get_bytes(b, 104, r.client_proof);
  return d;
}

// ---------------------------------------------------------------- AuthResult
// Server -> client, the answer to AUTH_REQUEST. On success it carries what the ACCEPT left out:
// the window (with PUSH_WRITES or PULL_READS), registered for remote access only now.
// offset size field
//  0     4    magic
//  4     1    type (kAuthResultType)
//  5     1    reserved (0)
//  6     2    status (AuthStatus)
//  8     4    window_rkey (status 0 and a window feature: as AcceptData::window_rkey; else 0)
// 12     4    reserved (0)
// 16     8    window_addr (likewise)
// 24    32    server_proof (status 0: HMAC-SHA-256 under the host's or the server's key; else 0)
// 56     8    reserved (0)
struct AuthResult {
  AuthStatus status = AuthStatus::kOk;
  uint32_t window_rkey = 0;
  uint64_t window_addr = 0;
  Proof server_proof{};
};

constexpr std::array<uint8_t, kAuthResultSize> encode(const AuthResult& r) {
  std::array<uint8_t, kAuthResultSize> b{};
  detail::put32(b, 0, kMagic);
  detail::put8(b, 4, kAuthResultType);
  detail::put16(b, 6, uint16_t(r.status));
  detail::put32(b, 8, r.window_rkey);
  detail::put64(b, 16, r.window_addr);
  detail::put_bytes(b, 24, r.server_proof);
  return b;
}

// Unknown statuses from a newer server are failures: reported as kFailed.
constexpr Decoded<AuthResult> decode_auth_result(std::span<const uint8_t> b) {
  Decoded<AuthResult> d;
  if (b.size() != kAuthResultSize) return {{}, DecodeError::kTooShort};
  if (detail::get32(b, 0) != kMagic) return {{}, DecodeError::kBadMagic};
  if (detail::get8(b, 4) != kAuthResultType) return {{}, DecodeError::kBadOpcode};
  AuthResult& r = d.value;
  uint16_t s = detail::get16(b, 6);
  r.status = s > uint16_t(AuthStatus::kMalformed) ? AuthStatus::kFailed : AuthStatus(s);
  r.window_rkey = detail::get32(b, 8);
  r.window_addr = detail::get64(b, 16);
  detail::get_bytes(b, 24, r.server_proof);
  if (detail::get8(b, 5) != 0 || detail::get32(b, 12) != 0 || detail::get64(b, 56) != 0)
    return {r, DecodeError::kReservedNonZero};
  if (r.status != AuthStatus::kOk) {
    // A refusal grants nothing and proves nothing.
    if (r.window_rkey != 0 || r.window_addr != 0) return {r, DecodeError::kReservedNonZero};
    for (uint8_t x : r.server_proof)
      if (x != 0) return {r, DecodeError::kReservedNonZero};
  }
  return d;
}

static_assert([] {
  AuthRequest r;
  r.flags = kAuthServerKey;
  r.client_nonce[0] = 7;
  r.client_proof[31] = 9;
  set_identity(r.host_id, "host-1.example:x@y");
  auto d = decode_auth_request(encode(r));
  return d.ok() && d.value.flags == kAuthServerKey && d.value.client_nonce[0] == 7 &&
         d.value.client_proof[31] == 9 && identity_view(d.value.host_id) == "host-1.example:x@y";
}());
static_assert([] {
  AuthResult r{AuthStatus::kOk, 0x1234, 0x7f0000001000, {}};
  r.server_proof[0] = 1;
  auto d = decode_auth_result(encode(r));
  return d.ok() && d.value.window_rkey == 0x1234 && d.value.window_addr == 0x7f0000001000 && d.value.server_proof[0] == 1;
}());

}  // namespace ublkrdma::wire
