#include "server/export_spec.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/errors.h"
#include "base/log.h"
#include "base/plain_name.h"
#include "base/size.h"

namespace ublkrdma::server {
namespace {

constexpr const char* kExportForms =
    "expected NAME=ram:SIZE[,hugepages][,populate], NAME=file:PATH, NAME=null:SIZE or "
    "NAME=rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][?conf=FILE&id=CLIENT]";
constexpr uint64_t kSizeGranularity = 512;  // the ram and null block size

[[noreturn]] void bad_export(std::string_view text, std::string_view why) {
  // Escaped: the text may hold control characters or a NUL, which would cut the message short.
  throw SetupError(fmt::format("invalid --export '{}': {} ({})", log::escaped(text), why, kExportForms), EINVAL);
}

uint64_t parse_export_size(std::string_view text, std::string_view size_text) {
  if (size_text.empty()) bad_export(text, "missing SIZE");
  Result<uint64_t> size = parse_size(size_text);
  if (!size) {
    bad_export(text, fmt::format("bad SIZE '{}': {}", log::escaped(size_text),
                                 size.error() == -ERANGE ? "too large" : "expected e.g. 512M, 4G, 1048576"));
  }
  if (*size == 0) bad_export(text, "SIZE must not be 0");
  if (*size % kSizeGranularity != 0)
    bad_export(text, fmt::format("SIZE {} is not a multiple of {} bytes", *size, kSizeGranularity));
  return *size;
}

// A Ceph pool, namespace, image or snapshot name: what librbd takes, minus the characters that
// delimit the spec. Control characters are refused: the name goes to logs and C APIs.
void check_ceph_name(std::string_view text, std::string_view what, std::string_view name) {
  if (name.empty()) bad_export(text, fmt::format("missing {}", what));
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      bad_export(text, fmt::format("{} '{}' contains a control character", what, log::escaped(name)));
    if (c == '/' || c == '@' || c == '?' || c == '&')
      bad_export(text, fmt::format("{} '{}' contains '{}'", what, log::escaped(name), c));
  }
}

// "POOL[/NAMESPACE]/IMAGE[@SNAP][?conf=FILE&id=CLIENT]"
RbdLocation parse_rbd_location(std::string_view text, std::string_view arg) {
  RbdLocation at;
  std::string_view where = arg.substr(0, arg.find('?'));
  bool have_query = where.size() < arg.size();
  std::string_view query = have_query ? arg.substr(where.size() + 1) : std::string_view{};
  if (size_t a = where.find('@'); a != std::string_view::npos) {
    at.snapshot = std::string(where.substr(a + 1));
    check_ceph_name(text, "SNAP", at.snapshot);
    where = where.substr(0, a);
  }
  size_t first = where.find('/');
  if (first == std::string_view::npos) bad_export(text, "missing '/' between POOL and IMAGE");
  size_t last = where.rfind('/');
  at.pool = std::string(where.substr(0, first));
  check_ceph_name(text, "POOL", at.pool);
  if (last != first) {
    at.rbd_namespace = std::string(where.substr(first + 1, last - first - 1));
    check_ceph_name(text, "NAMESPACE", at.rbd_namespace);
  }
  at.image = std::string(where.substr(last + 1));
  check_ceph_name(text, "IMAGE", at.image);

  if (have_query && query.empty()) bad_export(text, "empty option list after '?'");
  while (!query.empty()) {
    std::string_view item = query.substr(0, query.find('&'));
    bool more = item.size() < query.size();
    query = more ? query.substr(item.size() + 1) : std::string_view{};
    if (more && query.empty()) bad_export(text, "empty option after '&'");
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    if (eq == std::string_view::npos || value.empty())
      bad_export(text, fmt::format("option '{}' needs a value (conf=FILE or id=CLIENT)", log::escaped(item)));
    if (key == "conf") {
      if (value.find('\0') != std::string_view::npos) bad_export(text, "conf FILE contains a NUL byte");
      at.ceph_conf = std::string(value);
    } else if (key == "id") {
      if (!is_valid_ceph_id(value))
        bad_export(text, fmt::format("bad id '{}': {}", log::escaped(value), kCephIdRule));
      at.ceph_id = std::string(value);
    } else {
      bad_export(text, fmt::format("unknown option '{}' for rbd (conf=FILE, id=CLIENT)", log::escaped(key)));
    }
  }
  return at;
}

}  // namespace

