#pragma once
// The server's answer to a CONNECT request: decode, check the peer against --allow, find the
// export, bound the client's queue depth and max IO size, and build the ACCEPT or REJECT
// private data. Pure (no verbs, no IO) so that every branch is unit tested.
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "server/export_spec.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {

// What the server knows of one export when it answers.
struct ExportInfo {
  uint64_t size = 0;
  uint32_t block_size = 512;
  bool read_only = false;
  uint32_t supported_ops = 0;  // kSupports* (backend.h)
  bool direct_memory = false;  // RDMA straight into the export: no per-connection buffer pool
  uint32_t instance_id = 1;    // Backend::instance_id
};

struct ServerLimits {
  uint16_t max_queue_depth = 4096;
  uint32_t max_io_bytes = 4u << 20;
  // Bound on one connection's buffer pool (depth x max IO) when the export is not direct.
  uint64_t max_pool_bytes = 512ull << 20;
  uint8_t max_rdma_reads = 16;  // RDMA READs the server's device lets it have in flight (must be > 0)
  // Server-wide budget, so that many clients together cannot exhaust its memory or threads: the
  // memory (connection_memory()) and connections already held, and the bounds on them (a new
  // one must fit: else kBusy); and each peer host's share of the memory, so that one permitted
  // host cannot take all of it.
  uint64_t memory_in_use = 0;
  uint64_t max_memory = 2ull << 30;
  uint64_t host_memory_in_use = 0;  // of the connections from this peer's address
  uint64_t max_host_memory = 1ull << 30;
  uint32_t connections_in_use = 0;
  uint32_t max_connections = 1024;
  bool push_writes = true;  // PUSH_WRITES may be granted (serve --no-push-writes: never)
  bool pull_reads = true;   // PULL_READS may be granted (serve --no-pull-reads: never)
  // RDMA READs the client will issue against us (its rdma_cm initiator depth): PULL_READS needs > 0.
  uint8_t client_rdma_reads = 0;
  // serve --auth-keys: every client must authenticate (v9) before anything is served or granted.
  bool auth_required = false;
  // The peer's address failed too many authentications lately (AuthLimiter).
  bool auth_backoff = false;
};

struct Negotiation {
  bool accepted = false;
  wire::ConnectRequest request;   // as decoded (valid if the decode succeeded)
  wire::AcceptData accept;        // when accepted
  wire::RejectData reject;        // when not
  int export_index = -1;          // what find() returned, when accepted
  const char* reason = "";        // for the log: why it was refused
  uint64_t memory_bytes = 0;      // when accepted: what the connection counts against the budget
};

// What a connection with these parameters holds on the server, for the budget: its buffer pool
// (none for a direct export) and, per tag, its receive and answer slots, its share of the send,
// receive and completion queues (soft RDMA allocates these in the kernel per work request),
// plus a fixed part. An upper estimate, not a measurement.
uint64_t connection_memory(uint16_t depth, uint32_t max_io_bytes, bool direct);
inline constexpr uint64_t kConnectionFixedBytes = 64 * 1024;
inline constexpr uint64_t kConnectionPerTagBytes = 4096;

// `find` maps an export name to its index and info, or returns -1 (no such export) or
// kExportUnavailable (it exists, but its storage cannot be reached now).
inline constexpr int kExportUnavailable = -2;
using ExportLookup = std::function<int(std::string_view name, ExportInfo& info)>;

Negotiation negotiate(std::span<const uint8_t> private_data, const sockaddr* peer, std::span<const Cidr> allow,
                      const ExportLookup& find, const ServerLimits& limits);

// The accept's export_flags for an export.
uint32_t export_flags_of(const ExportInfo& info);

}  // namespace ublkrdma::server
