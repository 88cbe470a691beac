#include "ublk/control_device.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/log.h"

namespace ublkrdma::ublk {

std::string device_state_name(uint16_t state) {
  switch (state) {
    case kStateDead: return "DEAD";
    case kStateLive: return "LIVE";
    case kStateQuiesced: return "QUIESCED";
    case kStateFailIo: return "FAIL_IO";
    default: return "UNKNOWN";
  }
}

std::vector<std::string> feature_names(uint64_t f) {
  static constexpr std::pair<uint64_t, const char*> kNames[] = {
      {kFSupportZeroCopy, "ZERO_COPY"},        {kFUringCmdCompInTask, "COMP_IN_TASK"},
      {kFNeedGetData, "NEED_GET_DATA"},        {kFUserRecovery, "USER_RECOVERY"},
      {kFUserRecoveryReissue, "RECOVERY_REISSUE"}, {kFUnprivilegedDev, "UNPRIVILEGED_DEV"},
      {kFCmdIoctlEncode, "CMD_IOCTL_ENCODE"},  {kFUserCopy, "USER_COPY"},
      {kFZoned, "ZONED"},                      {kFUserRecoveryFailIo, "RECOVERY_FAIL_IO"},
      {kFUpdateSize, "UPDATE_SIZE"},           {kFAutoBufReg, "AUTO_BUF_REG"},
      {kFQuiesce, "QUIESCE"},                  {kFPerIoDaemon, "PER_IO_DAEMON"},
      {kFBufRegOffDaemon, "BUF_REG_OFF_DAEMON"}, {kFBatchIo, "BATCH_IO"},
      {kFIntegrity, "INTEGRITY"},              {kFSafeStopDev, "SAFE_STOP_DEV"},
      {kFNoAutoPartScan, "NO_AUTO_PART_SCAN"}, {kFShmemZc, "SHMEM_ZC"},
  };
  std::vector<std::string> out;
  uint64_t known = 0;
  for (auto [bit, name] : kNames) {
    known |= bit;
    if (f & bit) out.emplace_back(name);
  }
  for (int b = 0; b < 64; ++b)
    if ((f & ~known) & (1ull << b)) out.push_back(fmt::format("UNKNOWN_BIT_{}", b));
  return out;
}

ControlDevice::ControlDevice() {
  int fd = ::open(kControlPath, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT)
      throw SetupError(fmt::format("{} does not exist: ublk_drv is not loaded: modprobe ublk_drv", kControlPath), err);
    if (err == EACCES || err == EPERM)
      throw SetupError(fmt::format("cannot open {}: {}: run as root", kControlPath, errno_text(err)), err);
    throw_errno(err, "cannot open {}", kControlPath);
  }
  fd_.reset(fd);
  ring_.init(8, IORING_SETUP_SQE128);

  // GET_FEATURES exists only ioctl-encoded; kernels without it answer -EOPNOTSUPP/-EINVAL and
  // only know the legacy opcodes.
  uint64_t features = 0;
  CtrlCmd cmd{};
  cmd.dev_id = UINT32_MAX;
  cmd.queue_id = UINT16_MAX;
  cmd.addr = reinterpret_cast<uint64_t>(&features);
  cmd.len = sizeof(features);
  int rc = execute(kCmdGetFeatures, true, cmd);
  if (rc == 0) {
    kernel_.get_features_supported = true;
    kernel_.features = features;
  } else {
    log::ctrl()->debug("GET_FEATURES failed ({}), assuming a kernel with legacy opcodes only", errno_text(rc));
  }
}

int ControlDevice::execute(uint32_t nr, bool read_only, CtrlCmd cmd, bool value) {
  io_uring* ring = ring_.get();
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (!sqe) return -EBUSY;
  std::memset(sqe, 0, 2 * sizeof(*sqe));  // SQE128
  sqe->fd = fd_.get();
  sqe->opcode = IORING_OP_URING_CMD;
  // GET_FEATURES is probed ioctl-encoded before we know the encoding.
  bool encode = nr == kCmdGetFeatures || nr == kCmdRegBuf || nr == kCmdUnregBuf || nr == kCmdUpdateSize ||
                kernel_.ioctl_encode();
  sqe->cmd_op = encode ? ioctl_ctrl_op(nr, read_only) : nr;
  static_assert(sizeof(CtrlCmd) <= 80, "control command must fit the SQE128 command area");
  std::memcpy(sqe->cmd, &cmd, sizeof(cmd));
  sqe->user_data = nr;
  int rc = io_uring_submit(ring);
  if (rc < 0) return rc;
  io_uring_cqe* cqe = nullptr;
  do {
    rc = io_uring_wait_cqe(ring, &cqe);
  } while (rc == -EINTR);
  if (rc < 0) return rc;
  int res = cqe->res;
  io_uring_cqe_seen(ring, cqe);
  return res < 0 || value ? res : 0;
}