bool is_valid_ceph_id(std::string_view id) { return is_plain_name(id, 64) && !id.starts_with("client."); }

bool is_valid_export_name(std::string_view name) { return is_plain_name(name, kMaxExportNameLength); }

ExportSpec parse_export_spec(std::string_view text) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos) bad_export(text, "missing '='");
  std::string_view name = text.substr(0, eq);
  if (name.empty()) bad_export(text, "missing NAME");
  if (!is_valid_export_name(name))
    bad_export(text, fmt::format("bad NAME '{}': use 1 to {} of A-Z a-z 0-9 . _ -", log::escaped(name), kMaxExportNameLength));

  std::string_view rest = text.substr(eq + 1);
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos) bad_export(text, "missing KIND: (ram:, file:, null: or rbd:)");
  std::string_view kind = rest.substr(0, colon);
  std::string_view arg = rest.substr(colon + 1);

  ExportSpec spec;
  spec.name = std::string(name);
  if (kind == "file") {
    spec.kind = BackendKind::kFile;
    if (arg.empty()) bad_export(text, "missing PATH");
    // The path goes to open(2) as a C string: a NUL in it would open another file.
    if (arg.find('\0') != std::string_view::npos) bad_export(text, "PATH contains a NUL byte");
    spec.path = std::string(arg);
    return spec;
  }
  if (kind == "rbd") {
    spec.kind = BackendKind::kRbd;
    spec.rbd = parse_rbd_location(text, arg);
    return spec;
  }
  if (kind == "ram") {
    spec.kind = BackendKind::kRam;
  } else if (kind == "null") {
    spec.kind = BackendKind::kNull;
  } else {
    bad_export(text, fmt::format("unknown KIND '{}'", log::escaped(kind)));
  }

  size_t comma = arg.find(',');
  spec.size = parse_export_size(text, arg.substr(0, comma));
  while (comma != std::string_view::npos) {
    arg = arg.substr(comma + 1);
    comma = arg.find(',');
    std::string_view option = arg.substr(0, comma);
    if (spec.kind == BackendKind::kRam && option == "hugepages") {
      spec.hugepages = true;
    } else if (spec.kind == BackendKind::kRam && option == "populate") {
      spec.populate = true;
    } else if (option.empty()) {
      bad_export(text, "empty option after ','");
    } else {
      bad_export(text, fmt::format("unknown option '{}' for {} (ram takes hugepages, populate; null takes none)",
                                   log::escaped(option), kind));
    }
  }
  return spec;
}

std::string describe(const ExportSpec& spec) {
  std::string s;
  switch (spec.kind) {
    case BackendKind::kRam:
      s = fmt::format("{}=ram:{}{}{}", spec.name, format_size(spec.size), spec.hugepages ? ",hugepages" : "",
                      spec.populate ? ",populate" : "");
      break;
    case BackendKind::kNull:
      s = fmt::format("{}=null:{}", spec.name, format_size(spec.size));
      break;
    case BackendKind::kFile:
      s = fmt::format("{}=file:{}", spec.name, spec.path);
      break;
    case BackendKind::kRbd:
      s = fmt::format("{}=rbd:{}", spec.name, rbd_image_spec(spec.rbd));
      break;
  }
  if (spec.read_only) s += " (read-only)";
  return s;
}

std::string rbd_image_spec(const RbdLocation& at) {
  std::string s = at.pool + "/";
  if (!at.rbd_namespace.empty()) s += at.rbd_namespace + "/";
  s += at.image;
  if (!at.snapshot.empty()) s += "@" + at.snapshot;
  return s;
}

// ---- CIDR ----

