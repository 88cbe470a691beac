#pragma once
// The ublk-rdma wire protocol, version 9 (speaks 1 to 8 too). docs/protocol.md is its one description; this file
// is its one implementation. Every message is little endian at fixed offsets, encoded and
// decoded byte by byte (no struct overlay, so host endianness and padding never leak onto the
// wire), and every decoder validates magic, version, opcode, flags and reserved fields.
//
// Messages:
//   ConnectRequest  client -> server, rdma_cm CONNECT private data (56 bytes, the RC limit)
//   AcceptData      server -> client, rdma_accept private data (48 bytes)
//   RejectData      server -> client, rdma_reject private data (16 bytes)
//   Command         client -> server, SEND (48 bytes, inline where the device allows; with BATCH
//                   negotiated (v3) a SEND carries 1..kMaxBatch commands back to back)
//   Response        server -> client, SEND (16 bytes; with BATCH, 1..kMaxBatch back to back)
//   ReadDone        server -> client, the 32-bit immediate of an RDMA WRITE WITH IMMEDIATE that
//                   carries a successful READ's data and stands for its Response (v2, negotiated)
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "transport/protocol.h"

namespace ublkrdma::wire {

inline constexpr uint32_t kMagic = 0x4d445255;  // bytes "URDM" on the wire
inline constexpr uint16_t kVersion = 10;
inline constexpr uint16_t kMinVersion = 1;

inline constexpr size_t kConnectRequestSize = 56;
inline constexpr size_t kAcceptDataSize = 48;
inline constexpr size_t kRejectDataSize = 16;
inline constexpr size_t kCommandSize = 48;
inline constexpr size_t kResponseSize = 16;
inline constexpr size_t kExportNameMax = 32;
// With BATCH: the most commands in one SEND, and the most responses in one SEND.
inline constexpr size_t kMaxBatch = 16;

// rdma_cm private data limits for RC (IB CM, also used by RoCE): REQ 56, REP 196, REJ 148.
static_assert(kConnectRequestSize <= 56, "CONNECT private data is limited to 56 bytes");
static_assert(kAcceptDataSize <= 196, "ACCEPT private data is limited to 196 bytes");
static_assert(kRejectDataSize <= 148, "REJECT private data is limited to 148 bytes");

// ConnectRequest::flags (v2; v1 has none).
inline constexpr uint16_t kConnectReadImm = 1u << 0;  // the client takes ReadDone immediates
inline constexpr uint16_t kConnectBatch = 1u << 1;    // v3: batched commands and responses
inline constexpr uint16_t kConnectPushWrites = 1u << 2;  // v4: the client can RDMA WRITE its WRITEs' data
inline constexpr uint16_t kConnectPushSlots = 1u << 3;   // v5: ... also into per-tag slots (PUSH_SLOTS)
inline constexpr uint16_t kConnectPullReads = 1u << 4;   // v6: the client can RDMA READ its READs' data
inline constexpr uint16_t kConnectKeepAlive = 1u << 5;   // v8: the client sends KEEP_ALIVE commands
inline constexpr uint16_t kConnectAuth = 1u << 6;        // v9: the client authenticates (auth_protocol.h)
inline constexpr uint16_t kConnectFlagsKnown = kConnectReadImm | kConnectBatch | kConnectPushWrites |
                                               kConnectPushSlots | kConnectPullReads | kConnectKeepAlive |
                                               kConnectAuth;

// AcceptData::features (v2): what the server will do on this connection; only what was asked.
inline constexpr uint16_t kFeatureReadImm = 1u << 0;  // successful READs complete as ReadDone
inline constexpr uint16_t kFeatureBatch = 1u << 1;    // v3: SENDs may carry several messages
// v4: the client puts a WRITE's data straight into the export's memory (RDMA WRITE to window_addr
// + offset under window_rkey) before it sends the command: ram exports only, never read-only.
inline constexpr uint16_t kFeaturePushWrites = 1u << 2;
// v5, only with kFeaturePushWrites: the window is not the export but the connection's buffer
// pool, one slot of max_io_bytes per tag; a WRITE's data goes to window_addr + tag * max_io_bytes
// (exports the server serves through a buffer pool: file, null).
inline constexpr uint16_t kFeaturePushSlots = 1u << 3;
// v6: the client takes a READ's data straight from the export's memory (RDMA READ from
// window_addr + offset under window_rkey) and sends no command for it: ram exports only (the
// window is the export, so never together with kFeaturePushSlots); read-only ones too.
inline constexpr uint16_t kFeaturePullReads = 1u << 4;
// v8: the server takes KEEP_ALIVE commands on one tag beyond the queue depth (tag ==
// queue_depth, with a receive of its own) and answers each at once, without the backend.
inline constexpr uint16_t kFeatureKeepAlive = 1u << 5;
// v9: the server authenticates this client before it serves or grants anything: the ACCEPT's
// window fields are 0 and an AcceptAuth (auth_protocol.h) follows its 48 bytes; the window comes
// in the AUTH_RESULT.
inline constexpr uint16_t kFeatureAuth = 1u << 6;
inline constexpr uint16_t kFeaturesKnown = kFeatureReadImm | kFeatureBatch | kFeaturePushWrites | kFeaturePushSlots |
                                           kFeaturePullReads | kFeatureKeepAlive | kFeatureAuth;

// The flags / features each version defines (the same bits for both).
static_assert(kConnectReadImm == kFeatureReadImm && kConnectBatch == kFeatureBatch &&
              kConnectPushWrites == kFeaturePushWrites && kConnectPushSlots == kFeaturePushSlots &&
              kConnectPullReads == kFeaturePullReads && kConnectKeepAlive == kFeatureKeepAlive &&
              kConnectAuth == kFeatureAuth && kConnectFlagsKnown == kFeaturesKnown);
constexpr uint16_t flags_known_in(uint16_t version) {
  return version <= 1   ? 0
         : version == 2 ? kConnectReadImm
         : version == 3 ? uint16_t(kConnectReadImm | kConnectBatch)
         : version == 4 ? uint16_t(kConnectReadImm | kConnectBatch | kConnectPushWrites)
         : version == 5 ? uint16_t(kConnectReadImm | kConnectBatch | kConnectPushWrites | kConnectPushSlots)
         : version <= 7 ? uint16_t(kConnectFlagsKnown & ~(kConnectKeepAlive | kConnectAuth))
         : version == 8 ? uint16_t(kConnectFlagsKnown & ~kConnectAuth)
                        : kConnectFlagsKnown;
}

// How many messages of `size` bytes a SEND of `byte_len` bytes carries: 1..kMaxBatch when
// batching was negotiated, exactly 1 otherwise; 0 when the length fits neither (malformed).
constexpr size_t messages_in(uint32_t byte_len, size_t size, bool batch) {
  if (byte_len == 0 || byte_len % size != 0) return 0;
  size_t n = byte_len / size;
  return n == 1 || (batch && n <= kMaxBatch) ? n : 0;
}

// AcceptData::export_flags.
inline constexpr uint32_t kExportReadOnly = 1u << 0;
inline constexpr uint32_t kExportFlush = 1u << 1;
inline constexpr uint32_t kExportFua = 1u << 2;
inline constexpr uint32_t kExportDiscard = 1u << 3;
inline constexpr uint32_t kExportWriteZeroes = 1u << 4;
inline constexpr uint32_t kExportFlagsKnown = 0x1f;

// Why a connection was refused (RejectData::status). Stable numbers: never renumber.
enum class ConnectStatus : uint16_t {
  kOk = 0,
  kUnknownExport = 1,  // no export of that name
  kAccessDenied = 2,   // peer address not allowed
  kBadVersion = 3,     // no common protocol version
  kBusy = 4,           // server at its connection limit or shutting down
  kBadParams = 5,      // queue depth / max IO size / flags out of the server's limits
  kInternal = 6,       // the server failed to set up the connection
  kAuthRequired = 7,   // v9: the server authenticates every client; this one did not offer to
  kAuthBackoff = 8,    // v9: too many failed authentications from this address lately
  kUnavailable = 9,    // the export's storage cannot be reached now (an rbd image's cluster); retry later
};
const char* connect_status_text(ConnectStatus s);

// Response status: 0 or a negative wire code. The wire codes are Linux errno numbers, named
// here so that a non-Linux peer has a table to map from; a receiver maps unknown codes to EIO.
enum class Status : int32_t {
  kOk = 0,
  kIoError = -5,        // EIO: the backend failed
  kAccess = -13,        // EACCES
  kBusy = -16,          // EBUSY: tag already in flight
  kInvalid = -22,       // EINVAL: malformed or out of the negotiated limits
  kNoSpace = -28,       // ENOSPC
  kReadOnly = -30,      // EROFS
  kRange = -34,         // ERANGE: offset + length beyond the export
  kNotSupported = -95,  // EOPNOTSUPP
  kTimedOut = -110,     // ETIMEDOUT
};
// A received status as a local negative errno (unknown codes -> -EIO).
int status_to_errno(int32_t wire_status);
// A local negative errno as a wire status (unknown -> kIoError).
int32_t errno_to_status(int neg_errno);

enum class DecodeError : uint8_t {
  kOk = 0,
  kTooShort,
  kBadMagic,
  kBadVersion,
  kBadOpcode,
  kBadFlags,
  kReservedNonZero,
  kBadName,
  kBadParams,
};
const char* decode_error_text(DecodeError e);

template <typename T>
struct Decoded {
  T value{};
  DecodeError error = DecodeError::kOk;
  constexpr bool ok() const { return error == DecodeError::kOk; }
};

// ---------------------------------------------------------------- byte helpers (constexpr)
namespace detail {
constexpr void put8(std::span<uint8_t> b, size_t off, uint8_t v) { b[off] = v; }
constexpr void put16(std::span<uint8_t> b, size_t off, uint16_t v) {
  b[off] = uint8_t(v);
  b[off + 1] = uint8_t(v >> 8);
}
constexpr void put32(std::span<uint8_t> b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = uint8_t(v >> (8 * i));
}
constexpr void put64(std::span<uint8_t> b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = uint8_t(v >> (8 * i));
}
constexpr uint8_t get8(std::span<const uint8_t> b, size_t off) { return b[off]; }
constexpr uint16_t get16(std::span<const uint8_t> b, size_t off) { return uint16_t(b[off] | b[off + 1] << 8); }
constexpr uint32_t get32(std::span<const uint8_t> b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(b[off + i]) << (8 * i);
  return v;
}
constexpr uint64_t get64(std::span<const uint8_t> b, size_t off) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(b[off + i]) << (8 * i);
  return v;
}
constexpr bool export_name_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}
}  // namespace detail

