// The server's answer to arbitrary CONNECT private data, from any peer, under any limits and
// export it may have, with or without --auth-keys: the decision follows docs/protocol.md's order
// and rules, a REJECT always decodes on the client, and an ACCEPT (with its window filled in, as
// the connection does without AUTH) decodes on the client to exactly what was decided, granting
// nothing the client did not ask for.
#include <fuzzer/FuzzedDataProvider.h>
#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "server/backend.h"
#include "server/negotiation.h"

namespace ublkrdma::fuzz {
namespace {

using server::Cidr;

struct Peer {
  sockaddr_storage storage{};
  const sockaddr* addr() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

Peer make_peer(FuzzedDataProvider& in) {
  Peer p;
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: {
      auto* a = reinterpret_cast<sockaddr_in*>(&p.storage);
      a->sin_family = AF_INET;
      uint32_t v = in.ConsumeIntegral<uint32_t>();
      std::memcpy(&a->sin_addr, &v, 4);
      break;
    }
    case 1: {
      auto* a = reinterpret_cast<sockaddr_in6*>(&p.storage);
      a->sin6_family = AF_INET6;
      for (auto& b : a->sin6_addr.s6_addr) b = in.ConsumeIntegral<uint8_t>();
      if (in.ConsumeBool()) {  // IPv4-mapped, as a dual-stack listener reports IPv4 peers
        std::memset(a->sin6_addr.s6_addr, 0, 10);
        a->sin6_addr.s6_addr[10] = a->sin6_addr.s6_addr[11] = 0xff;
      }
      break;
    }
    default:
      p.storage.ss_family = AF_UNIX;  // not an IP peer: no network contains it
      break;
  }
  return p;
}

Cidr make_cidr(FuzzedDataProvider& in) {
  Cidr c;
  bool v4 = in.ConsumeBool();
  c.family = v4 ? AF_INET : AF_INET6;
  unsigned bits = v4 ? 32 : 128;
  for (unsigned i = 0; i < bits / 8; ++i) c.address[i] = in.ConsumeIntegral<uint8_t>();
  c.prefix_length = in.ConsumeIntegralInRange<uint8_t>(0, uint8_t(bits));
  for (unsigned bit = c.prefix_length; bit < bits; ++bit) c.address[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
  return c;
}

// The --allow rule written out: an IPv4 network matches IPv4 peers and IPv4-mapped IPv6 ones.
bool allowed(const std::vector<Cidr>& allow, const sockaddr* peer) {
  if (allow.empty()) return true;
  uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (peer->sa_family == AF_INET)
    std::memcpy(v6 + 12, &reinterpret_cast<const sockaddr_in*>(peer)->sin_addr, 4);
  else if (peer->sa_family == AF_INET6)
    std::memcpy(v6, &reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr, 16);
  else
    return false;
  bool mapped = v6[10] == 0xff && v6[11] == 0xff && std::all_of(v6, v6 + 10, [](uint8_t b) { return b == 0; });
  for (const Cidr& c : allow) {
    const uint8_t* addr = c.family == AF_INET ? v6 + 12 : v6;
    if (c.family == AF_INET && !mapped) continue;
    bool match = true;
    for (unsigned bit = 0; bit < c.prefix_length && match; ++bit) {
      uint8_t mask = uint8_t(0x80u >> (bit % 8));
      match = (addr[bit / 8] & mask) == (c.address[bit / 8] & mask);
    }
    if (match) return true;
  }
  return false;
}

}  // namespace
}  // namespace ublkrdma::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma;
  using namespace ublkrdma::fuzz;
  FuzzedDataProvider in(data, size);

