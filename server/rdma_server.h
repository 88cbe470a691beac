#pragma once
// `ublk-rdma serve`: the target server. A listener thread takes rdma_cm CONNECT requests,
// negotiates (negotiation.h) and accepts; each accepted connection (one client ublk queue, with
// its own CQ, QP, registered buffers and backend queue) is then served by one of a fixed set of
// poll groups (poll_group.h), a thread each, for its life: shared nothing between groups, no
// locks on the IO path, and threads that do not grow with the clients.
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "server/server_options.h"

namespace ublkrdma::server {

class RdmaServer {
 public:
  // Opens every export and starts listening. Throws SetupError.
  explicit RdmaServer(const ServerOptions& opts);
  ~RdmaServer();
  RdmaServer(const RdmaServer&) = delete;
  RdmaServer& operator=(const RdmaServer&) = delete;

  uint16_t port() const;  // the bound port (useful with port 0)

  // Serves until `stop` becomes true, then drains every connection (in-flight commands
  // finish and are answered), disconnects, joins the threads and writes the stats a last time.
  // False when connections still waited for their backends after opts.stop_timeout: their
  // buffers are the backends' until then, so the server must not be destroyed; the process
  // exits without it (run_server does). Whenever `reload` is set (SIGHUP) it clears it and
  // reads --auth-keys again (closing the connections whose access that takes away).
  bool run(const std::atomic<bool>& stop, std::atomic<bool>* reload = nullptr);

  // The current statistics as JSON text.
  std::string stats_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Foreground server: logs, serves until `stop` (reloading its keys on `reload`), returns the process exit code (0 clean, 1
// setup failure, which is logged with its reason). When the stop timeout expires it logs what
// it abandons and ends the process with status 1 itself.
int run_server(const ServerOptions& opts, std::atomic<bool>& stop, std::atomic<bool>& reload);

}  // namespace ublkrdma::server
