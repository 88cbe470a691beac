#pragma once
// The options of `ublk-rdma serve`.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "server/export_spec.h"
#include "transport/protocol.h"

namespace ublkrdma::server {

// What the stats file holds: the server's JSON, or the Prometheus text format (server_metrics.h).
enum class StatsFormat : uint8_t { kJson, kPrometheus };

struct ServerOptions {
  std::string listen_addr;  // "" or "0.0.0.0" = any
  uint16_t port = wire::kDefaultPort;
  std::vector<ExportSpec> exports;
  // An rbd export whose image cannot be opened (cluster down) is retried this often.
  std::chrono::milliseconds export_retry{10000};
  // At stop, how long the server waits for what its backends hold (an rbd export's cluster may
  // not answer at all) before it exits without it.
  std::chrono::milliseconds stop_timeout{30000};
  std::vector<Cidr> allow;
  std::string stats_path;  // stats written here periodically and at exit ("" = none)
  StatsFormat stats_format = StatsFormat::kJson;
  std::chrono::milliseconds stats_interval{1000};
  uint16_t max_queue_depth = 4096;
  uint32_t max_io_bytes = 4u << 20;
  // Bounds over all connections together (see ServerLimits).
  uint64_t max_memory = 2ull << 30;
  uint64_t max_host_memory = 0;  // 0: half of max_memory
  uint32_t max_connections = 1024;
  // Poll groups: threads that serve every connection between them (0: one per CPU this
  // process may run on).
  unsigned threads = 0;
  // A poll group keeps polling this long after its last event before it sleeps on
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
  // Authentication (protocol v9): the hosts that may connect, with their keys and exports
  // (serve --auth-keys; empty = trusted-network mode, no authentication), the server's own key
  // for clients that check it (serve --key-file) and the identity it proves (--server-id).
  std::string auth_keys_path;
  // After 5 failed authentications within this time an address is refused for this time.
  std::chrono::seconds auth_backoff{30};
  std::string key_file;
  std::string server_id;
};

}  // namespace ublkrdma::server
