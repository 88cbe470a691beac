#pragma once
// `serve --stats FILE --stats-format prometheus`: the server's statistics (prefix
// ublk_rdma_server_) in the Prometheus text format, for node_exporter's textfile collector. Made
// from the same JSON the JSON stats file holds (RdmaServer::stats_json), so both say the same.
// Pure: JSON in, text out.
#include <nlohmann/json.hpp>
#include <string>

namespace ublkrdma::server {

std::string server_metrics_text(const nlohmann::json& stats);

}  // namespace ublkrdma::server
