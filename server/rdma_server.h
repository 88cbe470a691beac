#pragma once
// `ublk-rdma serve`: the target server. A listener thread takes rdma_cm CONNECT requests,
// negotiates (negotiation.h) and accepts; each accepted connection (one client ublk queue) is
// then served by a thread of its own that owns its CQ, QP, registered buffers and backend
// queue: shared nothing, no locks on the IO path, the mirror of the client's queue thread.
// (A fixed pool of workers each owning several connections would scale past hundreds of
// connections; with one connection per client queue and a handful of clients, a thread per
// connection is simpler and as fast.)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/export_spec.h"

namespace ublkrdma::server {

struct ServerOptions {
  std::string listen_addr;  // "" or "0.0.0.0" = any
  uint16_t port = 18520;
  std::vector<ExportSpec> exports;
  std::vector<Cidr> allow;
  std::string stats_path;  // JSON stats written here periodically and at exit ("" = none)
  std::chrono::milliseconds stats_interval{1000};
  uint16_t max_queue_depth = 4096;
  uint32_t max_io_bytes = 4u << 20;
  // Bounds over all connections together (see ServerLimits).
  uint64_t max_total_pool_bytes = 2ull << 30;
  uint32_t max_connections = 1024;
  // A connection thread keeps polling this long after its last event before it sleeps on
  // the completion channel (0 = sleep at once when idle).
  std::chrono::microseconds spin{50};
  // ... and this long (if longer) while its peer sends one command at a time and waits for
  // each answer (QD1): the next command is then one round trip away, and a wake-up per IO
  // would be most of its latency.
  std::chrono::microseconds serial_spin{1000};
  // Grant PUSH_WRITES to clients that ask (ram exports that are not read-only): they put WRITE
  // data into the export by RDMA WRITE before the command, instead of our RDMA READ after it.
  bool push_writes = true;
  // Grant PULL_READS to clients that ask (ram exports): they RDMA READ a READ's data from the
  // export themselves and send no command for it.
  bool pull_reads = true;
};

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
  void run(const std::atomic<bool>& stop);

  // The current statistics as JSON text.
  std::string stats_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Foreground server: logs, serves until `stop`, returns the process exit code (0 clean, 1
// setup failure, which is logged with its reason).
int run_server(const ServerOptions& opts, std::atomic<bool>& stop);

}  // namespace ublkrdma::server