  // The server's side, from the input's tail; the private data is what is left at its head.
  Peer peer = make_peer(in);
  std::vector<server::Cidr> allow(in.ConsumeIntegralInRange(0, 3));
  for (auto& c : allow) c = make_cidr(in);
  bool exists = in.ConsumeBool();
  bool unavailable = in.ConsumeBool();  // when it does not exist: known, but its storage is unreachable
  server::ExportInfo info;
  info.block_size = in.ConsumeBool() ? 512u << in.ConsumeIntegralInRange(0, 3) : in.ConsumeIntegral<uint32_t>();
  info.size = in.ConsumeIntegral<uint64_t>();
  if (std::has_single_bit(info.block_size)) info.size &= ~uint64_t(info.block_size - 1);  // as every backend
  info.read_only = in.ConsumeBool();
  info.supported_ops = in.ConsumeIntegralInRange<uint32_t>(0, 15);
  info.direct_memory = in.ConsumeBool();
  info.instance_id = in.ConsumeIntegral<uint32_t>();
  server::ServerLimits limits;
  if (in.ConsumeBool()) {  // otherwise the defaults, as `serve` starts
    limits.max_queue_depth = in.ConsumeIntegral<uint16_t>();
    limits.max_io_bytes = in.ConsumeIntegral<uint32_t>();
    limits.max_pool_bytes = in.ConsumeIntegral<uint64_t>();
    limits.max_rdma_reads = in.ConsumeIntegral<uint8_t>();
    limits.memory_in_use = in.ConsumeIntegral<uint64_t>();
    limits.max_memory = in.ConsumeIntegral<uint64_t>();
    limits.host_memory_in_use = in.ConsumeIntegral<uint64_t>();
    limits.max_host_memory = in.ConsumeIntegral<uint64_t>();
    limits.connections_in_use = in.ConsumeIntegral<uint32_t>();
    limits.max_connections = in.ConsumeIntegral<uint32_t>();
    limits.push_writes = in.ConsumeBool();
    limits.pull_reads = in.ConsumeBool();
  }
  limits.client_rdma_reads = in.ConsumeIntegral<uint8_t>();
  limits.auth_required = in.ConsumeBool();
  limits.auth_backoff = in.ConsumeBool();
  std::vector<uint8_t> private_data = in.ConsumeRemainingBytes<uint8_t>();

  auto request = wire::decode_connect_request(private_data);
  bool looked_up = false;
  auto find = [&](std::string_view name, server::ExportInfo& out) {
    // Only a well-formed name from an allowed peer is ever looked up.
    FUZZ_CHECK(request.ok() && name == request.value.name());
    looked_up = true;
    out = info;
    return exists ? 7 : unavailable ? server::kExportUnavailable : -1;
  };
  server::Negotiation n = server::negotiate(private_data, peer.addr(), allow, find, limits);

  if (!n.accepted) {
    FUZZ_CHECK(n.reject.status != wire::ConnectStatus::kOk && n.reason != nullptr && *n.reason != '\0');
    auto rej = wire::decode_reject_data(wire::encode(n.reject));
    FUZZ_CHECK(rej.ok() && rej.value.status == n.reject.status && rej.value.version == wire::kVersion &&
               rej.value.min_version == wire::kMinVersion);
  }
  // 1. Who may connect, before anything else.
  if (!allowed(allow, peer.addr())) {
    FUZZ_CHECK(!n.accepted && n.reject.status == wire::ConnectStatus::kAccessDenied && !looked_up);
    return 0;
  }
  FUZZ_CHECK(n.accepted || n.reject.status != wire::ConnectStatus::kAccessDenied);
  // 2. Decoding.
  if (!request.ok()) {
    wire::ConnectStatus expect = request.error == wire::DecodeError::kBadVersion ? wire::ConnectStatus::kBadVersion
                                 : request.error == wire::DecodeError::kBadName  ? wire::ConnectStatus::kUnknownExport
                                                                                 : wire::ConnectStatus::kBadParams;
    FUZZ_CHECK(!n.accepted && n.reject.status == expect && !looked_up);
    return 0;
  }
  // 3. Authentication, where the server requires it, then the name.
  if (limits.auth_required && (limits.auth_backoff || !(request.value.flags & wire::kConnectAuth))) {
    FUZZ_CHECK(!n.accepted && !looked_up);
    FUZZ_CHECK(n.reject.status ==
               (limits.auth_backoff ? wire::ConnectStatus::kAuthBackoff : wire::ConnectStatus::kAuthRequired));
    return 0;
  }
  FUZZ_CHECK(looked_up);
  if (!exists) {
    FUZZ_CHECK(!n.accepted && n.reject.status == (unavailable ? wire::ConnectStatus::kUnavailable
                                                              : wire::ConnectStatus::kUnknownExport));
    return 0;
  }