// ---------------------------------------------------------------- ConnectRequest
// offset size field
//  0     4    magic
//  4     2    version (the client's highest; the server answers with the one it chose)
//  6     2    flags (kConnect* bits; v1: must be 0)
//  8     2    queue_id
// 10     2    queue_depth (1..4096)
// 12     4    max_io_bytes (> 0, multiple of 4096)
// 16     8    session_id (random per client device: groups its queues, names it on reconnect)
// 24    32    export_name ([A-Za-z0-9._-]{1,32}, NUL padded)
struct ConnectRequest {
  uint16_t version = kVersion;
  uint16_t flags = 0;
  uint16_t queue_id = 0;
  uint16_t queue_depth = 0;
  uint32_t max_io_bytes = 0;
  uint64_t session_id = 0;
  std::array<char, kExportNameMax> export_name{};  // NUL padded, not necessarily terminated

  constexpr std::string_view name() const {
    size_t n = 0;
    while (n < kExportNameMax && export_name[n] != '\0') ++n;
    return {export_name.data(), n};
  }
  // False if `name` is empty, too long or has a character outside [A-Za-z0-9._-].
  constexpr bool set_name(std::string_view name) {
    if (name.empty() || name.size() > kExportNameMax) return false;
    export_name = {};
    for (size_t i = 0; i < name.size(); ++i) {
      if (!detail::export_name_char_ok(name[i])) return false;
      export_name[i] = name[i];
    }
    return true;
  }
};

