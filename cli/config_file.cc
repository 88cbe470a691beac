#include "cli/config_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "cli/usage_error.h"

namespace ublkrdma::cli {
namespace {

std::string origin(const std::string& file, const toml::source_region& where) {
  return fmt::format("{}:{}", file, where.begin.line);
}

// Takes any number of values (--export, --traddr): an array in a file.
bool repeatable(const CLI::Option& o) { return o.get_expected_max() > 1; }

bool is_flag(const CLI::Option& o) { return o.get_expected_max() == 0; }

bool plain_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

// One value of a key as an argument: strings as they are, integers in decimal.
std::string scalar_arg(const toml::node& v, const std::string& where, std::string_view key) {
  if (auto s = v.value_exact<std::string>()) return *s;
  if (auto i = v.value_exact<int64_t>()) return std::to_string(*i);
  throw UsageError(fmt::format("{}: {}: a value must be a string or an integer, not {}", where, key,
                               v.is_boolean() ? "true/false (the option takes a value)" : "this"));
}

ConfigSetting setting(std::string_view key, const toml::node& v, const CLI::App& cmd, const std::string& file,
                      const std::vector<std::string>& refused) {
  ConfigSetting s{std::string(key), {}, origin(file, v.source())};
  for (const std::string& r : refused)
    if (key == r) throw UsageError(fmt::format("{}: '{}' cannot be set in a configuration file", s.origin, key));
  const CLI::Option* o = plain_key(key) ? cmd.get_option_no_throw("--" + s.key) : nullptr;
  if (o == nullptr)
    throw UsageError(fmt::format("{}: unknown key '{}' ({} has no option --{})", s.origin, key, cmd.get_name(), key));
  if (is_flag(*o)) {
    auto b = v.value_exact<bool>();
    if (!b) throw UsageError(fmt::format("{}: {}: --{} is a flag: use true or false", s.origin, key, key));
    if (*b) s.args.push_back("--" + s.key);
    return s;
  }
  if (const toml::array* a = v.as_array()) {
    if (!repeatable(*o))
      throw UsageError(fmt::format("{}: {}: --{} takes one value, not a list", s.origin, key, key));
    for (const toml::node& e : *a) {
      s.args.push_back("--" + s.key);
      s.args.push_back(scalar_arg(e, s.origin, key));
    }
    return s;
  }
  s.args = {"--" + s.key, scalar_arg(v, s.origin, key)};
  return s;
}

toml::table parse_text(std::string_view text, const std::string& file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("{}:{}:{}: {}", file, e.source().begin.line, e.source().begin.column,
                                 e.description()));
  }
}

// A table's entries in the file's order (toml::table keeps them sorted by key).
std::vector<std::pair<std::string_view, const toml::node*>> in_file_order(const toml::table& t) {
  std::vector<std::pair<std::string_view, const toml::node*>> out;
  for (auto&& [k, v] : t) out.emplace_back(k.str(), &v);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    const toml::source_position &x = a.second->source().begin, &y = b.second->source().begin;
    return x.line != y.line ? x.line < y.line : x.column < y.column;
  });
  return out;
}

std::vector<ConfigSetting> settings_of(const toml::table& t, const std::string& file, const CLI::App& cmd,
                                       const std::vector<std::string>& refused) {
  std::vector<ConfigSetting> out;
  for (auto [k, node] : in_file_order(t)) {
    const toml::node& v = *node;
    if (v.is_table())
      throw UsageError(fmt::format("{}: [{}]: a table where {} options were expected", origin(file, v.source()),
                                   k, cmd.get_name()));
    out.push_back(setting(k, v, cmd, file, refused));
  }
  return out;
}

}  // namespace

std::string read_config_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(fmt::format("cannot read configuration file {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<ConfigSetting> parse_config_settings(std::string_view text, const std::string& file, const CLI::App& cmd,
                                                 const std::vector<std::string>& refused) {
  return settings_of(parse_text(text, file), file, cmd, refused);
}

std::vector<ConfigSection> parse_config_sections(std::string_view text, const std::string& file, const CLI::App& cmd,
                                                 const std::vector<std::string>& refused) {
  toml::table t = parse_text(text, file);
  std::vector<ConfigSection> out;
  for (auto [k, node] : in_file_order(t)) {
    const toml::table* section = node->as_table();
    if (section == nullptr)
      throw UsageError(fmt::format("{}: {}: keys belong in a table: [NAME] first, then its {} options",
                                   origin(file, node->source()), k, cmd.get_name()));
    out.push_back({std::string(k), origin(file, node->source()), settings_of(*section, file, cmd, refused)});
  }
  return out;
}

std::vector<std::string> merge_config_args(const std::vector<ConfigSetting>& settings, const CLI::App& given,
                                           const std::vector<std::string>& command_line) {
  std::vector<std::string> args;
  for (const ConfigSetting& s : settings) {
    const CLI::Option* o = given.get_option_no_throw("--" + s.key);
    if (o != nullptr && o->count() > 0 && !repeatable(*o)) continue;
    args.insert(args.end(), s.args.begin(), s.args.end());
  }
  args.insert(args.end(), command_line.begin(), command_line.end());
  return args;
}

std::string config_origin_prefix(const std::vector<ConfigSetting>& settings, std::string_view message) {
  const ConfigSetting* best = nullptr;
  for (const ConfigSetting& s : settings) {
    std::string name = "--" + s.key;
    for (size_t at = message.find(name); at != std::string_view::npos; at = message.find(name, at + 1)) {
      size_t end = at + name.size();
      bool whole = end == message.size() || !(std::isalnum(static_cast<unsigned char>(message[end])) || message[end] == '-');
      if (whole && (best == nullptr || s.key.size() > best->key.size())) best = &s;
    }
  }
  return best ? best->origin + ": " : "";
}

}  // namespace ublkrdma::cli
