#include "cli/device_table.h"

#include <algorithm>
#include <iostream>
#include <optional>
#include <set>

#include "base/log.h"
#include "base/plain_name.h"
#include "cli/add_command.h"
#include "cli/config_file.h"
#include "cli/device_commands.h"
#include "cli/device_state.h"
#include "cli/usage_error.h"
#include "ublk/control_device.h"
#include "ublk/uapi.h"

namespace ublkrdma::cli {
namespace {

// Keys that mean nothing in the table: `up` decides whether a daemon runs in the foreground.
const std::vector<std::string> kRefusedKeys = {"foreground", "help"};

constexpr size_t kMaxNameLength = 32;

std::vector<ConfigSection> read_sections(const std::string& path) {
  CLI::App cmd{"", "add"};
  AddArgs unused;
  add_add_options(cmd, unused);
  std::vector<ConfigSection> sections = parse_config_sections(read_config_text(path), path, cmd, kRefusedKeys);
  for (const ConfigSection& s : sections)
    if (!is_plain_name(s.name, kMaxNameLength))
      throw UsageError(fmt::format("{}: [{}]: a device name is 1..{} of [A-Za-z0-9._-]", s.origin,
                                   log::escaped(s.name), kMaxNameLength));
  return sections;
}

TableDevice plan_device(const ConfigSection& s) {
  CLI::App cmd{"", "add"};
  AddArgs a;
  add_add_options(cmd, a);
  std::vector<std::string> args;
  for (const ConfigSetting& c : s.settings) args.insert(args.end(), c.args.begin(), c.args.end());
  auto where = [&s](const std::string& message) {
    std::string at = config_origin_prefix(s.settings, message);
    return (at.empty() ? s.origin + ": [" + s.name + "]: " : at) + message;
  };
  try {
    std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
    cmd.parse(args);
    if (cmd.get_option("--recovery")->count() == 0) a.recovery = 1;
    TableDevice d{s.name, s.origin, plan_add(cmd, a)};
    d.plan.name = s.name;
    return d;
  } catch (const CLI::ParseError& e) {
    throw UsageError(where(e.what()));
  } catch (const UsageError& e) {
    throw UsageError(where(e.what()));
  }
}

// The devices of `table` that `names` (or `all`) select, in the table's order.
template <typename T>
std::vector<T> select(std::vector<T> devices, const std::vector<std::string>& names, bool all, const std::string& table) {
  if (all) return devices;
  if (names.empty()) throw UsageError("name the devices of the table (or give --all)");
  for (const std::string& n : names)
    if (std::none_of(devices.begin(), devices.end(), [&n](const T& d) { return d.name == n; }))
      throw UsageError(fmt::format("no device '{}' in {}", log::escaped(n), table));
  std::erase_if(devices, [&names](const T& d) { return std::find(names.begin(), names.end(), d.name) == names.end(); });
  return devices;
}

// The device a daemon of this table's entry serves, if one exists.
std::optional<uint32_t> find_device(const std::string& name) {
  for (uint32_t id : ublk::ControlDevice::list_dev_ids())
    if (auto state = read_state(id); state && state->value("name", std::string()) == name) return id;
  return std::nullopt;
}

int up_one(ublk::ControlDevice& ctrl, const TableDevice& d, bool foreground) {
  DaemonPlan plan = d.plan;
  plan.foreground = foreground;
  std::optional<uint32_t> id = find_device(d.name);
  ublk::CtrlDevInfo info;
  if (!id) {
    if (plan.dev_opts.dev_id >= 0 && ctrl.get_dev_info(uint32_t(plan.dev_opts.dev_id), info) == 0) {
      std::cerr << fmt::format("ublk-rdma: {}: device {} exists and is not this table's {}\n", d.name,
                               plan.dev_opts.dev_id, d.name);
      return kExitFailure;
    }
    return run_add(plan);
  }
  if (ctrl.get_dev_info(*id, info) < 0) return run_add(plan);  // deleted since the scan
  auto state = read_state(*id);
  pid_t daemon = state ? pid_t(state->value("daemon_pid", 0)) : 0;
  if (process_alive(daemon)) {
    std::cerr << fmt::format("ublk-rdma: {}: attached as /dev/ublkb{} (daemon pid {})\n", d.name, *id, daemon);
    return foreground ? kExitFailure : kExitOk;  // a service must not report a daemon it does not run
  }
  if (info.flags & ublk::kFUserRecovery) {
    log::cli()->info("{}: device {} has lost its daemon: recovering it", d.name, *id);
    return cmd_recover(int(*id), foreground);
  }
  log::cli()->warn("{}: device {} has lost its daemon and cannot be recovered (recovery = 0): adding it anew", d.name,
                   *id);
  if (int rc = delete_device(ctrl, *id); rc != kExitOk) return rc;
  return run_add(plan);
}

}  // namespace

std::vector<TableDevice> read_device_table(const std::string& path) {
  std::vector<TableDevice> out;
  std::set<int> numbers;
  for (const ConfigSection& s : read_sections(path)) {
    out.push_back(plan_device(s));
    int n = out.back().plan.dev_opts.dev_id;
    if (n >= 0 && !numbers.insert(n).second)
      throw UsageError(fmt::format("{}: [{}]: number {} is taken by another device of the table", s.origin, s.name, n));
  }
  return out;
}

int cmd_up(const std::string& table, const std::vector<std::string>& names, bool all, bool foreground) {
  std::vector<TableDevice> devices = select(read_device_table(table), names, all, table);
  if (foreground && (all || devices.size() != 1))
    throw UsageError("--foreground serves one device: name exactly one");
  ublk::ControlDevice ctrl;
  int rc = kExitOk;
  for (const TableDevice& d : devices)
    if (up_one(ctrl, d, foreground) != kExitOk) rc = kExitFailure;
  return rc;
}

int cmd_down(const std::string& table, const std::vector<std::string>& names, bool all) {
  std::vector<ConfigSection> devices = select(read_sections(table), names, all, table);
  ublk::ControlDevice ctrl;
  int rc = kExitOk;
  for (const ConfigSection& d : devices) {
    std::optional<uint32_t> id = find_device(d.name);
    if (!id) {
      log::cli()->info("{}: not attached", d.name);
      continue;
    }
    if (delete_device(ctrl, *id) != kExitOk) rc = kExitFailure;
  }
  return rc;
}

}  // namespace ublkrdma::cli