constexpr std::array<uint8_t, kConnectRequestSize> encode(const ConnectRequest& r) {
  std::array<uint8_t, kConnectRequestSize> b{};
  detail::put32(b, 0, kMagic);
  detail::put16(b, 4, r.version);
  detail::put16(b, 6, r.flags);
  detail::put16(b, 8, r.queue_id);
  detail::put16(b, 10, r.queue_depth);
  detail::put32(b, 12, r.max_io_bytes);
  detail::put64(b, 16, r.session_id);
  for (size_t i = 0; i < kExportNameMax; ++i) b[24 + i] = uint8_t(r.export_name[i]);
  return b;
}

// The version check is the server's policy (it rejects with kBadVersion and says what it has),
// so decode accepts any version >= 1 and leaves the choice to negotiate().
constexpr Decoded<ConnectRequest> decode_connect_request(std::span<const uint8_t> b) {
  Decoded<ConnectRequest> d;
  if (b.size() < kConnectRequestSize) return {{}, DecodeError::kTooShort};
  if (detail::get32(b, 0) != kMagic) return {{}, DecodeError::kBadMagic};
  ConnectRequest& r = d.value;
  r.version = detail::get16(b, 4);
  if (r.version < kMinVersion) return {r, DecodeError::kBadVersion};
  r.flags = detail::get16(b, 6);
  r.queue_id = detail::get16(b, 8);
  r.queue_depth = detail::get16(b, 10);
  r.max_io_bytes = detail::get32(b, 12);
  r.session_id = detail::get64(b, 16);
  for (size_t i = 0; i < kExportNameMax; ++i) r.export_name[i] = char(b[24 + i]);
  // Flags this version does not know are an error; a newer client's are the server's to ignore.
  if (r.version <= kVersion && (r.flags & ~flags_known_in(r.version))) return {r, DecodeError::kBadFlags};
  // Name: 1..32 valid characters, then only NULs.
  size_t n = 0;
  while (n < kExportNameMax && r.export_name[n] != '\0') {
    if (!detail::export_name_char_ok(r.export_name[n])) return {r, DecodeError::kBadName};
    ++n;
  }
  if (n == 0) return {r, DecodeError::kBadName};
  for (size_t i = n; i < kExportNameMax; ++i)
    if (r.export_name[i] != '\0') return {r, DecodeError::kBadName};
  if (r.queue_depth == 0 || r.queue_depth > 4096 || r.max_io_bytes == 0 || r.max_io_bytes % 4096 != 0)
    return {r, DecodeError::kBadParams};
  return d;
}