namespace {
CtrlCmd dev_cmd(uint32_t dev_id) {
  CtrlCmd c{};
  c.dev_id = dev_id;
  c.queue_id = UINT16_MAX;
  return c;
}
}  // namespace

int ControlDevice::add_dev(CtrlDevInfo& info) {
  CtrlCmd c = dev_cmd(info.dev_id);
  c.addr = reinterpret_cast<uint64_t>(&info);
  c.len = sizeof(info);
  return execute(kCmdAddDev, false, c);
}

int ControlDevice::set_params(uint32_t dev_id, const Params& params) {
  CtrlCmd c = dev_cmd(dev_id);
  c.addr = reinterpret_cast<uint64_t>(&params);
  c.len = sizeof(params);
  return execute(kCmdSetParams, false, c);
}

int ControlDevice::get_params(uint32_t dev_id, Params& params) {
  std::memset(&params, 0, sizeof(params));
  params.len = sizeof(params);
  CtrlCmd c = dev_cmd(dev_id);
  c.addr = reinterpret_cast<uint64_t>(&params);
  c.len = sizeof(params);
  return execute(kCmdGetParams, true, c);
}

int ControlDevice::start_dev(uint32_t dev_id, pid_t pid) {
  CtrlCmd c = dev_cmd(dev_id);
  c.data[0] = uint64_t(pid);
  return execute(kCmdStartDev, false, c);
}

int ControlDevice::stop_dev(uint32_t dev_id) { return execute(kCmdStopDev, false, dev_cmd(dev_id)); }

int ControlDevice::del_dev(uint32_t dev_id) { return execute(kCmdDelDev, false, dev_cmd(dev_id)); }

int ControlDevice::get_dev_info(uint32_t dev_id, CtrlDevInfo& info) {
  std::memset(&info, 0, sizeof(info));
  CtrlCmd c = dev_cmd(dev_id);
  c.addr = reinterpret_cast<uint64_t>(&info);
  c.len = sizeof(info);
  return execute(kCmdGetDevInfo, true, c);
}

int ControlDevice::get_queue_affinity(uint32_t dev_id, uint16_t queue, cpu_set_t& set) {
  CPU_ZERO(&set);
  CtrlCmd c = dev_cmd(dev_id);
  c.data[0] = queue;
  c.addr = reinterpret_cast<uint64_t>(&set);
  c.len = sizeof(set);
  return execute(kCmdGetQueueAffinity, true, c);
}

int ControlDevice::start_user_recovery(uint32_t dev_id) {
  return execute(kCmdStartUserRecovery, false, dev_cmd(dev_id));
}

int ControlDevice::end_user_recovery(uint32_t dev_id, pid_t pid) {
  CtrlCmd c = dev_cmd(dev_id);
  c.data[0] = uint64_t(pid);
  return execute(kCmdEndUserRecovery, false, c);
}

int ControlDevice::reg_buf(uint32_t dev_id, std::span<const std::byte> buf, bool read_only) {
  ShmemBufReg reg{reinterpret_cast<uint64_t>(buf.data()), buf.size(), read_only ? kShmemBufReadOnly : 0, 0};
  CtrlCmd c = dev_cmd(dev_id);
  c.addr = reinterpret_cast<uint64_t>(&reg);
  c.len = sizeof(reg);
  return execute(kCmdRegBuf, false, c, /*value=*/true);
}

int ControlDevice::unreg_buf(uint32_t dev_id, uint32_t index) {
  CtrlCmd c = dev_cmd(dev_id);
  c.data[0] = index;
  return execute(kCmdUnregBuf, false, c);
}

int ControlDevice::update_size(uint32_t dev_id, uint64_t sectors) {
  CtrlCmd c = dev_cmd(dev_id);
  c.data[0] = sectors;
  return execute(kCmdUpdateSize, false, c);
}

std::vector<uint32_t> ControlDevice::list_dev_ids() {
  std::vector<uint32_t> ids;
  std::error_code ec;
  // The driver's character-device class is "ublk-char" (each device: ublkcN).
  for (auto& e : std::filesystem::directory_iterator("/sys/class/ublk-char", ec)) {
    std::string name = e.path().filename();
    if (name.rfind("ublkc", 0) == 0 && name.size() > 5 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      ids.push_back(uint32_t(std::stoul(name.substr(5))));
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace ublkrdma::ublk
