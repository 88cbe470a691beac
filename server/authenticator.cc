#include "server/authenticator.h"

namespace ublkrdma::server {

AuthVerdict check_auth_request(std::span<const uint8_t> message, const AuthContext& ctx) {
  AuthVerdict v;
  auto refuse = [&](wire::AuthStatus s, const char* why) {
    v.result = wire::AuthResult{};
    v.result.status = s;
    v.reason = why;
    return v;
  };
  auto d = wire::decode_auth_request(message);
  if (!d.ok()) return refuse(wire::AuthStatus::kMalformed, wire::decode_error_text(d.error));
  const wire::AuthRequest& r = d.value;
  v.host_id = std::string(wire::identity_view(r.host_id));
  auth::ProofInputs in;
  in.server_nonce = ctx.server_nonce;
  in.client_nonce = r.client_nonce;
  in.session_id = ctx.session_id;
  in.queue_id = ctx.queue_id;
  in.export_name = ctx.export_name;
  in.host_id = v.host_id;
  in.server_id = ctx.server_id;
  in.request_flags = r.flags;
  const AuthorizedHost* host = ctx.table ? ctx.table->find(v.host_id) : nullptr;
  // An unknown host and a wrong key look the same to the client: it learns no host ids.
  if (!host) return refuse(wire::AuthStatus::kFailed, "unknown host id");
  if (!auth::proofs_equal(auth::compute_proof(host->key, auth::Role::kClient, in), r.client_proof))
    return refuse(wire::AuthStatus::kFailed, "wrong key (the client's proof does not verify)");
  // Authenticated from here on: it may learn what it may not do.
  if (!host->may_attach(ctx.export_name)) return refuse(wire::AuthStatus::kExportDenied, "export not in the host's list");
  bool by_server_key = r.flags & wire::kAuthServerKey;
  if (by_server_key && !(ctx.server_key && *ctx.server_key))
    return refuse(wire::AuthStatus::kNoServerKey, "the client asks for the server's own key; serve has no --key-file");
  v.result.status = wire::AuthStatus::kOk;
  v.result.server_proof = auth::compute_proof(by_server_key ? **ctx.server_key : host->key, auth::Role::kServer, in);
  v.reason = by_server_key ? "authenticated (server proved its own key)" : "authenticated";
  return v;
}

}  // namespace ublkrdma::server
