// Configuration files as command-line arguments: what each TOML value becomes, what is refused
// (with the file and line), and how a file and the command line combine.
#include "cli/config_file.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "cli/usage_error.h"

namespace ublkrdma::cli {
namespace {

struct Cmd {
  CLI::App app{"", "serve"};
  std::string listen;
  int threads = 0;
  std::vector<std::string> exports;
  bool no_push = false;
  std::string config;
  Cmd() {
    app.add_option("--listen", listen);
    app.add_option("--threads", threads)->check(CLI::Range(0, 1024));
    app.add_option("--export", exports);
    app.add_flag("--no-push-writes", no_push);
    app.add_option("--config", config);
  }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());
    app.parse(args);
  }
};

std::string error_of(std::string_view text, bool sections = false) {
  Cmd c;
  try {
    if (sections)
      parse_config_sections(text, "f.conf", c.app, {"config"});
    else
      parse_config_settings(text, "f.conf", c.app, {"config"});
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigFile, ValuesBecomeArguments) {
  Cmd c;
  auto s = parse_config_settings("listen = \"10.0.0.1:4791\"\nthreads = 2\nexport = [\"a=ram:1G\", \"b=null:1G\"]\n"
                                 "no-push-writes = true\n",
                                 "f.conf", c.app, {"config"});
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].args, (std::vector<std::string>{"--listen", "10.0.0.1:4791"}));
  EXPECT_EQ(s[0].origin, "f.conf:1");
  EXPECT_EQ(s[1].args, (std::vector<std::string>{"--threads", "2"}));
  EXPECT_EQ(s[2].args, (std::vector<std::string>{"--export", "a=ram:1G", "--export", "b=null:1G"}));
  EXPECT_EQ(s[3].args, (std::vector<std::string>{"--no-push-writes"}));
  EXPECT_EQ(s[3].origin, "f.conf:4");
}

TEST(ConfigFile, FalseFlagIsLeftOut) {
  Cmd c;
  auto s = parse_config_settings("no-push-writes = false\n", "f.conf", c.app, {});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s[0].args.empty());
}

TEST(ConfigFile, KeepsTheFileOrder) {
  Cmd c;
  auto s = parse_config_settings("threads = 1\nexport = \"z=ram:1G\"\nlisten = \"x\"\n", "f.conf", c.app, {});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].key, "threads");
  EXPECT_EQ(s[1].key, "export");
  EXPECT_EQ(s[2].key, "listen");
}

TEST(ConfigFile, BadLinesNameFileAndLine) {
  EXPECT_EQ(error_of("listen = \"x\"\nthread = 2\n"), "f.conf:2: unknown key 'thread' (serve has no option --thread)");
  EXPECT_EQ(error_of("config = \"other\"\n"), "f.conf:1: 'config' cannot be set in a configuration file");
  EXPECT_NE(error_of("\n\nthreads = 1.5\n").find("f.conf:3: threads: a value must be a string or an integer"),
            std::string::npos);
  EXPECT_NE(error_of("listen = true\n").find("f.conf:1: listen:"), std::string::npos);
  EXPECT_EQ(error_of("no-push-writes = \"yes\"\n"), "f.conf:1: no-push-writes: --no-push-writes is a flag: use true or false");
  EXPECT_EQ(error_of("listen = [\"a\", \"b\"]\n"), "f.conf:1: listen: --listen takes one value, not a list");
  EXPECT_EQ(error_of("[x]\nlisten = \"a\"\n"), "f.conf:1: [x]: a table where serve options were expected");
  EXPECT_EQ(error_of("h = 1\n").substr(0, 22), "f.conf:1: unknown key ");
  EXPECT_EQ(error_of("HELP = 1\n").substr(0, 22), "f.conf:1: unknown key ");
  std::string syntax = error_of("listen = \"x\"\nexport = [\"a\",\n");
  EXPECT_EQ(syntax.rfind("f.conf:2:", 0), 0u) << syntax;
}

TEST(ConfigFile, Sections) {
  Cmd c;
  auto s = parse_config_sections("# devices\n[vol1]\nlisten = \"a\"\n\n[vol0]\nthreads = 3\n", "t.conf", c.app, {});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "vol1");  // file order, not sorted
  EXPECT_EQ(s[0].origin, "t.conf:2");
  EXPECT_EQ(s[1].name, "vol0");
  EXPECT_EQ(s[1].settings.at(0).origin, "t.conf:6");
  EXPECT_EQ(error_of("listen = \"a\"\n", true), "f.conf:1: listen: keys belong in a table: [NAME] first, then its serve options");
  EXPECT_EQ(error_of("[a]\nthread = 1\n", true), "f.conf:2: unknown key 'thread' (serve has no option --thread)");
}

TEST(ConfigFile, CommandLineWinsExceptForRepeatableOptions) {
  Cmd file;
  auto settings = parse_config_settings("listen = \"file:1\"\nthreads = 2\nexport = [\"a=ram:1G\"]\n", "f.conf", file.app, {});
  Cmd given;
  std::vector<std::string> command_line = {"--threads", "7", "--export", "b=ram:1G", "--config", "f.conf"};
  given.parse(command_line);
  Cmd merged;
  merged.parse(merge_config_args(settings, given.app, command_line));
  EXPECT_EQ(merged.listen, "file:1");
  EXPECT_EQ(merged.threads, 7);
  EXPECT_EQ(merged.exports, (std::vector<std::string>{"a=ram:1G", "b=ram:1G"}));
}

TEST(ConfigFile, ErrorsOfTheParserPointAtTheLine) {
  Cmd c;
  auto settings = parse_config_settings("listen = \"x\"\nthreads = 5000\n", "f.conf", c.app, {});
  EXPECT_EQ(config_origin_prefix(settings, "--threads: Value 5000 not in range 0 to 1024"), "f.conf:2: ");
  EXPECT_EQ(config_origin_prefix(settings, "--listen-address is wrong"), "");  // a whole option name only
  EXPECT_EQ(config_origin_prefix(settings, "nothing named"), "");
}

}  // namespace
}  // namespace ublkrdma::cli