// ---------------------------------------------------------------- AcceptData
// offset size field
//  0     4    magic
//  4     2    version (chosen by the server, <= the client's)
//  6     2    status (always 0 = kOk in an accept)
//  8     8    export_size (bytes, a multiple of the block size)
// 16     2    queue_depth (negotiated: <= the client's; 1..4096)
// 18     1    block_shift (9..12: logical block size 512..4096)
// 19     1    reserved (0)
// 20     4    max_io_bytes (negotiated: <= the client's; a multiple of 4096)
// 24     4    export_flags (kExport* bits)
// 28     2    features (kFeature* bits; v2, reserved (0) in v1)
// 30     2    reserved (0)
// 32     4    window_rkey (with kFeaturePushWrites or kFeaturePullReads: the rkey of the window
//             the client's RDMA reaches on this connection; else 0)
// 36     4    instance_id (v7: names the export's data; 0 = unknown; reserved (0) before v7)
// 40     8    window_addr (with either feature: the address of the export's byte 0, or with
//             kFeaturePushSlots of tag 0's slot; else 0. From v9 on windows are zero-based: 0)
struct AcceptData {
  uint16_t version = kVersion;
  uint64_t export_size = 0;
  uint16_t queue_depth = 0;
  uint8_t block_shift = 9;
  uint32_t max_io_bytes = 0;
  uint32_t export_flags = 0;
  uint16_t features = 0;
  uint32_t window_rkey = 0;
  uint32_t instance_id = 0;  // v7
  uint64_t window_addr = 0;

