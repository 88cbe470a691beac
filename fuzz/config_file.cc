// Configuration files (serve --config, the device table) into command-line arguments. Properties:
//  - any text is either refused with a UsageError that names the file and a line of it, or turned
//    into settings that name options the command has, each "--KEY" followed by values;
//  - a flag's setting has no value; a single-value option's exactly one;
//  - the settings' lines are lines of the text.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <string>

#include "cli/config_file.h"
#include "cli/usage_error.h"
#include "fuzz/fuzz_check.h"

namespace {

struct Command {
  CLI::App app{"", "serve"};
  std::string text;
  int number = 0;
  std::vector<std::string> list;
  bool flag = false;
  Command() {
    app.add_option("--listen", text);
    app.add_option("--threads", number);
    app.add_option("--export", list);
    app.add_flag("--no-push-writes", flag);
    app.add_option("--config", text);
  }
};

size_t line_of(const std::string& origin) { return std::stoul(origin.substr(origin.rfind(':') + 1)); }

void check(const std::vector<ublkrdma::cli::ConfigSetting>& settings, const CLI::App& app, size_t lines) {
  for (const auto& s : settings) {
    FUZZ_CHECK(s.origin.rfind("f.conf:", 0) == 0);
    size_t line = line_of(s.origin);
    FUZZ_CHECK(line >= 1 && line <= lines);
    const CLI::Option* o = app.get_option_no_throw("--" + s.key);
    FUZZ_CHECK(o != nullptr && s.key != "config");
    if (o->get_expected_max() == 0) {
      FUZZ_CHECK(s.args.empty() || (s.args.size() == 1 && s.args[0] == "--" + s.key));
    } else if (o->get_expected_max() == 1) {
      FUZZ_CHECK(s.args.size() == 2 && s.args[0] == "--" + s.key);
    } else {
      FUZZ_CHECK(s.args.size() % 2 == 0);
      for (size_t i = 0; i < s.args.size(); i += 2) FUZZ_CHECK(s.args[i] == "--" + s.key);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ublkrdma::cli;
  std::string text(reinterpret_cast<const char*>(data), size);
  size_t lines = std::count(text.begin(), text.end(), '\n') + 1;
  Command cmd;
  try {
    check(parse_config_settings(text, "f.conf", cmd.app, {"config"}), cmd.app, lines);
  } catch (const UsageError& e) {
    FUZZ_CHECK(std::string(e.what()).rfind("f.conf:", 0) == 0);
  }
  try {
    for (const ConfigSection& s : parse_config_sections(text, "f.conf", cmd.app, {"config"})) {
      FUZZ_CHECK(line_of(s.origin) >= 1 && line_of(s.origin) <= lines);
      check(s.settings, cmd.app, lines);
    }
  } catch (const UsageError& e) {
    FUZZ_CHECK(std::string(e.what()).rfind("f.conf:", 0) == 0);
  }
  return 0;
}
