#pragma once
// The rdma target's queue: the requests of one ublk queue by tag (their state and generation),
// which connection each travels on, and the matching of answers, ReadDones, pulled READs and
// fences to them; a lost connection's requests held and reissued while it is rebuilt. The
// connections (rdma_connection.h) do the posting and polling.
#include <memory>
#include <vector>

#include "targets/rdma_connection.h"
#include "targets/rdma_target.h"
#include "ublk/queue_target.h"

namespace ublkrdma::targets {

// `connections`: `conns_per_path` on each of opts.paths, in path order. `session_id` names the
// device to the server when a connection is rebuilt.
std::unique_ptr<ublk::QueueTarget> make_rdma_queue_target(std::vector<RdmaConnection> connections,
                                                          const RdmaTargetOptions& opts, uint16_t conns_per_path,
                                                          uint16_t queue_id, uint64_t session_id);

}  // namespace ublkrdma::targets
