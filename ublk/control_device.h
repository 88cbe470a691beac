#pragma once
// The ublk control plane: uring_cmds on /dev/ublk-control (SQE128). One instance per process
// phase (CLI command or daemon setup); not used from queue threads.
#include <sched.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/io_ring.h"
#include "base/unique_fd.h"
#include "ublk/uapi.h"

namespace ublkrdma::ublk {

inline constexpr const char* kControlPath = "/dev/ublk-control";

// Which command encoding the running kernel wants, decided once by probing.
struct KernelFeatures {
  bool get_features_supported = false;  // GET_FEATURES answered (kernel >= 6.5-ish)
  uint64_t features = 0;                // UBLK_F_* the driver supports
  bool ioctl_encode() const { return features & kFCmdIoctlEncode; }
};

std::string device_state_name(uint16_t state);
std::vector<std::string> feature_names(uint64_t features);

class ControlDevice {
 public:
  // Opens /dev/ublk-control and probes features. Throws SetupError with a hint when the driver
  // is missing ("ublk_drv is not loaded: modprobe ublk_drv").
  ControlDevice();

  const KernelFeatures& kernel() const { return kernel_; }

  // All return 0 or -errno (the caller decides how to report), except where noted.
  int add_dev(CtrlDevInfo& info);  // info.dev_id may be UINT32_MAX for "any"; filled on return
  int set_params(uint32_t dev_id, const Params& params);
  int get_params(uint32_t dev_id, Params& params);
  int start_dev(uint32_t dev_id, pid_t daemon_pid);
  int stop_dev(uint32_t dev_id);
  int del_dev(uint32_t dev_id);
  int get_dev_info(uint32_t dev_id, CtrlDevInfo& info);
  int get_queue_affinity(uint32_t dev_id, uint16_t queue, cpu_set_t& set);
  int start_user_recovery(uint32_t dev_id);
  int end_user_recovery(uint32_t dev_id, pid_t daemon_pid);
  // SHMEM_ZC: registers `buf` (page aligned, mapped shared) with the device; returns the
  // buffer's index (>= 0) or -errno. The driver pins its pages until UNREG_BUF or DEL_DEV.
  int reg_buf(uint32_t dev_id, std::span<const std::byte> buf, bool read_only);
  int unreg_buf(uint32_t dev_id, uint32_t index);
  // UPDATE_SIZE (6.16+): the device's capacity becomes `sectors` (512 bytes), live.
  int update_size(uint32_t dev_id, uint64_t sectors);

  // Device ids present in the kernel (from /sys/class/ublk-char-dev), sorted.
  static std::vector<uint32_t> list_dev_ids();

 private:
  // The command's result: 0 or -errno, or with `value` what the driver answered (>= 0).
  int execute(uint32_t nr, bool read_only, CtrlCmd cmd, bool value = false);

  UniqueFd fd_;
  IoRing ring_;
  KernelFeatures kernel_;
};

}  // namespace ublkrdma::ublk
