// Connecting one RdmaConnection: CONNECT, the server's answer checked (its refusal turned into
// a message that says what to do), authentication where either side asks for it.
#include <algorithm>

#include "base/errors.h"
#include "targets/rdma_authentication.h"
#include "targets/rdma_connection.h"
#include "transport/auth_protocol.h"

namespace ublkrdma::targets {
namespace {

using transport::Connection;

// The AUTH_REQUEST's buffer (whole cache lines), after the slots.
constexpr size_t kAuthRequestArea = (wire::kAuthRequestSize + kMsgSlot - 1) / kMsgSlot * kMsgSlot;
// IB CM reject reasons rdma_cm reports in REJECTED events.
constexpr int kIbCmRejInvalidServiceId = 8;   // nothing listens on that port
constexpr int kIbCmRejConsumerDefined = 28;  // the server called rdma_reject

[[noreturn]] void throw_rejected(const RdmaTargetOptions& o, const RdmaPath& path,
                                 const transport::ConnectOutcome& out) {
  std::string where = path.text();
  auto d = wire::decode_reject_data(out.private_data);
  if (d.ok()) {
    const wire::RejectData& r = d.value;
    switch (r.status) {
      case wire::ConnectStatus::kUnknownExport:
        throw SetupError(fmt::format("server {} has no export named '{}'", where, o.export_name), ENOENT);
      case wire::ConnectStatus::kAccessDenied:
        throw SetupError(fmt::format("server {} denies access to this client (check its --allow)", where), EACCES);
      case wire::ConnectStatus::kAuthRequired:
        throw SetupError(fmt::format("server {} requires authentication: give this device --key-file (and --host-id "
                                     "if the server knows this host by another name than '{}')",
                                     where, o.auth.host_id),
                         EACCES);
      case wire::ConnectStatus::kAuthBackoff:
        throw SetupError(fmt::format("server {} refuses this address for now after too many failed "
                                     "authentications from it: retry in 30 s",
                                     where),
                         EAGAIN);
      case wire::ConnectStatus::kUnavailable:
        throw SetupError(fmt::format("export '{}' on server {} is unavailable now (its storage cannot be reached; "
                                     "the server's log says why)",
                                     o.export_name, where),
                         EAGAIN);
      case wire::ConnectStatus::kBadVersion:
        throw SetupError(fmt::format("server {} speaks protocol versions {}..{}, this client {}..{}", where,
                                     r.min_version, r.version, wire::kMinVersion, wire::kVersion),
                         EPROTO);
      default:
        throw SetupError(fmt::format("server {} refused the connection: {}", where, wire::connect_status_text(r.status)),
                         ECONNREFUSED);
    }
  }
  if (out.reject_status == kIbCmRejInvalidServiceId)
    throw SetupError(fmt::format("connection refused by {}: nothing listens there (is `ublk-rdma serve` running?)", where),
                     ECONNREFUSED);
  throw SetupError(fmt::format("connection to {} rejected (rdma_cm reason {}{})", where, out.reject_status,
                               out.reject_status == kIbCmRejConsumerDefined ? ", by the peer" : ""),
                   ECONNREFUSED);
}

}  // namespace

RdmaConnection connect_rdma_connection(const RdmaTargetOptions& o, const RdmaPath& path, uint16_t queue_id,
                                       uint16_t conns, uint64_t session_id) {
  uint16_t depth = connection_depth(o.queue_depth, conns);
  wire::ConnectRequest req;
  req.queue_id = queue_id;
  req.queue_depth = depth;
  req.max_io_bytes = o.max_io_bytes;
  req.session_id = session_id;
  req.flags = wire::kConnectReadImm | wire::kConnectBatch | (o.keep_alive_tmo.count() > 0 ? wire::kConnectKeepAlive : 0) |
              (o.push_max_bytes ? wire::kConnectPushWrites | wire::kConnectPushSlots : 0) |
              (o.pull_max_bytes || (o.fence_writes && o.push_max_bytes) ? wire::kConnectPullReads : 0) |
              (o.auth.enabled ? wire::kConnectAuth : 0);
  if (!req.set_name(o.export_name))
    throw SetupError(fmt::format("export name '{}' is invalid: use 1..32 of [A-Za-z0-9._-]", o.export_name), EINVAL);
  auto pdata = wire::encode(req);

  // With KEEP_ALIVE asked for, one receive and one command slot more: its wire tag is `depth`.
  uint16_t slots = uint16_t(depth + ((req.flags & wire::kConnectKeepAlive) ? 1 : 0));
  // With authentication, room for the AUTH_REQUEST after the slots.
  MappedRegion msgs =
      MappedRegion::anonymous(size_t(slots) * (kRecvSlot + kMsgSlot) + (o.auth.enabled ? kAuthRequestArea : 0), true);
  ibv_mr* msgs_mr = nullptr;

  transport::ClientConnectParams p;
  p.address = path.traddr;
  p.port = path.trsvcid;
  p.connect_timeout = o.connect_timeout;
  // Room for PUSH_WRITES (an RDMA WRITE per WRITE): the QP exists before the server answers.
  p.sizes.send_wrs = uint32_t(depth) * (o.mr_per_io ? kWrsPerWindowedRequest : kWrsPerRequest) + kSqSlack;
  p.sizes.recv_wrs = slots;
  p.sizes.max_inline = 64;
  p.sizes.max_send_sge = wire::kMaxBatch;  // a batched SEND: one entry per command
  p.private_data = pdata;
  p.responder_resources = 128;  // the server's RDMA READs of write data run against us
  // Ours (pulled READs, write fences) against it, with PULL_READS.
  p.initiator_depth = (req.flags & wire::kConnectPullReads) ? 128 : 0;

  auto before_connect = [&](Connection& conn) {
    msgs_mr = conn.register_memory(msgs.get(), msgs.size(), IBV_ACCESS_LOCAL_WRITE,
                                   fmt::format("queue {} message slots", queue_id));
    // One receive per slot, posted before CONNECT so no response can find the queue empty.
    transport::RecvChain recvs(slots);
    for (uint16_t i = 0; i < slots; ++i)
      recvs.add(WorkId{WorkKind::kRdmaRecv, queue_id, i, 0, 0}.encode(),
                reinterpret_cast<uint64_t>(msgs.get()) + uint64_t(i) * kRecvSlot, uint32_t(kRecvSlot), msgs_mr->lkey);
    if (int rc = recvs.post([&](ibv_recv_wr* first, ibv_recv_wr** bad) { return ibv_post_recv(conn.qp(), first, bad); }))
      throw_errno(rc, "posting {} receives", slots);
  };

  transport::ConnectOutcome out = transport::connect_client(p, before_connect);
  if (out.rejected) throw_rejected(o, path, out);
  auto d = wire::decode_accept_data(out.private_data);
  if (!d.ok())
    throw SetupError(fmt::format("server {} sent an invalid accept: {}", path.text(),
                                 wire::decode_error_text(d.error)),
                     EPROTO);
  wire::AcceptData accepted = d.value;
  if (o.auth.enabled && !accepted.auth())
    throw SetupError(fmt::format("server {} does not authenticate clients (it runs without --auth-keys), but this "
                                 "device was given --key-file: refusing a server that cannot prove itself",
                                 path.text()),
                     EACCES);
  if (accepted.auth()) {
    if (!(req.flags & wire::kConnectAuth))
      throw SetupError(fmt::format("server {} granted AUTH, which this client did not ask for", path.text()), EPROTO);
    auto aa = wire::decode_accept_auth(std::span<const uint8_t>(out.private_data).subspan(
        std::min(out.private_data.size(), wire::kAcceptDataSize)));
    if (!aa.ok())
      throw SetupError(fmt::format("server {} sent an invalid accept: {}", path.text(), wire::decode_error_text(aa.error)),
                       EPROTO);
    AuthExchange x;
    x.options = &o.auth;
    x.where = path.text();
    x.session_id = session_id;
    x.queue_id = queue_id;
    x.export_name = o.export_name;
    x.accept = aa.value;
    x.request_buf = static_cast<uint8_t*>(msgs.get()) + size_t(slots) * (kRecvSlot + kMsgSlot);
    x.request_lkey = msgs_mr->lkey;
    x.recv_base = static_cast<uint8_t*>(msgs.get());
    x.recv_slot_bytes = kRecvSlot;
    x.recv_lkey = msgs_mr->lkey;
    x.timeout = o.connect_timeout;
    wire::AuthResult granted = authenticate_connection(*out.conn, x);
    // The window the ACCEPT left out, held to the rules an ACCEPT's is.
    if (!accepted.has_window() && (granted.window_rkey != 0 || granted.window_addr != 0))
      throw SetupError(fmt::format("server {} granted a window that does not match its accept", path.text()), EPROTO);
    accepted.window_rkey = granted.window_rkey;
    accepted.window_addr = granted.window_addr;
  }
  if ((accepted.push_writes() && !(req.flags & wire::kConnectPushWrites)) ||
      (accepted.push_slots() && !(req.flags & wire::kConnectPushSlots)) ||
      (accepted.pull_reads() && !(req.flags & wire::kConnectPullReads)) ||
      (accepted.keep_alive() && !(req.flags & wire::kConnectKeepAlive)))
    throw SetupError(fmt::format("server {} granted {}, which this client did not ask for", path.text(),
                                 accepted.keep_alive() && !(req.flags & wire::kConnectKeepAlive) ? "KEEP_ALIVE"
                                 : accepted.pull_reads()                                          ? "PULL_READS"
                                                                                                  : "PUSH_WRITES"),
                     EPROTO);
  if (accepted.queue_depth != depth || accepted.max_io_bytes != o.max_io_bytes) {
    // The server's limit is per connection; -d spreads over the queue's connections.
    throw SetupError(fmt::format("server {} limits a connection's depth to {} and max IO to {} bytes (asked for {} "
                                 "and {}): use -d {} --max-io {}",
                                 path.text(), accepted.queue_depth, accepted.max_io_bytes, depth,
                                 o.max_io_bytes, std::min<uint32_t>(uint32_t(accepted.queue_depth) * conns, o.queue_depth),
                                 accepted.max_io_bytes),
                     EINVAL);
  }
  return RdmaConnection(std::move(out.conn), std::move(msgs), msgs_mr, accepted, depth, slots);
}

}  // namespace ublkrdma::targets
