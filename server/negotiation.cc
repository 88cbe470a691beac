#include "server/negotiation.h"

#include <algorithm>
#include <bit>

#include "server/backend.h"

namespace ublkrdma::server {

uint32_t export_flags_of(const ExportInfo& info) {
  uint32_t f = 0;
  if (info.read_only) f |= wire::kExportReadOnly;
  if (info.supported_ops & kSupportsFlush) f |= wire::kExportFlush;
  if (info.supported_ops & kSupportsFua) f |= wire::kExportFua;
  // A read-only export refuses these anyway: do not advertise them.
  if (!info.read_only && (info.supported_ops & kSupportsDiscard)) f |= wire::kExportDiscard;
  if (!info.read_only && (info.supported_ops & kSupportsWriteZeroes)) f |= wire::kExportWriteZeroes;
  return f;
}

uint64_t connection_memory(uint16_t depth, uint32_t max_io_bytes, bool direct) {
  uint64_t pool = direct ? 0 : uint64_t(depth) * max_io_bytes;
  return pool + kConnectionFixedBytes + uint64_t(depth) * kConnectionPerTagBytes;
}

Negotiation negotiate(std::span<const uint8_t> private_data, const sockaddr* peer, std::span<const Cidr> allow,
                      const ExportLookup& find, const ServerLimits& limits) {
  Negotiation n;
  auto refuse = [&](wire::ConnectStatus s, const char* why) {
    n.accepted = false;
    n.reject = wire::RejectData{wire::kVersion, s, wire::kMinVersion};
    n.reason = why;
    return n;
  };

  auto d = wire::decode_connect_request(private_data);
  n.request = d.value;  // for the log, even when refused
  // Who may connect comes first: a stranger learns nothing, not even which names exist.
  if (!is_allowed(allow, peer)) return refuse(wire::ConnectStatus::kAccessDenied, "peer not in --allow");
  switch (d.error) {
    case wire::DecodeError::kOk:
      break;
    case wire::DecodeError::kBadVersion:
      return refuse(wire::ConnectStatus::kBadVersion, "unsupported protocol version");
    case wire::DecodeError::kBadName:
      return refuse(wire::ConnectStatus::kUnknownExport, "malformed export name");
    default:
      return refuse(wire::ConnectStatus::kBadParams, wire::decode_error_text(d.error));
  }

  if (limits.auth_required && limits.auth_backoff)
    return refuse(wire::ConnectStatus::kAuthBackoff, "too many failed authentications from this address");
  if (limits.auth_required && !(n.request.flags & wire::kConnectAuth))
    return refuse(wire::ConnectStatus::kAuthRequired, "the client does not authenticate (serve --auth-keys)");

  ExportInfo info;
  int idx = find(n.request.name(), info);
  if (idx == kExportUnavailable)
    return refuse(wire::ConnectStatus::kUnavailable, "export unavailable (its storage could not be opened yet)");
  if (idx < 0) return refuse(wire::ConnectStatus::kUnknownExport, "unknown export");

  // Before anything divides by it.
  if (info.block_size < 512 || info.block_size > 4096 || !std::has_single_bit(info.block_size))
    return refuse(wire::ConnectStatus::kInternal, "export block size not 512..4096");

  const wire::ConnectRequest& r = n.request;
  if (r.queue_depth > limits.max_queue_depth) return refuse(wire::ConnectStatus::kBadParams, "queue depth too large");
  if (r.max_io_bytes > limits.max_io_bytes) return refuse(wire::ConnectStatus::kBadParams, "max IO size too large");
  if (r.max_io_bytes % info.block_size != 0)
    return refuse(wire::ConnectStatus::kBadParams, "max IO size not a multiple of the block size");
  // The buffer pool this connection needs: none when RDMA goes straight to the export.
  uint64_t pool = info.direct_memory ? 0 : uint64_t(r.queue_depth) * r.max_io_bytes;
  if (pool > limits.max_pool_bytes)
    return refuse(wire::ConnectStatus::kBadParams, "depth x max IO exceeds the per-connection buffer limit");
  if (limits.connections_in_use >= limits.max_connections)
    return refuse(wire::ConnectStatus::kBusy, "server at its connection limit (serve --max-connections)");
  uint64_t need = connection_memory(r.queue_depth, r.max_io_bytes, info.direct_memory);
  if (need > limits.max_memory - std::min(limits.memory_in_use, limits.max_memory))
    return refuse(wire::ConnectStatus::kBusy, "memory of all connections at its limit (serve --max-memory)");
  if (need > limits.max_host_memory - std::min(limits.host_memory_in_use, limits.max_host_memory))
    return refuse(wire::ConnectStatus::kBusy, "this host's share of the memory at its limit (serve --max-host-memory)");
  if (limits.max_rdma_reads == 0) return refuse(wire::ConnectStatus::kBadParams, "client allows no RDMA READ");

  n.accepted = true;
  n.export_index = idx;
  n.memory_bytes = need;
  n.accept.version = std::min<uint16_t>(r.version, wire::kVersion);
  n.accept.export_size = info.size;
  n.accept.queue_depth = r.queue_depth;
  n.accept.block_shift = uint8_t(std::countr_zero(info.block_size));
  n.accept.max_io_bytes = r.max_io_bytes;
  n.accept.export_flags = export_flags_of(info);
  if (n.accept.version >= 7) n.accept.instance_id = info.instance_id;
  // Features only on request, and only in a version that has them.
  uint16_t offered = r.flags & wire::flags_known_in(n.accept.version);
  if (offered & wire::kConnectReadImm) n.accept.features |= wire::kFeatureReadImm;
  if (offered & wire::kConnectBatch) n.accept.features |= wire::kFeatureBatch;
  // Memory opens to the client's RDMA WRITEs only where the client may write anyway: the export's
  // own memory (ram), or (v5, PUSH_SLOTS) this connection's buffer pool, one slot per tag, which
  // holds nothing but this client's own data in flight. The window itself (rkey, address) is
  // filled in after the connection has registered that memory.
  if ((offered & wire::kConnectPushWrites) && limits.push_writes && !info.read_only) {
    if (info.direct_memory)
      n.accept.features |= wire::kFeaturePushWrites;
    else if (offered & wire::kConnectPushSlots)
      n.accept.features |= wire::kFeaturePushWrites | wire::kFeaturePushSlots;
  }
  // v6: READs served by the client's own RDMA READ of the export's memory. That opens the
  // export to reading only, which this client may do anyway (read-only exports included), and
  // only where the export is memory the NIC can read: ram. Not next to a window of slots.
  if ((offered & wire::kConnectPullReads) && limits.pull_reads && info.direct_memory &&
      !(n.accept.features & wire::kFeaturePushSlots) && limits.client_rdma_reads > 0)
    n.accept.features |= wire::kFeaturePullReads;
  // v8: KEEP_ALIVE costs a receive and a scratch answer per client probe, nothing else.
  if (offered & wire::kConnectKeepAlive) n.accept.features |= wire::kFeatureKeepAlive;
  // v9: the window (if any) waits for the AUTH_RESULT; a client that offered to authenticate
  // to a server that does not is told so by the missing bit (and refuses to go on).
  if (limits.auth_required) n.accept.features |= wire::kFeatureAuth;
  return n;
}

}  // namespace ublkrdma::server
