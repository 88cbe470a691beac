#pragma once
// `stats --prometheus`: the client devices' metrics (prefix ublk_rdma_) in the Prometheus text
// format, made from what `list --json` shows (cli/device_listing.h): device gauges, each queue's
// counters and latency histograms, and the rdma target's connection counters. Pure: JSON in,
// text out, so the names and shapes are unit-tested without a device.
#include <nlohmann/json.hpp>
#include <string>

namespace ublkrdma::cli {

// `devices`: an array of describe_device() objects. A device without live statistics (no
// daemon answering) gets its device metrics only.
std::string client_metrics_text(const nlohmann::json& devices);

// `stats` without --prometheus: per device its id, state, size and each queue's statistics
// (counters, latency histograms, target counters), as JSON.
nlohmann::json client_metrics_json(const nlohmann::json& devices);

}  // namespace ublkrdma::cli
