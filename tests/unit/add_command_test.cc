// `add`'s contract: every value is checked before anything touches /dev/ublk-control, and options
// that do not apply to the chosen target are refused, not ignored. The device table goes through
// the same checks, naming the file and line.
#include "cli/add_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "cli/completion.h"
#include "cli/device_table.h"
#include "cli/usage_error.h"

namespace ublkrdma::cli {
namespace {

std::string plan_error(std::vector<std::string> args) {
  CLI::App cmd{"", "add"};
  AddArgs a;
  add_add_options(cmd, a);
  std::reverse(args.begin(), args.end());
  try {
    cmd.parse(args);
    plan_add(cmd, a);
  } catch (const UsageError& e) {
    return e.what();
  } catch (const CLI::ParseError& e) {
    return std::string("parse: ") + e.what();
  }
  return "";
}

TEST(AddCommand, SizesAreNeverRounded) {
  EXPECT_EQ(plan_error({"-t", "null", "--size", "0"}), "--size 0: must be a positive multiple of the 512-byte block size");
  EXPECT_EQ(plan_error({"-t", "null", "--size", "1000"}),
            "--size 1000: must be a positive multiple of the 512-byte block size");
  EXPECT_EQ(plan_error({"-t", "null", "--size", "1M"}), "");
  EXPECT_NE(plan_error({"-t", "null", "--size", "lots"}).find("is not a size"), std::string::npos);
}

TEST(AddCommand, OptionsOfAnotherTargetAreRefused) {
  EXPECT_EQ(plan_error({"-t", "null", "--traddr", "10.0.0.1"}), "--traddr is for -t rdma, not -t null");
  EXPECT_EQ(plan_error({"-t", "null", "--conns-per-queue", "2"}), "--conns-per-queue is for -t rdma, not -t null");
  EXPECT_EQ(plan_error({"-t", "loop", "-f", "/x", "--size", "1G"}), "--size is for -t null, not -t loop");
  EXPECT_EQ(plan_error({"-t", "rdma", "--traddr", "10.0.0.1", "--export", "a", "--buffered"}),
            "--buffered is for -t loop, not -t rdma");
  // Given with its default value, it is still given.
  EXPECT_EQ(plan_error({"-t", "loop", "-f", "/x", "--export", ""}), "--export is for -t rdma, not -t loop");
}

TEST(AddCommand, ExportNamesAreCheckedFirst) {
  EXPECT_EQ(plan_error({"-t", "rdma", "--traddr", "10.0.0.1", "--export", "bad/name"}),
            "--export 'bad/name': an export name is 1..32 of [A-Za-z0-9._-]");
  EXPECT_EQ(plan_error({"-t", "rdma", "--traddr", "10.0.0.1", "--export", "vol0"}), "");
  EXPECT_EQ(plan_error({"-t", "rdma", "--export", "vol0"}), "-t rdma needs the server's address: --traddr ADDR");
}

TEST(AddCommand, DeviceIdsHavePlainBounds) {
  std::string e = plan_error({"-t", "null", "-n", "-1"});
  EXPECT_NE(e.find("not in range 0 to 1048575"), std::string::npos) << e;
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& text) {
    char name[] = "/tmp/ublk-rdma-table-XXXXXX";
    int fd = mkstemp(name);
    ::close(fd);
    path = name;
    std::ofstream(path) << text;
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

std::string table_error(const std::string& text) {
  TempFile f(text);
  try {
    read_device_table(f.path);
  } catch (const UsageError& e) {
    std::string m = e.what();
    return m.replace(0, f.path.size(), "T");
  }
  return "";
}

TEST(DeviceTable, EntriesArePlannedLikeAdd) {
  TempFile f("[vol0]\ntype = \"rdma\"\ntraddr = [\"10.0.0.1\", \"10.0.1.1:4000\"]\nexport = \"vol0\"\nqueues = 2\n\n"
             "[scratch]\ntype = \"null\"\nsize = \"1G\"\nnumber = 7\nrecovery = 0\n");
  auto devices = read_device_table(f.path);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].name, "vol0");
  EXPECT_EQ(devices[0].plan.name, "vol0");
  EXPECT_EQ(devices[0].plan.dev_opts.nr_queues, 2);
  EXPECT_EQ(devices[0].plan.dev_opts.recovery, ublk::RecoveryMode::kReissue);  // -r 1 by default
  EXPECT_EQ(devices[0].plan.target_args["paths"].size(), 2u);
  EXPECT_EQ(devices[1].plan.dev_opts.dev_id, 7);
  EXPECT_EQ(devices[1].plan.dev_opts.recovery, ublk::RecoveryMode::kNone);
}

TEST(DeviceTable, BadEntriesNameTheLine) {
  EXPECT_EQ(table_error("[vol0]\ntype = \"null\"\ntraddr = \"10.0.0.1\"\n"), "T:3: --traddr is for -t rdma, not -t null");
  EXPECT_EQ(table_error("[vol0]\nsize = \"1G\"\n"), "T:1: [vol0]: --type is required");
  EXPECT_EQ(table_error("[vol0]\ntype = \"null\"\nsize = \"1000\"\n"),
            "T:3: --size 1000: must be a positive multiple of the 512-byte block size");
  EXPECT_EQ(table_error("[vol0]\ntype = \"null\"\nforeground = true\n"),
            "T:3: 'foreground' cannot be set in a configuration file");
  EXPECT_EQ(table_error("[a]\ntype = \"null\"\nnumber = 3\n[b]\ntype = \"null\"\nnumber = 3\n"),
            "T:4: [b]: number 3 is taken by another device of the table");
  EXPECT_EQ(table_error("['a b']\ntype = \"null\"\n"), "T:1: [a b]: a device name is 1..32 of [A-Za-z0-9._-]");
  EXPECT_EQ(table_error("[a]\ntype = \"nope\"\n").substr(0, 5), "T:2: ");
}

TEST(Completion, ListsEveryCommandAndOption) {
  CLI::App app{"x", "ublk-rdma"};
  AddArgs a;
  add_add_options(*app.add_subcommand("add", ""), a);
  app.add_subcommand("del", "")->add_flag("-a,--all");
  std::string script = bash_completion(app);
  EXPECT_NE(script.find("complete -F _ublk_rdma ublk-rdma"), std::string::npos);
  EXPECT_NE(script.find("\"add del --log-level"), std::string::npos);
  EXPECT_NE(script.find("-t|--type) COMPREPLY=($(compgen -W \"null loop rdma\""), std::string::npos) << script;
  EXPECT_NE(script.find("--key-file) COMPREPLY=($(compgen -f"), std::string::npos);
  EXPECT_NE(script.find("-a --all"), std::string::npos);
}

}  // namespace
}  // namespace ublkrdma::cli