  // 4. Accepted exactly when every limit holds, as asked (never lowered); 5. a block size the
  // protocol cannot carry is the server's own failure.
  const wire::ConnectRequest& r = request.value;
  uint64_t pool = info.direct_memory ? 0 : uint64_t(r.queue_depth) * r.max_io_bytes;
  // What the connection counts against the memory budgets: its pool, and per tag and fixed parts.
  uint64_t need = pool + server::kConnectionFixedBytes + uint64_t(r.queue_depth) * server::kConnectionPerTagBytes;
  auto fits = [&](uint64_t in_use, uint64_t max) { return in_use < max && need <= max - in_use; };
  bool block_ok = info.block_size >= 512 && info.block_size <= 4096 && std::has_single_bit(info.block_size);
  bool within = r.queue_depth <= limits.max_queue_depth && r.max_io_bytes <= limits.max_io_bytes && block_ok &&
                r.max_io_bytes % info.block_size == 0 && pool <= limits.max_pool_bytes &&
                limits.connections_in_use < limits.max_connections && limits.max_rdma_reads > 0 &&
                fits(limits.memory_in_use, limits.max_memory) &&
                fits(limits.host_memory_in_use, limits.max_host_memory);
  FUZZ_CHECK(n.accepted == within);
  if (!n.accepted) {
    FUZZ_CHECK(n.reject.status == wire::ConnectStatus::kBadParams || n.reject.status == wire::ConnectStatus::kBusy ||
               n.reject.status == wire::ConnectStatus::kInternal);
    return 0;
  }

  // The accept, and what the client makes of it.
  const wire::AcceptData& a = n.accept;
  FUZZ_CHECK(n.export_index == 7 && n.memory_bytes == need);
  FUZZ_CHECK(a.version == std::min(r.version, wire::kVersion));
  FUZZ_CHECK(a.queue_depth == r.queue_depth && a.max_io_bytes == r.max_io_bytes && a.export_size == info.size);
  FUZZ_CHECK((uint32_t(1) << a.block_shift) == info.block_size);
  FUZZ_CHECK(a.instance_id == (a.version >= 7 ? info.instance_id : 0));
  FUZZ_CHECK((a.features & ~(r.flags & wire::flags_known_in(a.version))) == 0);
  FUZZ_CHECK(!a.push_writes() || (limits.push_writes && !info.read_only));
  FUZZ_CHECK(!a.push_slots() || !info.direct_memory);
  FUZZ_CHECK(!a.pull_reads() || (limits.pull_reads && info.direct_memory && limits.client_rdma_reads > 0));
  FUZZ_CHECK(a.read_only() == info.read_only);
  FUZZ_CHECK(a.auth() == limits.auth_required);

  wire::AcceptData sent = a;
  if (sent.has_window() && !sent.auth()) {  // Connection::fill_window: zero-based from v9 on
    sent.window_rkey = 0x1234;
    sent.window_addr = sent.version >= 9 ? 0 : 0x7f0000001000;
  }
  auto back = wire::decode_accept_data(wire::encode(sent));
  FUZZ_CHECK(back.ok());
  FUZZ_CHECK(wire::encode(back.value) == wire::encode(sent));
  return 0;
}