namespace {

[[noreturn]] void bad_cidr(std::string_view text, std::string_view why) {
  throw SetupError(fmt::format("invalid --allow '{}': {} (expected an IPv4 or IPv6 network such as 192.0.2.0/24 "
                               "or 2001:db8::/32, or a single address)",
                               log::escaped(text), why),
                   EINVAL);
}

bool prefix_matches(const uint8_t* a, const uint8_t* b, unsigned prefix_bits) {
  unsigned full = prefix_bits / 8, rest = prefix_bits % 8;
  if (std::memcmp(a, b, full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = uint8_t(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

Cidr parse_cidr(std::string_view text) {
  if (text.empty()) bad_cidr(text, "empty");
  size_t slash = text.find('/');
  std::string address(text.substr(0, slash));
  if (address.empty()) bad_cidr(text, "missing address");
  // inet_pton reads a C string: a NUL would end the address early and accept what follows.
  if (address.find('\0') != std::string::npos) bad_cidr(text, "the address contains a NUL byte");

  Cidr cidr;
  unsigned max_prefix;
  if (address.find(':') != std::string::npos) {
    cidr.family = AF_INET6;
    max_prefix = 128;
    if (inet_pton(AF_INET6, address.c_str(), cidr.address.data()) != 1)
      bad_cidr(text, fmt::format("'{}' is not an IPv6 address", log::escaped(address)));
  } else {
    cidr.family = AF_INET;
    max_prefix = 32;
    // inet_pton accepts only the dotted-quad form: no "10.1", no octal, no hex.
    if (inet_pton(AF_INET, address.c_str(), cidr.address.data()) != 1)
      bad_cidr(text, fmt::format("'{}' is not an IPv4 address", log::escaped(address)));
  }

  unsigned prefix = max_prefix;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty()) bad_cidr(text, "missing prefix length after '/'");
    if (p.size() > 3) bad_cidr(text, fmt::format("bad prefix length '{}'", log::escaped(p)));
    prefix = 0;
    for (char c : p) {
      if (c < '0' || c > '9') bad_cidr(text, fmt::format("bad prefix length '{}'", log::escaped(p)));
      prefix = prefix * 10 + unsigned(c - '0');
    }
    if (prefix > max_prefix)
      bad_cidr(text, fmt::format("prefix length {} is larger than {}", prefix, max_prefix));
  }
  cidr.prefix_length = uint8_t(prefix);

  // Clear host bits so that to_string() shows the network and comparisons stay simple.
  for (unsigned bit = prefix; bit < max_prefix; ++bit) cidr.address[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
  return cidr;
}

bool Cidr::contains(const sockaddr* peer) const {
  if (peer == nullptr) return false;
  uint8_t v4[4];
  uint8_t v6[16];
  bool have_v4 = false, have_v6 = false;
  if (peer->sa_family == AF_INET) {
    std::memcpy(v4, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, 4);
    have_v4 = true;
    std::memcpy(v6, kV4MappedPrefix, 12);
    std::memcpy(v6 + 12, v4, 4);
    have_v6 = true;
  } else if (peer->sa_family == AF_INET6) {
    std::memcpy(v6, &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr, 16);
    have_v6 = true;
    if (std::memcmp(v6, kV4MappedPrefix, 12) == 0) {
      std::memcpy(v4, v6 + 12, 4);
      have_v4 = true;
    }
  } else {
    return false;
  }
  if (family == AF_INET) return have_v4 && prefix_matches(v4, address.data(), prefix_length);
  if (family == AF_INET6) return have_v6 && prefix_matches(v6, address.data(), prefix_length);
  return false;
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family != AF_INET && family != AF_INET6) return "(none)";
  inet_ntop(family, address.data(), buf, sizeof(buf));
  return fmt::format("{}/{}", buf, prefix_length);
}

bool is_allowed(std::span<const Cidr> allow, const sockaddr* peer) {
  if (allow.empty()) return true;
  for (const Cidr& c : allow)
    if (c.contains(peer)) return true;
  return false;
}

// ---- the whole configuration ----

const ExportSpec* ExportConfig::find(std::string_view name) const {
  for (const ExportSpec& e : exports)
    if (e.name == name) return &e;
  return nullptr;
}

ExportConfig build_export_config(std::span<const std::string> export_options,
                                 std::span<const std::string> read_only_names,
                                 std::span<const std::string> allow_options) {
  ExportConfig config;
  if (export_options.empty()) throw SetupError("no --export given: the server needs at least one export", EINVAL);
  for (const std::string& option : export_options) {
    ExportSpec spec = parse_export_spec(option);
    if (config.find(spec.name))
      throw SetupError(fmt::format("invalid --export '{}': export name '{}' is used twice", option, spec.name), EINVAL);
    config.exports.push_back(std::move(spec));
  }
  for (const std::string& name : read_only_names) {
    auto it = std::find_if(config.exports.begin(), config.exports.end(),
                           [&](const ExportSpec& e) { return e.name == name; });
    if (it == config.exports.end())
      throw SetupError(fmt::format("invalid --read-only '{}': no --export has that name", name), EINVAL);
    it->read_only = true;
  }
  for (const std::string& option : allow_options) config.allow.push_back(parse_cidr(option));
  return config;
}

}  // namespace ublkrdma::server
