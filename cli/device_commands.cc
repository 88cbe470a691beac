#include "cli/device_commands.h"

#include <signal.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/errors.h"
#include "base/log.h"
#include "cli/add_command.h"
#include "cli/daemon.h"
#include "cli/device_listing.h"
#include "cli/device_state.h"
#include "cli/usage_error.h"
#include "cli/version.h"
#include "transport/wire_protocol.h"
#include "ublk/shared_buffers.h"
#include "ublk/uapi.h"

namespace ublkrdma::cli {

int cmd_recover(int dev_id, bool foreground) {
  ublk::ControlDevice ctrl;
  ublk::CtrlDevInfo info;
  if (ctrl.get_dev_info(uint32_t(dev_id), info) < 0) {
    std::cerr << "ublk-rdma: device " << dev_id << " does not exist\n";
    return kExitFailure;
  }
  auto state = read_state(uint32_t(dev_id));
  if (!state) {
    std::cerr << "ublk-rdma: no record of device " << dev_id << " in " << run_dir()
              << ": it was not created by ublk-rdma on this machine\n";
    return kExitFailure;
  }
  pid_t old = state->value("daemon_pid", 0);
  if (info.state == ublk::kStateLive && process_alive(old)) {
    std::cerr << "ublk-rdma: device " << dev_id << " is live and its daemon (pid " << old
              << ") is running: nothing to recover\n";
    return kExitFailure;
  }
  DaemonPlan plan;
  plan.foreground = foreground;
  plan.recover_id = uint32_t(dev_id);
  plan.name = state->value("name", std::string());
  plan.dev_opts.dev_id = dev_id;
  plan.dev_opts.nr_queues = info.nr_hw_queues;
  plan.dev_opts.queue_depth = info.queue_depth;
  plan.dev_opts.max_io_bytes = info.max_io_buf_bytes;
  plan.dev_opts.recovery = ublk::RecoveryMode::kReissue;  // the device's own flags decide
  plan.dev_opts.poll.mode = poll_mode_option(state->value("poll_mode", std::string("hybrid")));
  plan.dev_opts.poll.hybrid_spin =
      std::chrono::microseconds(state->value("hybrid_spin_us", int64_t(ublk::kDefaultHybridSpin.count())));
  plan.dev_opts.poll.inflight_spin =
      std::chrono::microseconds(state->value("inflight_spin_us", int64_t(ublk::kDefaultInflightSpin.count())));
  plan.target_args = state->value("target_args", nlohmann::json::object());
  plan.dev_opts.shared_buffers = ublk::SharedBuffers::from_description(state->value("shmem_bufs", nlohmann::json()));
  return run_device_daemon(plan);
}

int delete_device(ublk::ControlDevice& ctrl, uint32_t id) {
  ublk::CtrlDevInfo info;
  if (ctrl.get_dev_info(id, info) < 0) {
    std::cerr << "ublk-rdma: device " << id << " does not exist\n";
    return kExitFailure;
  }
  auto state = read_state(id);
  pid_t daemon = state ? pid_t(state->value("daemon_pid", 0)) : info.ublksrv_pid;
  // A live daemon deletes its device itself on SIGTERM, after telling its queues: requests it
  // holds for a lost connection then fail at once, where our STOP_DEV would wait for them until
  // the connection came back or was given up (--ctrl-loss-tmo).
  if (info.state == ublk::kStateLive && info.ublksrv_pid > 0 && info.ublksrv_pid == daemon && process_alive(daemon) &&
      ::kill(daemon, SIGTERM) == 0) {
    for (int i = 0; i < 700 && ctrl.get_dev_info(id, info) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (ctrl.get_dev_info(id, info) < 0) {
      for (int i = 0; i < 100 && process_alive(daemon); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      remove_state(id);
      return kExitOk;
    }
    log::cli()->warn("device {}: its daemon (pid {}) did not delete it within 35 s of SIGTERM; deleting it", id, daemon);
  }
  int rc = ctrl.stop_dev(id);
  if (rc < 0 && rc != -ENODEV) log::cli()->debug("STOP_DEV {}: {}", id, errno_text(rc));
  rc = ctrl.del_dev(id);
  if (rc < 0) {
    std::cerr << "ublk-rdma: deleting device " << id << " failed: " << errno_text(rc) << "\n";
    return kExitFailure;
  }
  // DEL_DEV returned: the daemon has closed the device; give it a moment to exit entirely.
  for (int i = 0; i < 100 && process_alive(daemon); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  remove_state(id);
  return kExitOk;
}

int cmd_del(int dev_id, bool all) {
  ublk::ControlDevice ctrl;
  if (!all) return delete_device(ctrl, uint32_t(dev_id));
  int rc = kExitOk;
  for (uint32_t id : ublk::ControlDevice::list_dev_ids())
    if (delete_device(ctrl, id) != kExitOk) rc = kExitFailure;
  return rc;
}

int cmd_list(int dev_id, bool json) {
  ublk::ControlDevice ctrl;
  std::vector<uint32_t> ids;
  if (dev_id >= 0) {
    ids.push_back(uint32_t(dev_id));
  } else {
    ids = ublk::ControlDevice::list_dev_ids();
  }
  nlohmann::json arr = nlohmann::json::array();
  for (uint32_t id : ids) {
    auto d = describe_device(ctrl, id);
    if (!d) {
      if (dev_id >= 0) {
        std::cerr << "ublk-rdma: device " << id << " does not exist\n";
        return kExitFailure;
      }
      continue;  // vanished between the directory scan and the query
    }
    if (json) {
      arr.push_back(*d);
    } else {
      std::cout << format_device_text(*d);
    }
  }
  if (json) std::cout << arr.dump(2) << "\n";
  return kExitOk;
}

int cmd_features(bool json) {
  ublk::ControlDevice ctrl;
  const auto& k = ctrl.kernel();
  if (json) {
    std::cout << nlohmann::json{{"version", version_text()},
                                {"git_commit", git_commit()},
                                {"protocol_version", wire::kVersion},
                                {"protocol_min_version", wire::kMinVersion},
                                {"get_features", k.get_features_supported},
                                {"features", k.features},
                                {"names", ublk::feature_names(k.features)},
                                {"ioctl_encode", k.ioctl_encode()},
                                {"features_used", ublk::feature_names(ublk::kFeaturesWeUse)},
                                {"features_usable", ublk::feature_names(k.features & ublk::kFeaturesWeUse)}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  if (!k.get_features_supported) {
    std::cout << "ublk driver: GET_FEATURES unsupported (old kernel): legacy opcodes only\n";
    return kExitOk;
  }
  std::cout << fmt::format("ublk driver features: {:#x}\n", k.features);
  for (uint64_t bit = 1; bit != 0; bit <<= 1) {
    if (!(k.features & bit)) continue;
    for (auto& n : ublk::feature_names(bit))
      std::cout << "\t" << n << ((bit & ublk::kFeaturesWeUse) ? "\t(used by ublk-rdma)" : "") << "\n";
  }
  return kExitOk;
}

}  // namespace ublkrdma::cli