  constexpr bool read_imm() const { return features & kFeatureReadImm; }
  constexpr bool batch() const { return features & kFeatureBatch; }
  constexpr bool push_writes() const { return features & kFeaturePushWrites; }
  constexpr bool push_slots() const { return features & kFeaturePushSlots; }
  constexpr bool pull_reads() const { return features & kFeaturePullReads; }
  constexpr bool keep_alive() const { return features & kFeatureKeepAlive; }
  constexpr bool auth() const { return features & kFeatureAuth; }
  // Whether the window fields are in use: only with a feature that reaches into it.
  constexpr bool has_window() const { return push_writes() || pull_reads(); }
  // Where a pushed WRITE's data goes (push_writes() only).
  constexpr uint64_t push_target(uint16_t tag, uint64_t offset) const {
    return push_slots() ? window_addr + uint64_t(tag) * max_io_bytes : window_addr + offset;
  }
  // Where a pulled READ's data comes from (pull_reads() only: the window is the export).
  constexpr uint64_t pull_source(uint64_t offset) const { return window_addr + offset; }
  constexpr bool read_only() const { return export_flags & kExportReadOnly; }
  constexpr bool flush() const { return export_flags & kExportFlush; }
  constexpr bool fua() const { return export_flags & kExportFua; }
  constexpr bool discard() const { return export_flags & kExportDiscard; }
  constexpr bool write_zeroes() const { return export_flags & kExportWriteZeroes; }
};

constexpr std::array<uint8_t, kAcceptDataSize> encode(const AcceptData& a) {
  std::array<uint8_t, kAcceptDataSize> b{};
  detail::put32(b, 0, kMagic);
  detail::put16(b, 4, a.version);
  detail::put16(b, 6, uint16_t(ConnectStatus::kOk));
  detail::put64(b, 8, a.export_size);
  detail::put16(b, 16, a.queue_depth);
  detail::put8(b, 18, a.block_shift);
  detail::put32(b, 20, a.max_io_bytes);
  detail::put32(b, 24, a.export_flags);
  detail::put16(b, 28, a.features);
  detail::put32(b, 32, a.window_rkey);
  detail::put32(b, 36, a.instance_id);
  detail::put64(b, 40, a.window_addr);
  return b;
}

