#pragma once
// Pre-shared keys and the proofs of protocol v9's authentication (docs/protocol.md,
// "Authentication"; docs/security.md): keys in their text form and key files, fresh nonces,
// and the HMAC-SHA-256 proofs both sides compute over the same inputs. OpenSSL's libcrypto does
// the cryptography; nothing here is a primitive of our own.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "transport/auth_protocol.h"

namespace ublkrdma::auth {

inline constexpr size_t kKeySize = 32;
using Key = std::array<uint8_t, kKeySize>;

// The text form: "URDMA-KEY-1:" base64(key || the first 4 bytes of SHA-256(key)) ":", so that a
// key names its format and a mangled copy is caught before it fails an authentication.
inline constexpr std::string_view kKeyPrefix = "URDMA-KEY-1:";
std::string format_key(const Key& key);
struct ParsedKey {
  Key key{};
  const char* error = nullptr;  // null when the text was a key
};
ParsedKey parse_key(std::string_view text);

// A new random key, or fresh nonce (the system's CSPRNG through libcrypto). Throw SetupError.
Key generate_key();
wire::Nonce random_nonce();

// Throws SetupError unless the file behind `fd` is readable by its owner only (no group or
// other permission bits): a key anyone on the machine can read is not a secret.
void check_private_file(int fd, const std::string& path);
// The whole of a file that must be private (check_private_file), at most 64 KiB.
std::string read_private_file(const std::string& path);
// A key file: one key in text form; blank lines and lines starting with '#' are ignored.
// Throws SetupError (missing, not private, no key, more than one, malformed) naming the file.
Key read_key_file(const std::string& path);

// The machine's host name: the default host id (add) and server id (serve).
std::string default_identity();

// What both proofs cover (docs/protocol.md lays the bytes out).
struct ProofInputs {
  wire::Nonce server_nonce{};
  wire::Nonce client_nonce{};
  uint64_t session_id = 0;
  uint16_t queue_id = 0;
  std::string_view export_name;
  std::string_view host_id;
  std::string_view server_id;
  uint8_t request_flags = 0;  // AuthRequest::flags
};
enum class Role : uint8_t { kClient, kServer };
// HMAC-SHA-256 under `key` of the role's label and the inputs.
wire::Proof compute_proof(const Key& key, Role role, const ProofInputs& in);
// Constant-time comparison.
bool proofs_equal(const wire::Proof& a, const wire::Proof& b);

}  // namespace ublkrdma::auth
