#include "targets/rdma_authentication.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>

#include "base/errors.h"
#include "base/log.h"
#include "base/work_id.h"

namespace ublkrdma::targets {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void refused(const AuthExchange& x, wire::AuthStatus s) {
  const RdmaAuthOptions& o = *x.options;
  switch (s) {
    case wire::AuthStatus::kExportDenied:
      throw SetupError(fmt::format("server {} authenticated host '{}' but does not let it attach export '{}' "
                                   "(see the host's line in the server's --auth-keys)",
                                   x.where, o.host_id, x.export_name),
                       EACCES);
    case wire::AuthStatus::kNoServerKey:
      throw SetupError(fmt::format("server {} has no key of its own to prove (serve --key-file), but this device "
                                   "was given --server-key-file",
                                   x.where),
                       EACCES);
    case wire::AuthStatus::kMalformed:
      throw SetupError(fmt::format("server {} could not decode our authentication request", x.where), EPROTO);
    default:
      throw SetupError(fmt::format("server {} refused to authenticate host '{}': unknown host id or wrong key "
                                   "(check --host-id and --key-file against the server's --auth-keys)",
                                   x.where, o.host_id),
                       EACCES);
  }
}

}  // namespace

wire::AuthResult authenticate_connection(transport::Connection& conn, const AuthExchange& x) {
  RdmaAuthOptions o = *x.options;
  if (!o.key_file.empty()) o.key = auth::read_key_file(o.key_file);
  if (!o.server_key_file.empty()) o.server_key = auth::read_key_file(o.server_key_file);
  // The copy holds key material: wiped however the exchange ends.
  struct Wipe {
    RdmaAuthOptions& o;
    ~Wipe() {
      OPENSSL_cleanse(o.key.data(), o.key.size());
      if (o.server_key) OPENSSL_cleanse(o.server_key->data(), o.server_key->size());
    }
  } wipe{o};
  auth::ProofInputs in;
  in.server_nonce = x.accept.server_nonce;
  in.client_nonce = auth::random_nonce();
  in.session_id = x.session_id;
  in.queue_id = x.queue_id;
  in.export_name = x.export_name;
  in.host_id = o.host_id;
  in.server_id = wire::identity_view(x.accept.server_id);
  in.request_flags = o.server_key ? wire::kAuthServerKey : 0;

  wire::AuthRequest req;
  req.flags = in.request_flags;
  req.client_nonce = in.client_nonce;
  if (!wire::set_identity(req.host_id, o.host_id))
    throw SetupError(fmt::format("host id '{}' is invalid: use 1..{} of [A-Za-z0-9._:@-]", log::escaped(o.host_id),
                                 wire::kIdentityMax),
                     EINVAL);
  req.client_proof = auth::compute_proof(o.key, auth::Role::kClient, in);
  auto bytes = wire::encode(req);
  std::copy(bytes.begin(), bytes.end(), x.request_buf);

  ibv_sge sge{reinterpret_cast<uint64_t>(x.request_buf), uint32_t(bytes.size()), x.request_lkey};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = WorkId{WorkKind::kRdmaSend, x.queue_id, 0, 0, 0}.encode();
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  if (int rc = ibv_post_send(conn.qp(), &wr, &bad)) throw_errno(rc, "posting the authentication request to {}", x.where);

  // Two completions, in either order: our SEND, and the receive of the AUTH_RESULT.
  bool sent = false;
  std::optional<ibv_wc> answer;
  const auto deadline = Clock::now() + x.timeout;
  while (!sent || !answer) {
    ibv_wc wc{};
    int n = ibv_poll_cq(conn.cq(), 1, &wc);
    if (n < 0) throw_errno(-n, "polling for the authentication with {}", x.where);
    if (n == 0) {
      if (Clock::now() >= deadline)
        throw SetupError(fmt::format("server {} did not answer the authentication within {} ms", x.where,
                                     x.timeout.count()),
                         ETIMEDOUT);
      ::usleep(1000);
      continue;
    }
    if (wc.status != IBV_WC_SUCCESS)
      throw SetupError(fmt::format("server {} closed the connection during authentication ({})", x.where,
                                   ibv_wc_status_str(wc.status)),
                       ECONNRESET);
    WorkId id = WorkId::decode(wc.wr_id);
    if (id.kind == WorkKind::kRdmaSend) {
      sent = true;
    } else if (id.kind == WorkKind::kRdmaRecv && !answer) {
      answer = wc;
    } else {
      throw SetupError(fmt::format("server {} sent more than its authentication result", x.where), EPROTO);
    }
  }
  uint16_t slot = WorkId::decode(answer->wr_id).tag;
  uint8_t* buf = x.recv_base + size_t(slot) * x.recv_slot_bytes;
  auto d = wire::decode_auth_result(std::span<const uint8_t>(buf, answer->byte_len));
  if (!d.ok())
    throw SetupError(fmt::format("server {} sent an invalid authentication result: {}", x.where,
                                 wire::decode_error_text(d.error)),
                     EPROTO);
  if (d.value.status != wire::AuthStatus::kOk) refused(x, d.value.status);
  const auth::Key& server_key = o.server_key ? *o.server_key : o.key;
  if (!auth::proofs_equal(auth::compute_proof(server_key, auth::Role::kServer, in), d.value.server_proof))
    throw SetupError(fmt::format("server {} failed to prove {}: it may be an impostor; refusing it", x.where,
                                 o.server_key ? "the server key of --server-key-file" : "that it knows this host's key"),
                     EACCES);

  ibv_sge rsge{reinterpret_cast<uint64_t>(buf), uint32_t(x.recv_slot_bytes), x.recv_lkey};
  ibv_recv_wr rwr{};
  ibv_recv_wr* rbad = nullptr;
  rwr.wr_id = answer->wr_id;
  rwr.sg_list = &rsge;
  rwr.num_sge = 1;
  if (int rc = ibv_post_recv(conn.qp(), &rwr, &rbad)) throw_errno(rc, "posting a receive to {}", x.where);
  return d.value;
}

}  // namespace ublkrdma::targets