constexpr Decoded<AcceptData> decode_accept_data(std::span<const uint8_t> b) {
  Decoded<AcceptData> d;
  if (b.size() < kAcceptDataSize) return {{}, DecodeError::kTooShort};
  if (detail::get32(b, 0) != kMagic) return {{}, DecodeError::kBadMagic};
  AcceptData& a = d.value;
  a.version = detail::get16(b, 4);
  if (a.version < kMinVersion || a.version > kVersion) return {a, DecodeError::kBadVersion};
  if (detail::get16(b, 6) != uint16_t(ConnectStatus::kOk)) return {a, DecodeError::kBadParams};
  a.export_size = detail::get64(b, 8);
  a.queue_depth = detail::get16(b, 16);
  a.block_shift = detail::get8(b, 18);
  a.max_io_bytes = detail::get32(b, 20);
  a.export_flags = detail::get32(b, 24);
  a.features = detail::get16(b, 28);
  a.window_rkey = detail::get32(b, 32);
  a.instance_id = detail::get32(b, 36);
  a.window_addr = detail::get64(b, 40);
  if (detail::get8(b, 19) != 0) return {a, DecodeError::kReservedNonZero};
  if (a.version == 1 && a.features != 0) return {a, DecodeError::kReservedNonZero};
  if (a.features & ~flags_known_in(a.version)) return {a, DecodeError::kBadFlags};
  if (detail::get16(b, 30) != 0) return {a, DecodeError::kReservedNonZero};
  if (a.version < 7 && a.instance_id != 0) return {a, DecodeError::kReservedNonZero};
  // The window exists only with a feature that uses it (and then has an address), and with
  // authentication it is granted only by the AUTH_RESULT.
  if ((!a.has_window() || a.auth()) && (a.window_rkey != 0 || a.window_addr != 0))
    return {a, DecodeError::kReservedNonZero};
  if (a.export_flags & ~kExportFlagsKnown) return {a, DecodeError::kBadFlags};
  // A read-only export refuses them: it never advertises them.
  if (a.read_only() && (a.discard() || a.write_zeroes())) return {a, DecodeError::kBadFlags};
  // Before v9 the window is addressed by the server's virtual addresses (never 0); from v9 on
  // it is zero-based.
  bool no_window_addr = a.version < 9 && a.window_addr == 0;
  if (a.push_writes() && (no_window_addr || (a.export_flags & kExportReadOnly))) return {a, DecodeError::kBadParams};
  if (a.push_slots() && !a.push_writes()) return {a, DecodeError::kBadFlags};
  // Pulls read the export itself: a window of slots is not one.
  if (a.pull_reads() && a.push_slots()) return {a, DecodeError::kBadFlags};
  if (a.pull_reads() && no_window_addr) return {a, DecodeError::kBadParams};
  if (a.block_shift < 9 || a.block_shift > 12 || a.queue_depth == 0 || a.max_io_bytes == 0 ||
      (a.export_size & ((uint64_t(1) << a.block_shift) - 1)) != 0)
    return {a, DecodeError::kBadParams};
  // The client's depth and max IO, as its CONNECT had to give them.
  if (a.queue_depth > 4096 || a.max_io_bytes % 4096 != 0) return {a, DecodeError::kBadParams};
  return d;
}

// ---------------------------------------------------------------- RejectData
// offset size field
//  0     4    magic
//  4     2    version (the server's highest)
//  6     2    status (ConnectStatus, != kOk)
//  8     2    min_version (the server's lowest)
// 10     6    reserved (0)
struct RejectData {
  uint16_t version = kVersion;
  ConnectStatus status = ConnectStatus::kInternal;
  uint16_t min_version = kMinVersion;
};

constexpr std::array<uint8_t, kRejectDataSize> encode(const RejectData& r) {
  std::array<uint8_t, kRejectDataSize> b{};
  detail::put32(b, 0, kMagic);
  detail::put16(b, 4, r.version);
  detail::put16(b, 6, uint16_t(r.status));
  detail::put16(b, 8, r.min_version);
  return b;
}

constexpr Decoded<RejectData> decode_reject_data(std::span<const uint8_t> b) {
  Decoded<RejectData> d;
  if (b.size() < kRejectDataSize) return {{}, DecodeError::kTooShort};
  if (detail::get32(b, 0) != kMagic) return {{}, DecodeError::kBadMagic};
  d.value.version = detail::get16(b, 4);
  uint16_t s = detail::get16(b, 6);
  d.value.status = ConnectStatus(s);
  d.value.min_version = detail::get16(b, 8);
  // Unknown reasons from a newer server are still a rejection: report them as kInternal.
  if (s == 0) return {d.value, DecodeError::kBadParams};
  if (s > uint16_t(ConnectStatus::kUnavailable)) d.value.status = ConnectStatus::kInternal;
  for (size_t i = 10; i < kRejectDataSize; ++i)
    if (b[i] != 0) return {d.value, DecodeError::kReservedNonZero};
  return d;
}

