#include "transport/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "base/errors.h"
#include "base/unique_fd.h"

namespace ublkrdma::auth {
namespace {

constexpr size_t kCheckSize = 4;
constexpr size_t kEncodedSize = 48;  // base64 of kKeySize + kCheckSize bytes, no padding
static_assert((kKeySize + kCheckSize) % 3 == 0 && (kKeySize + kCheckSize) / 3 * 4 == kEncodedSize);
constexpr size_t kMaxKeyFileBytes = 64 * 1024;

std::array<uint8_t, kCheckSize> check_of(const Key& key) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(key.data(), key.size(), digest);
  std::array<uint8_t, kCheckSize> c{};
  std::memcpy(c.data(), digest, kCheckSize);
  return c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string format_key(const Key& key) {
  uint8_t raw[kKeySize + kCheckSize];
  std::memcpy(raw, key.data(), kKeySize);
  auto check = check_of(key);
  std::memcpy(raw + kKeySize, check.data(), kCheckSize);
  char out[kEncodedSize + 1];
  EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out), raw, int(sizeof raw));
  OPENSSL_cleanse(raw, sizeof raw);
  std::string text = std::string(kKeyPrefix) + std::string(out, kEncodedSize) + ":";
  OPENSSL_cleanse(out, sizeof out);
  return text;
}

ParsedKey parse_key(std::string_view text) {
  ParsedKey p;
  text = trim(text);
  if (text.substr(0, kKeyPrefix.size()) != kKeyPrefix) {
    p.error = "not a ublk-rdma key (it must start with URDMA-KEY-1:; make one with `ublk-rdma gen-key`)";
    return p;
  }
  text.remove_prefix(kKeyPrefix.size());
  if (text.size() != kEncodedSize + 1 || text.back() != ':') {
    p.error = "malformed key: wrong length";
    return p;
  }
  for (size_t i = 0; i < kEncodedSize; ++i) {
    char c = text[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/')) {
      p.error = "malformed key: not base64";
      return p;
    }
  }
  uint8_t raw[kKeySize + kCheckSize + 2];  // EVP_DecodeBlock writes whole 3-byte groups
  int n = EVP_DecodeBlock(raw, reinterpret_cast<const unsigned char*>(text.data()), int(kEncodedSize));
  if (n != int(kKeySize + kCheckSize)) {
    p.error = "malformed key: not base64";
    return p;
  }
  std::memcpy(p.key.data(), raw, kKeySize);
  auto check = check_of(p.key);
  bool ok = CRYPTO_memcmp(check.data(), raw + kKeySize, kCheckSize) == 0;
  OPENSSL_cleanse(raw, sizeof raw);
  if (!ok) {
    p.key = {};
    p.error = "malformed key: its checksum does not match (a damaged copy?)";
  }
  return p;
}

Key generate_key() {
  Key k{};
  if (RAND_bytes(k.data(), int(k.size())) != 1) throw_setup("no random bytes for a key (RAND_bytes failed)");
  return k;
}

wire::Nonce random_nonce() {
  wire::Nonce n{};
  if (RAND_bytes(n.data(), int(n.size())) != 1) throw_setup("no random bytes for a nonce (RAND_bytes failed)");
  return n;
}

void check_private_file(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(errno, "stat {}", path);
  if (!S_ISREG(st.st_mode)) throw_setup("key file {} is not a regular file", path);
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw_setup("key file {} is accessible by group or others (mode {:04o}): refusing to use it; "
                "chmod 600 {}",
                path, st.st_mode & 07777, path);
}

std::string read_private_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw_errno(errno, "key file {}", path);
  check_private_file(fd.get(), path);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno(errno, "reading key file {}", path);
    if (r == 0) break;
    text.append(buf, size_t(r));
    if (text.size() > kMaxKeyFileBytes) throw_setup("key file {} is larger than {} bytes", path, kMaxKeyFileBytes);
  }
  OPENSSL_cleanse(buf, sizeof buf);
  return text;
}

Key read_key_file(const std::string& path) {
  std::string content = read_private_file(path);
  std::string_view text = content;
  std::optional<Key> key;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    if (key) throw_setup("key file {}:{}: more than one key", path, line_no);
    ParsedKey p = parse_key(line);
    if (p.error) throw_setup("key file {}:{}: {}", path, line_no, p.error);
    key = p.key;
  }
  OPENSSL_cleanse(content.data(), content.size());
  if (!key) throw_setup("key file {} holds no key (make one with `ublk-rdma gen-key > {}`)", path, path);
  return *key;
}

std::string default_identity() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

wire::Proof compute_proof(const Key& key, Role role, const ProofInputs& in) {
  // label (19) | server nonce (32) | client nonce (32) | session id (8) | queue id (2) |
  // export name (32) | host id (64) | server id (64) | request flags (1): fixed offsets, names
  // NUL padded, so that no two different inputs share a byte string.
  std::array<uint8_t, 19 + 2 * wire::kNonceSize + 8 + 2 + wire::kExportNameMax + 2 * wire::kIdentityMax + 1> m{};
  std::string_view label = role == Role::kClient ? "ublk-rdma v9 client" : "ublk-rdma v9 server";
  static_assert(std::string_view("ublk-rdma v9 client").size() == 19);
  size_t off = 0;
  auto put = [&](const void* p, size_t n, size_t field) {
    std::memcpy(m.data() + off, p, std::min(n, field));
    off += field;
  };
  put(label.data(), label.size(), 19);
  put(in.server_nonce.data(), wire::kNonceSize, wire::kNonceSize);
  put(in.client_nonce.data(), wire::kNonceSize, wire::kNonceSize);
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = uint8_t(in.session_id >> (8 * i));
  put(le, 8, 8);
  le[0] = uint8_t(in.queue_id);
  le[1] = uint8_t(in.queue_id >> 8);
  put(le, 2, 2);
  put(in.export_name.data(), in.export_name.size(), wire::kExportNameMax);
  put(in.host_id.data(), in.host_id.size(), wire::kIdentityMax);
  put(in.server_id.data(), in.server_id.size(), wire::kIdentityMax);
  put(&in.request_flags, 1, 1);
  wire::Proof proof{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), int(key.size()), m.data(), off, proof.data(), &len) || len != proof.size())
    throw_setup("HMAC-SHA-256 failed");
  return proof;
}

bool proofs_equal(const wire::Proof& a, const wire::Proof& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace ublkrdma::auth

namespace ublkrdma::wire {

const char* auth_status_text(AuthStatus s) {
  switch (s) {
    case AuthStatus::kOk: return "authenticated";
    case AuthStatus::kFailed: return "authentication failed (unknown host id or wrong key)";
    case AuthStatus::kExportDenied: return "this host may not attach this export";
    case AuthStatus::kNoServerKey: return "the server has no key of its own to prove itself with";
    case AuthStatus::kMalformed: return "malformed authentication request";
  }
  return "authentication failed";
}

}  // namespace ublkrdma::wire
