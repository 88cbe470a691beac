#pragma once
// The `rdma` target: each ublk queue has one or more RC connections to a ublk-rdma server
// (protocol in docs/protocol.md). The queue's IO slab is registered as a memory region on each
// of them; a request is a small SEND {op, tag, generation, offset, length, addr, rkey}; the
// server moves the data with RDMA READ/WRITE straight from/to the slab and SENDs a response (or
// the client moves it itself where the export allows: PUSH_WRITES, PULL_READS). No copy in
// userspace.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "targets/connection_recovery.h"
#include "targets/rdma_authentication.h"
#include "transport/protocol.h"
#include "ublk/device.h"

namespace ublkrdma::targets {

inline constexpr uint32_t kDefaultPushMaxBytes = 16 * 1024;  // see RdmaTargetOptions::push_max_bytes
inline constexpr uint32_t kDefaultPullMaxBytes = 32u << 20;   // every READ (the largest --max-io)
inline constexpr uint16_t kDefaultConnsPerQueue = 4;  // see RdmaTargetOptions::conns_per_queue
inline constexpr uint16_t kMaxConnsPerQueue = 8;
inline constexpr size_t kMaxPaths = 4;

// One way to the export: a server address and port (add --traddr ADDR[:PORT], repeatable).
struct RdmaPath {
  std::string traddr;  // IPv4/IPv6 literal or host name
  uint16_t trsvcid = wire::kDefaultPort;
  std::string text() const;  // "ADDR:PORT" ("[V6]:PORT")
};

// How a queue uses its paths (add --multipath).
enum class MultipathPolicy : uint8_t {
  kFailover,    // the first path with a live connection carries every request; the others stand by
  kRoundRobin,  // requests spread over the live connections of every path
};
const char* multipath_policy_name(MultipathPolicy p);

struct RdmaTargetOptions {
  // Each queue has conns_per_queue connections on each path (connection i on path
  // i / conns_per_queue), all to the same export: one server on two addresses (the instance id
  // and the export's description must match on every connection).
  std::vector<RdmaPath> paths;
  MultipathPolicy multipath = MultipathPolicy::kFailover;
  std::string export_name;     // [A-Za-z0-9._-]{1,32}
  uint16_t nr_queues = 1;
  uint16_t queue_depth = 128;
  // RC connections per queue, each with its own QP and CQ; a request travels on the one that
  // holds the fewest requests when it arrives. Soft RDMA (rxe) bounds what one QP keeps in
  // flight, so more than one lets a deep queue move more IO at once.
  uint16_t conns_per_queue = kDefaultConnsPerQueue;
  uint32_t max_io_bytes = 512 * 1024;
  ublk::PollMode poll_mode = ublk::PollMode::kHybrid;
  std::chrono::milliseconds io_timeout{30000};  // 0 = never time out
  std::chrono::milliseconds connect_timeout{10000};
  // How long a connection may go without an answer to a KEEP_ALIVE before it counts as lost: a
  // server that stopped or vanished without a disconnect is detected within this time, busy or
  // idle (0 = no keepalive; servers before protocol v8 have none).
  std::chrono::milliseconds keep_alive_tmo{5000};
  // PUSH_WRITES: where the server grants it (ram exports), a WRITE of at most this many bytes
  // goes by our RDMA WRITE straight into the export instead of the server's RDMA READ from our
  // buffer (0: do not ask for it). Small writes save a round trip; a large one would load our
  // queue thread with moving all of its data, which soft RDMA does on the poster's CPU.
  uint32_t push_max_bytes = kDefaultPushMaxBytes;
  // PULL_READS: where the server grants it (ram exports), a READ of at most this many bytes is
  // our own RDMA READ of the export's memory, with no command and no work on the server's CPU
  // (0: do not ask for it).
  uint32_t pull_max_bytes = kDefaultPullMaxBytes;
  // Where the server grants both PUSH_WRITES into the export and PULL_READS (ram), a pushed
  // WRITE sends no command: one RDMA READ after a pass's RDMA WRITEs proves their data placed
  // and completes them, with no work on the server's CPU. false: every WRITE is a command.
  bool fence_writes = true;
  // The server reaches a request's buffer only while the request is in flight: the slab is not
  // registered for remote access, and each request the server moves gets a type 2 memory window
  // over its buffer alone (remote write for a READ, remote read for a WRITE), bound before its
  // command and invalidated when the answer comes, before ublk sees the request complete.
  bool mr_per_io = false;
  // What a queue does when one of its connections is lost: it holds the connection's requests,
  // reconnects every reconnect_delay and reissues them, or fails them once a timeout passed.
  RecoveryPolicy recovery;
  // Authentication (protocol v9), on every connection and reconnection.
  RdmaAuthOptions auth;
};

// Connects all nr_queues x conns_per_queue connections now (call after daemonizing: verbs and
// fork do not mix) and takes the geometry from the server's answer. Throws SetupError with the
// reason: unknown export, refused, unreachable, no RDMA device or route, negotiated limits below
// the request.
// make_queue_target(q) hands queue q's connections to queue thread q.
std::unique_ptr<ublk::TargetFactory> make_rdma_target_factory(const RdmaTargetOptions& opts);

}  // namespace ublkrdma::targets