// ---------------------------------------------------------------- Command
// offset size field
//  0     1    opcode (Opcode)
//  1     1    flags (kCmdFlag*)
//  2     2    tag (< negotiated queue depth; at most one command per tag in flight; KEEP_ALIVE:
//             == queue depth, the tag kept for it)
//  4     4    generation (the client queue's counter, next_generation(); echoed in the response)
//  8     8    offset (bytes)
// 16     4    length (bytes; 0 for FLUSH)
// 20     4    rkey (of the client's memory region holding the data; READ/WRITE only)
// 24     8    addr (remote virtual address of the data; READ/WRITE only)
// 32    16    reserved (0)
// (queue, tag, generation) names a command; READs are idempotent, so a future reconnect
// may re-issue them.
struct Command {
  Opcode opcode = Opcode::kRead;
  uint8_t flags = 0;
  uint16_t tag = 0;
  uint32_t generation = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint32_t rkey = 0;
  uint64_t addr = 0;
};

constexpr void encode_into(const Command& c, std::span<uint8_t, kCommandSize> b) {
  detail::put8(b, 0, uint8_t(c.opcode));
  detail::put8(b, 1, c.flags);
  detail::put16(b, 2, c.tag);
  detail::put32(b, 4, c.generation);
  detail::put64(b, 8, c.offset);
  detail::put32(b, 16, c.length);
  detail::put32(b, 20, c.rkey);
  detail::put64(b, 24, c.addr);
  detail::put64(b, 32, 0);
  detail::put64(b, 40, 0);
}
constexpr std::array<uint8_t, kCommandSize> encode(const Command& c) {
  std::array<uint8_t, kCommandSize> b{};
  encode_into(c, b);
  return b;
}

// On error, `value` still holds whatever could be read (tag and generation let the server
// answer a malformed command).
constexpr Decoded<Command> decode_command(std::span<const uint8_t> b) {
  Decoded<Command> d;
  if (b.size() < kCommandSize) return {{}, DecodeError::kTooShort};
  Command& c = d.value;
  uint8_t op = detail::get8(b, 0);
  c.opcode = Opcode(op);
  c.flags = detail::get8(b, 1);
  c.tag = detail::get16(b, 2);
  c.generation = detail::get32(b, 4);
  c.offset = detail::get64(b, 8);
  c.length = detail::get32(b, 16);
  c.rkey = detail::get32(b, 20);
  c.addr = detail::get64(b, 24);
  if (!is_known_opcode(op)) return {c, DecodeError::kBadOpcode};
  if (c.flags & ~kCmdFlagsKnown) return {c, DecodeError::kBadFlags};
  if (detail::get64(b, 32) != 0 || detail::get64(b, 40) != 0) return {c, DecodeError::kReservedNonZero};
  return d;
}

// ---------------------------------------------------------------- Response
// offset size field
//  0     2    tag
//  2     1    opcode (echo of the command's)
//  3     1    reserved (0)
//  4     4    generation (echo of the command's)
//  8     4    status (int32: 0 or a negative Status code)
// 12     4    reserved (0)
struct Response {
  uint16_t tag = 0;
  Opcode opcode = Opcode::kRead;
  uint32_t generation = 0;
  int32_t status = 0;
  // v10, KEEP_ALIVE answers only: the export's current size in 512-byte sectors (40 bits: byte 3
  // holds bits 32..39, bytes 12..15 bits 0..31), so that a client learns of a resize; 0 in
  // every other answer, before v10, and for an export too large for the field.
  uint64_t export_sectors = 0;
};
inline constexpr uint64_t kMaxExportSectors = (uint64_t(1) << 40) - 1;

constexpr void encode_into(const Response& r, std::span<uint8_t, kResponseSize> b) {
  detail::put16(b, 0, r.tag);
  detail::put8(b, 2, uint8_t(r.opcode));
  detail::put8(b, 3, uint8_t(r.export_sectors >> 32));
  detail::put32(b, 4, r.generation);
  detail::put32(b, 8, uint32_t(r.status));
  detail::put32(b, 12, uint32_t(r.export_sectors));
}
constexpr std::array<uint8_t, kResponseSize> encode(const Response& r) {
  std::array<uint8_t, kResponseSize> b{};
  encode_into(r, b);
  return b;
}

