#pragma once
// What a daemon leaves under the run directory for `list`, `del` and `recover`:
//   ublk<N>.json  the device's target (type + the arguments to rebuild it), daemon pid, log path
//   ublk<N>.sock  the live daemon's stats socket (answers one JSON document per connection)
#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace ublkrdma::cli {

// /run/ublk-rdma, or $UBLK_RDMA_RUN_DIR.
std::string run_dir();
std::string state_path(uint32_t dev_id);
std::string socket_path(uint32_t dev_id);

void write_state(uint32_t dev_id, const nlohmann::json& state);  // atomic replace; throws
std::optional<nlohmann::json> read_state(uint32_t dev_id);
void remove_state(uint32_t dev_id);

// Asks a live daemon for its statistics; nullopt if no daemon answers within ~1 s.
std::optional<nlohmann::json> query_daemon_stats(uint32_t dev_id);

bool process_alive(pid_t pid);

}  // namespace ublkrdma::cli
