#pragma once
// What the server exports and who may connect: parsed from `serve` options.
//
//   --export NAME=ram:SIZE[,hugepages][,populate]   anonymous memory (hugepages: MAP_HUGETLB,
//                                                   falling back to transparent huge pages)
//   --export NAME=null:SIZE                         completes everything, stores nothing
//   --export NAME=file:PATH                         regular file or block device; PATH is taken
//                                                   verbatim (it may contain ',' or '=')
//   --export NAME=rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][?conf=FILE&id=CLIENT]
//                                                   a Ceph RBD image through librbd (a snapshot is
//                                                   read-only); conf and id override serve's
//                                                   --ceph-conf and --ceph-id for this export
//   --read-only NAME                                refuse writes, discards, write-zeroes
//   --allow CIDR                                    IPv4 "a.b.c.d/n" or IPv6 "x::y/n"; repeatable;
//                                                   none given = everyone may connect
// NAME is [A-Za-z0-9._-]{1,32}. SIZE as base/size.h (binary units: 4G, 512M, 1048576).
// Every malformed input throws SetupError naming the option and what is wrong.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ublkrdma::server {

inline constexpr size_t kMaxExportNameLength = 32;

// For the CLI's --export help text.
inline constexpr const char* kExportSpecHelp =
    "NAME=ram:SIZE[,hugepages][,populate] | NAME=file:PATH | NAME=null:SIZE | "
    "NAME=rbd:POOL[/NAMESPACE]/IMAGE[@SNAP][?conf=FILE&id=CLIENT] "
    "(NAME: 1-32 of A-Z a-z 0-9 . _ -; SIZE: e.g. 512M, 4G; PATH: a regular file or block device)";

enum class BackendKind : uint8_t { kRam, kFile, kNull, kRbd };

// rbd: where the image is and how to reach its cluster.
struct RbdLocation {
  std::string pool;
  std::string rbd_namespace;  // "" = the pool's default namespace
  std::string image;
  std::string snapshot;       // "" = the image's head (writable)
  std::string ceph_conf;      // "" = serve --ceph-conf, else librados' default search
  std::string ceph_id;        // client name without "client." ("" = serve --ceph-id, else "admin")
  // How long reaching the cluster (monitors, authentication) may take before the open fails:
  // librados' own default is 5 minutes, too long for a server that should say what is wrong.
  uint32_t connect_timeout_s = 20;  // serve --ceph-timeout
};

struct ExportSpec {
  std::string name;
  BackendKind kind = BackendKind::kNull;
  uint64_t size = 0;       // ram and null: bytes; file: 0 (the file decides)
  std::string path;        // file only
  bool hugepages = false;  // ram only
  bool populate = false;   // ram only: fault all pages in at open (MAP_POPULATE)
  bool read_only = false;  // set by --read-only NAME
  RbdLocation rbd;         // rbd only
};

// A Ceph client name as rbd exports take it: [A-Za-z0-9._-]{1,64}, without "client.".
bool is_valid_ceph_id(std::string_view id);
inline constexpr const char* kCephIdRule = "use up to 64 of A-Z a-z 0-9 . _ -, without \"client.\"";

// True if `name` is a valid export name ([A-Za-z0-9._-]{1,32}).
bool is_valid_export_name(std::string_view name);

// Parses one --export value "NAME=KIND:ARG[,OPTION...]". Throws SetupError.
ExportSpec parse_export_spec(std::string_view text);

// "POOL[/NAMESPACE]/IMAGE[@SNAP]", as the rbd tool writes it.
std::string rbd_image_spec(const RbdLocation& at);

// "vol0=ram:4G,hugepages" style description for logs.
std::string describe(const ExportSpec& spec);

// An IPv4 or IPv6 network. IPv4 networks also match IPv4-mapped IPv6 peers (::ffff:a.b.c.d).
struct Cidr {
  sa_family_t family = AF_UNSPEC;     // AF_INET or AF_INET6
  std::array<uint8_t, 16> address{};  // network byte order; IPv4 uses the first 4 bytes;
                                      // host bits are cleared at parse time
  uint8_t prefix_length = 0;          // 0..32 (IPv4) or 0..128 (IPv6)

  bool contains(const sockaddr* peer) const;  // false for null or non-IP peers
  std::string to_string() const;
};

// Parses "192.0.2.0/24", "2001:db8::/32"; a bare address means a single host (/32 or /128).
// Host bits set below the prefix (192.0.2.1/24) are accepted and cleared. Throws SetupError.
Cidr parse_cidr(std::string_view text);

// True if `allow` is empty or one of its networks contains `peer`.
bool is_allowed(std::span<const Cidr> allow, const sockaddr* peer);

// Everything the server exports, validated as a whole (no duplicate names, every --read-only
// names an export, at least one export).
struct ExportConfig {
  std::vector<ExportSpec> exports;
  std::vector<Cidr> allow;

  const ExportSpec* find(std::string_view name) const;  // null if unknown
};

ExportConfig build_export_config(std::span<const std::string> export_options,
                                 std::span<const std::string> read_only_names,
                                 std::span<const std::string> allow_options);

}  // namespace ublkrdma::server