constexpr Decoded<Response> decode_response(std::span<const uint8_t> b) {
  Decoded<Response> d;
  if (b.size() < kResponseSize) return {{}, DecodeError::kTooShort};
  Response& r = d.value;
  r.tag = detail::get16(b, 0);
  uint8_t op = detail::get8(b, 2);
  r.opcode = Opcode(op);
  r.generation = detail::get32(b, 4);
  r.status = int32_t(detail::get32(b, 8));
  r.export_sectors = uint64_t(detail::get8(b, 3)) << 32 | detail::get32(b, 12);
  if (!is_known_opcode(op)) return {r, DecodeError::kBadOpcode};
  if (r.export_sectors != 0 && r.opcode != Opcode::kKeepAlive) return {r, DecodeError::kReservedNonZero};
  if (r.status > 0) return {r, DecodeError::kBadParams};
  return d;
}

// ---------------------------------------------------------------- ReadDone (v2, kFeatureReadImm)
// The immediate of the RDMA WRITE WITH IMMEDIATE that carries a READ's data, standing for a
// Response with status 0: one message instead of RDMA WRITE + SEND. Verbs carries it in network
// byte order (callers convert with htobe32/be32toh); as a host integer:
//   bits  0..11  tag (queue depth <= 4096)
//   bits 12..31  generation, low 20 bits
// Errors are still answered with a Response.
struct ReadDone {
  uint16_t tag = 0;
  uint32_t generation_low = 0;  // the command's generation & kReadDoneGenerationMask
};
inline constexpr uint32_t kReadDoneTagBits = 12;
inline constexpr uint32_t kReadDoneGenerationMask = (1u << (32 - kReadDoneTagBits)) - 1;

constexpr uint32_t encode_read_done(uint16_t tag, uint32_t generation) {
  return (uint32_t(tag) & ((1u << kReadDoneTagBits) - 1)) | (generation & kReadDoneGenerationMask) << kReadDoneTagBits;
}
constexpr ReadDone decode_read_done(uint32_t imm) {
  return ReadDone{uint16_t(imm & ((1u << kReadDoneTagBits) - 1)), imm >> kReadDoneTagBits};
}
// The generations a client gives its commands: 20 bits, the most every message that names a
// command carries (a ReadDone has room for no more), so an answer and a ReadDone agree on which
// command they name. One counter per client queue; a slot passes between tags, so the counter
// is not per tag.
inline constexpr uint32_t kGenerationMask = kReadDoneGenerationMask;
constexpr uint32_t next_generation(uint32_t generation) { return (generation + 1) & kGenerationMask; }
// Whether a ReadDone names the command with this generation (one next_generation() drew).
constexpr bool read_done_matches(const ReadDone& d, uint32_t generation) { return d.generation_low == generation; }

// Compile-time proof that the codecs round-trip.
static_assert([] {
  Command c{Opcode::kWrite, kCmdFlagFua, 4095, 0xdeadbeef, 1ull << 40, 1u << 20, 0x1234, 0x7fff00001000};
  auto d = decode_command(encode(c));
  return d.ok() && d.value.opcode == c.opcode && d.value.flags == c.flags && d.value.tag == c.tag &&
         d.value.generation == c.generation && d.value.offset == c.offset && d.value.length == c.length &&
         d.value.rkey == c.rkey && d.value.addr == c.addr;
}());
static_assert([] {
  Response r{17, Opcode::kRead, 99, int32_t(Status::kReadOnly)};
  auto d = decode_response(encode(r));
  return d.ok() && d.value.tag == 17 && d.value.generation == 99 && d.value.status == -30;
}());
static_assert([] {
  ReadDone d = decode_read_done(encode_read_done(4095, 0xabcde));
  return d.tag == 4095 && read_done_matches(d, 0xabcde) && !read_done_matches(d, 0xabcdf);
}());
static_assert(encode(Command{}).size() == kCommandSize && encode(Response{}).size() == kResponseSize);

}  // namespace ublkrdma::wire
