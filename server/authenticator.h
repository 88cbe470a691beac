#pragma once
// The server's half of protocol v9's authentication, as a pure decision: given the connection's
// facts and the client's AUTH_REQUEST, the AUTH_RESULT to send and why. No verbs, no IO, so that
// every branch is unit tested (server/connection_auth.cc moves the messages).
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "server/auth_keys.h"
#include "transport/auth.h"
#include "transport/auth_protocol.h"

namespace ublkrdma::server {

// What the server knows when a connection's AUTH_REQUEST arrives.
struct AuthContext {
  const AuthTable* table = nullptr;
  const std::optional<auth::Key>* server_key = nullptr;  // serve --key-file, if any
  wire::Nonce server_nonce{};  // sent in this connection's ACCEPT
  std::string server_id;
  uint64_t session_id = 0;
  uint16_t queue_id = 0;
  std::string export_name;
};

struct AuthVerdict {
  wire::AuthResult result;  // the window is the caller's to fill in on success
  std::string host_id;      // as the client claimed it (valid identity characters), "" if malformed
  const char* reason = "";  // for the log
  bool ok() const { return result.status == wire::AuthStatus::kOk; }
};

AuthVerdict check_auth_request(std::span<const uint8_t> message, const AuthContext& ctx);

}  // namespace ublkrdma::server
