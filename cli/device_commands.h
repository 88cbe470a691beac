#pragma once
// The commands on existing devices: del, list, recover, features (ublksrv's verbs).
#include <cstdint>
#include <string>

#include "ublk/control_device.h"

namespace ublkrdma::cli {

// Restarts the daemon of a -r 1 device whose daemon died. Returns the exit code.
int cmd_recover(int dev_id, bool foreground);
// STOP_DEV then DEL_DEV (which returns once the daemon has released /dev/ublkcN).
int delete_device(ublk::ControlDevice& ctrl, uint32_t id);
int cmd_del(int dev_id, bool all);
int cmd_list(int dev_id, bool json);
int cmd_features(bool json);

}  // namespace ublkrdma::cli
