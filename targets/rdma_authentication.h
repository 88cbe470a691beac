#pragma once
// The client's half of protocol v9's authentication (docs/protocol.md, "Authentication"), run
// on a connection just established, before the queue thread takes it: one AUTH_REQUEST out, one
// AUTH_RESULT in, the server's proof checked. Nothing of ours is registered for the server's
// access before it succeeds (the IO slab is registered afterwards, in start_st).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "transport/auth.h"
#include "transport/auth_protocol.h"
#include "transport/connection.h"

namespace ublkrdma::targets {

// add --host-id / --key-file / --server-key-file.
struct RdmaAuthOptions {
  bool enabled = false;  // a key was given: authenticate, and refuse a server that does not
  std::string host_id;
  auth::Key key{};
  std::optional<auth::Key> server_key;  // the server must prove this key instead of ours
  // When set, the keys are read from these files at every connection attempt instead (a key
  // rotated in the file is used from the next reconnect on, without restarting the device).
  std::string key_file, server_key_file;
};

// One exchange: what the proofs cover, and where the messages live (registered memory).
struct AuthExchange {
  const RdmaAuthOptions* options = nullptr;
  std::string where;  // the path, for messages
  uint64_t session_id = 0;
  uint16_t queue_id = 0;
  std::string_view export_name;
  wire::AcceptAuth accept;  // the server's nonce and identity
  uint8_t* request_buf = nullptr;  // kAuthRequestSize bytes
  uint32_t request_lkey = 0;
  uint8_t* recv_base = nullptr;  // the receive slots posted before CONNECT
  size_t recv_slot_bytes = 0;
  uint32_t recv_lkey = 0;
  std::chrono::milliseconds timeout{10000};
};

// Returns the server's grants (the window); throws SetupError with the reason the user needs.
// The receive the AUTH_RESULT took is posted again.
wire::AuthResult authenticate_connection(transport::Connection& conn, const AuthExchange& x);

}  // namespace ublkrdma::targets
