// ublk-rdma: command line. ublksrv-compatible verbs (add, del, list, recover, features), `serve`
// (the RDMA target server), `up`/`down` (the device table), `stats` (the devices' metrics) and
// helpers. Exit codes: 0 success, 1 failure, 2 usage error (cli/usage_error.h).
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <string_view>

#include "base/errors.h"
#include "base/log.h"
#include "cli/add_command.h"
#include "cli/completion.h"
#include "cli/device_commands.h"
#include "cli/device_table.h"
#include "cli/serve_command.h"
#include "cli/stats_command.h"
#include "cli/usage_error.h"
#include "cli/version.h"
#include "transport/auth.h"

namespace ublkrdma::cli {
namespace {

int cmd_gen_key() {
  std::cout << auth::format_key(auth::generate_key()) << "\n";
  return 0;
}

// The position of argv's command word: the first argument that is neither a global option nor
// its value (-1: none).
int command_index(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view t = argv[i];
    if (t == "--log-level") {
      ++i;
      continue;
    }
    if (!t.starts_with("-")) return i;
  }
  return -1;
}

bool asks_help_or_version(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view t = argv[i];
    if (t == "-h" || t == "--help" || t == "-V" || t == "--version") return true;
  }
  return false;
}

std::string command_names(const CLI::App& app) {
  std::string out;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    out += (out.empty() ? "" : ", ") + sub->get_name();
  return out;
}

