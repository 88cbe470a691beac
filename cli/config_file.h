#pragma once
// Configuration files (TOML): `serve --config FILE` and the device table of `up`/`down`. A
// table's keys are a command's long options without "--", so a file can say everything the
// command line can, and goes through the same parser and checks:
//   threads = 2                        ->  --threads 2
//   export = ["a=ram:1G", "b=null:1G"] ->  --export a=ram:1G --export b=null:1G
//   no-push-writes = true              ->  --no-push-writes   (false: left out)
// Errors name the file and line.
#include <CLI/CLI.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace ublkrdma::cli {

// One key of a file, as arguments of its command.
struct ConfigSetting {
  std::string key;                // "threads"
  std::vector<std::string> args;  // {"--threads", "2"}; empty for a flag set to false
  std::string origin;             // "FILE:LINE"
};

// A table of a file whose tables are one thing each (the device table: one per device).
struct ConfigSection {
  std::string name;    // the table's name
  std::string origin;  // "FILE:LINE" of its header
  std::vector<ConfigSetting> settings;
};

// Keys of a file are `cmd`'s long options, except `refused` ones (those that mean nothing in a
// file, such as "config"). Everything throws UsageError, naming `file` and the line.

// A file with keys at its top level (serve --config): its settings for `cmd`.
std::vector<ConfigSetting> parse_config_settings(std::string_view text, const std::string& file, const CLI::App& cmd,
                                                 const std::vector<std::string>& refused);

// A file of tables and nothing else at its top level (the device table): each a set of settings.
std::vector<ConfigSection> parse_config_sections(std::string_view text, const std::string& file, const CLI::App& cmd,
                                                 const std::vector<std::string>& refused);

// The text of a configuration file; UsageError if it cannot be read.
std::string read_config_text(const std::string& path);

// The arguments for `cmd` from a file's settings and the command line's arguments: the command
// line wins for an option it gives, except a repeatable one, whose values from both count.
// `given` is `cmd` as parsed from the command line alone.
std::vector<std::string> merge_config_args(const std::vector<ConfigSetting>& settings, const CLI::App& given,
                                           const std::vector<std::string>& command_line);

// "FILE:LINE: " for the setting whose option `message` names, or "" if it names none of them.
std::string config_origin_prefix(const std::vector<ConfigSetting>& settings, std::string_view message);

}  // namespace ublkrdma::cli
