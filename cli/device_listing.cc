#include "cli/device_listing.h"

#include <algorithm>
#include <fmt/format.h>

#include "cli/device_state.h"

namespace ublkrdma::cli {

std::optional<nlohmann::json> describe_device(ublk::ControlDevice& ctrl, uint32_t dev_id) {
  ublk::CtrlDevInfo info;
  if (ctrl.get_dev_info(dev_id, info) < 0) return std::nullopt;
  ublk::Params params;
  bool have_params = ctrl.get_params(dev_id, params) == 0;

  nlohmann::json j;
  j["dev_id"] = info.dev_id;
  j["nr_hw_queues"] = info.nr_hw_queues;
  j["queue_depth"] = info.queue_depth;
  j["max_io_buf_bytes"] = info.max_io_buf_bytes;
  j["state"] = ublk::device_state_name(info.state);
  j["daemon_pid"] = info.ublksrv_pid;
  j["flags"] = info.flags;
  j["flag_names"] = ublk::feature_names(info.flags);
  j["owner"] = fmt::format("{}:{}", info.owner_uid, info.owner_gid);
  j["ublkc"] = fmt::format("/dev/ublkc{}", dev_id);
  j["ublkb"] = fmt::format("/dev/ublkb{}", dev_id);
  if (have_params && (params.types & ublk::kParamTypeBasic)) {
    j["block_size"] = 1u << params.basic.logical_bs_shift;
    j["physical_block_size"] = 1u << params.basic.physical_bs_shift;
    j["sectors"] = params.basic.dev_sectors;
    j["dev_size"] = params.basic.dev_sectors << 9;
    j["read_only"] = bool(params.basic.attrs & ublk::kAttrReadOnly);
  }
  if (have_params && (params.types & ublk::kParamTypeDevt)) {
    j["ublkc_devt"] = fmt::format("{}:{}", params.devt.char_major, params.devt.char_minor);
    j["ublkb_devt"] = fmt::format("{}:{}", params.devt.disk_major, params.devt.disk_minor);
  }
  nlohmann::json queues = nlohmann::json::array();
  for (uint16_t q = 0; q < info.nr_hw_queues; ++q) {
    cpu_set_t set;
    nlohmann::json cpus = nlohmann::json::array();
    if (ctrl.get_queue_affinity(dev_id, q, set) == 0)
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
    queues.push_back({{"queue", q}, {"affinity", cpus}});
  }
  if (auto state = read_state(dev_id)) {
    j["target"] = state->value("target", nlohmann::json::object());
    j["target_args"] = state->value("target_args", nlohmann::json::object());
    j["poll_mode"] = state->value("poll_mode", "");
    if (state->contains("hybrid_spin_us")) j["hybrid_spin_us"] = (*state)["hybrid_spin_us"];
    if (state->contains("inflight_spin_us")) j["inflight_spin_us"] = (*state)["inflight_spin_us"];
    if (state->contains("log")) j["log"] = (*state)["log"];
    if (state->contains("name")) j["name"] = (*state)["name"];  // its entry in the device table
  } else {
    j["target"] = nlohmann::json::object();
  }
  j["kernel_state"] = j["state"];
  if (info.state == ublk::kStateLive) {
    if (auto stats = query_daemon_stats(dev_id); stats && stats->is_array()) {
      // The worst of the queues' connection states, where the target reports one (rdma): a
      // device whose IO waits for a reconnect or fails is not reported LIVE.
      static const char* const kWorse[] = {"live", "degraded", "reconnecting", "failed"};
      int worst = -1;
      // Each path's worst state over the queues, and whether any queue has it active (rdma).
      nlohmann::json paths = nlohmann::json::array();
      auto rank = [](const std::string& s) {
        for (int k = 0; k < 4; ++k)
          if (s == kWorse[k]) return k;
        return -1;
      };
      for (auto& qs : *stats) {
        for (auto& p : qs.value("target", nlohmann::json::object()).value("paths", nlohmann::json::array())) {
          size_t i = 0;
          while (i < paths.size() && paths[i]["path"] != p["path"]) ++i;
          if (i == paths.size()) paths.push_back({{"path", p["path"]}, {"state", "live"}, {"active", false}});
          if (rank(p.value("state", "")) > rank(paths[i]["state"])) paths[i]["state"] = p["state"];
          if (p.value("active", false)) paths[i]["active"] = true;
        }
      }
      if (!paths.empty()) j["paths"] = paths;
      for (auto& qs : *stats) {
        size_t q = qs.value("queue", size_t(0));
        if (q < queues.size()) {
          queues[q]["tid"] = qs.value("tid", 0);
          queues[q]["stats"] = qs;
        }
        worst = std::max(worst, rank(qs.value("target", nlohmann::json::object()).value("state", "")));
      }
      if (worst >= 0) j["io_state"] = kWorse[worst];
      if (worst >= 2) j["state"] = worst == 2 ? "RECONNECTING" : "FAILED";
    }
  }
  j["queues"] = queues;
  return j;
}

std::string format_device_text(const nlohmann::json& d) {
  std::string out = fmt::format("dev id {}: nr_hw_queues {} queue_depth {} block size {} dev_capacity {}\n",
                                d.value("dev_id", 0u), d.value("nr_hw_queues", 0), d.value("queue_depth", 0),
                                d.value("block_size", 0u), d.value("sectors", uint64_t(0)));
  out += fmt::format("\tmax rq size {} daemon pid {} flags {:#x} state {}{}\n", d.value("max_io_buf_bytes", 0u),
                     d.value("daemon_pid", 0), d.value("flags", uint64_t(0)), d.value("state", std::string("?")),
                     d.contains("io_state") ? fmt::format(" (connections: {})", d.value("io_state", "")) : "");
  if (d.contains("name")) out += fmt::format("\tname {} (device table)\n", d.value("name", std::string()));
  out += fmt::format("\tublkc: {} ublkb: {} owner: {}\n", d.value("ublkc_devt", std::string("-")),
                     d.value("ublkb_devt", std::string("-")), d.value("owner", std::string("-")));
  for (auto& q : d.value("queues", nlohmann::json::array())) {
    std::string cpus;
    for (auto& c : q.value("affinity", nlohmann::json::array())) cpus += fmt::format("{} ", c.get<int>());
    out += fmt::format("\tqueue {}: tid {} affinity({})\n", q.value("queue", 0), q.value("tid", 0), cpus);
  }
  out += fmt::format("\ttarget {}\n", d.value("target", nlohmann::json::object()).dump());
  return out;
}

}  // namespace ublkrdma::cli