const CLI::App* find_command(const CLI::App& app, std::string_view name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

int run(int argc, char** argv) {
  CLI::App app{"ublk-rdma: a remote disk over RDMA, served through the Linux ublk driver"};
  app.set_version_flag("-V,--version", "ublk-rdma " + version_text());
  app.require_subcommand(1);
  std::string log_level;
  app.add_option("--log-level", log_level, "Log levels, e.g. 'info' or 'warn,rdma=debug' (env UBLK_RDMA_LOG)");

  AddArgs add;
  auto* add_cmd = app.add_subcommand("add", "Create a ublk device served by a new daemon");
  add_add_options(*add_cmd, add);

  int del_id = -1;
  bool del_all = false;
  auto* del_cmd = app.add_subcommand("del", "Stop and delete a device (and its daemon)");
  auto* del_n = del_cmd->add_option("-n,--number", del_id, "Device id")->check(device_id_range());
  auto* del_a = del_cmd->add_flag("-a,--all", del_all, "All devices");
  del_n->excludes(del_a);

  int list_id = -1;
  bool list_json = false;
  auto* list_cmd = app.add_subcommand("list", "Show devices");
  list_cmd->add_option("-n,--number", list_id, "Device id")->check(device_id_range());
  list_cmd->add_flag("--json", list_json, "JSON output");
  bool list_verbose = false;  // accepted for ublksrv compatibility: the output is always complete
  list_cmd->add_flag("-v,--verbose", list_verbose, "Accepted for ublksrv compatibility");

  int rec_id = -1;
  bool rec_fg = false;
  auto* rec_cmd = app.add_subcommand("recover", "Restart the daemon of a -r 1 device whose daemon died");
  rec_cmd->add_option("-n,--number", rec_id, "Device id")->required()->check(device_id_range());
  rec_cmd->add_flag("--foreground", rec_fg, "Serve from this process");

  StatsArgs stats;
  auto* stats_cmd = app.add_subcommand("stats", "Show the devices' metrics: JSON, or --prometheus for node_exporter");
  add_stats_options(*stats_cmd, stats);

  bool feat_json = false;
  auto* feat_cmd = app.add_subcommand("features", "Show what the running kernel's ublk driver supports");
  feat_cmd->add_flag("--json", feat_json, "JSON output (with this build's version and protocol version)");

  ServeArgs serve;
  auto* serve_cmd = app.add_subcommand("serve", "Run the RDMA target server (foreground)");
  add_serve_options(*serve_cmd, serve);

  std::string table = kDefaultDeviceTable;
  std::vector<std::string> up_names, down_names;
  bool up_all = false, up_fg = false, down_all = false;
  auto* up_cmd = app.add_subcommand("up", "Attach devices of the device table: add, or recover one whose daemon died");
  up_cmd->add_option("names", up_names, "Names of the table's devices");
  up_cmd->add_flag("-a,--all", up_all, "Every device of the table");
  up_cmd->add_option("--config", table, "The device table (TOML: [NAME] tables of add's options)")
      ->capture_default_str();
  up_cmd->add_flag("--foreground", up_fg, "Serve the one device named from this process (a service's main process)");
  auto* down_cmd = app.add_subcommand("down", "Detach (delete) devices of the device table");
  down_cmd->add_option("names", down_names, "Names of the table's devices");
  down_cmd->add_flag("-a,--all", down_all, "Every device of the table");
  down_cmd->add_option("--config", table, "The device table")->capture_default_str();

  auto* gen_key_cmd = app.add_subcommand("gen-key", "Print a new random key (for --key-file and --auth-keys)");

  std::string shell;
  auto* completion_cmd = app.add_subcommand("completion", "Print the shell completion script (bash)");
  completion_cmd->add_option("shell", shell, "Shell")->required()->check(CLI::IsMember({"bash"}));

  std::string help_topic;
  auto* help_cmd = app.add_subcommand("help", "Show help for a command");
  help_cmd->add_option("command", help_topic, "Command name");

  int at = command_index(argc, argv);
  if (!asks_help_or_version(argc, argv)) {
    if (at < 0) {
      std::cerr << "ublk-rdma: a command is required: " << command_names(app) << "\n";
      std::cerr << "Run 'ublk-rdma --help' for usage.\n";
      return kExitUsage;
    }
    if (find_command(app, argv[at]) == nullptr) {
      std::cerr << "ublk-rdma: unknown command '" << log::escaped(argv[at]) << "' (commands: " << command_names(app)
                << ")\n";
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion&) {
    std::cout << "ublk-rdma " << version_text() << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    std::cerr << "Run 'ublk-rdma --help' or 'ublk-rdma help COMMAND' for usage.\n";
    return kExitUsage;
  }

  const char* env_level = std::getenv("UBLK_RDMA_LOG");
  log::apply_levels(!log_level.empty() ? log_level : (env_level ? env_level : "info"));

  try {
    if (*help_cmd) {
      if (help_topic.empty()) {
        std::cout << app.help();
        return kExitOk;
      }
      if (const CLI::App* sub = find_command(app, help_topic)) {
        std::cout << sub->help();
        return kExitOk;
      }
      std::cerr << "ublk-rdma: no such command '" << log::escaped(help_topic) << "' (commands: " << command_names(app)
                << ")\n";
      return kExitUsage;
    }
    if (*add_cmd) return run_add(plan_add(*add_cmd, add));
    if (*del_cmd) {
      if (del_id < 0 && !del_all) throw UsageError("del needs -n ID or -a");
      return cmd_del(del_id, del_all);
    }
    if (*list_cmd) return cmd_list(list_id, list_json);
    if (*rec_cmd) return cmd_recover(rec_id, rec_fg);
    if (*stats_cmd) return run_stats(stats);
    if (*feat_cmd) return cmd_features(feat_json);
    if (*serve_cmd) return cmd_serve(*serve_cmd, serve, std::vector<std::string>(argv + at + 1, argv + argc));
    if (*up_cmd) return cmd_up(table, up_names, up_all, up_fg);
    if (*down_cmd) return cmd_down(table, down_names, down_all);
    if (*gen_key_cmd) return cmd_gen_key();
    if (*completion_cmd) {
      std::cout << bash_completion(app);
      return kExitOk;
    }
  } catch (const UsageError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    return kExitUsage;
  } catch (const SetupError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
    return kExitFailure;
  } catch (const std::exception& e) {
    std::cerr << "ublk-rdma: unexpected error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace
}  // namespace ublkrdma::cli

int main(int argc, char** argv) { return ublkrdma::cli::run(argc, argv); }
