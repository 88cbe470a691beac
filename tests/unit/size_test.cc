#include "base/size.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace ublkrdma {
namespace {

uint64_t ok(std::string_view s) {
  Result<uint64_t> r = parse_size(s);
  EXPECT_TRUE(r.ok()) << s;
  return r.ok() ? r.value() : ~0ull;
}

int err(std::string_view s) {
  Result<uint64_t> r = parse_size(s);
  EXPECT_FALSE(r.ok()) << s << " parsed as " << (r.ok() ? r.value() : 0);
  return r.error();
}

TEST(ParseSize, PlainBytes) {
  EXPECT_EQ(ok("0"), 0u);
  EXPECT_EQ(ok("1"), 1u);
  EXPECT_EQ(ok("1048576"), 1048576u);
  EXPECT_EQ(ok("512B"), 512u);
  EXPECT_EQ(ok("512b"), 512u);
  EXPECT_EQ(ok("007"), 7u);
  EXPECT_EQ(ok("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, BinaryUnits) {
  EXPECT_EQ(ok("64k"), 64u << 10);
  EXPECT_EQ(ok("64K"), 64u << 10);
  EXPECT_EQ(ok("512M"), 512ull << 20);
  EXPECT_EQ(ok("4G"), 4ull << 30);
  EXPECT_EQ(ok("1T"), 1ull << 40);
  EXPECT_EQ(ok("2P"), 2ull << 50);
  EXPECT_EQ(ok("15E"), 15ull << 60);
  EXPECT_EQ(ok("4GiB"), 4ull << 30);
  EXPECT_EQ(ok("4GB"), 4ull << 30);
  EXPECT_EQ(ok("4gib"), 4ull << 30);
  EXPECT_EQ(ok("4Gb"), 4ull << 30);
  EXPECT_EQ(ok("0G"), 0u);
}

TEST(ParseSize, RejectsGarbage) {
  for (const char* s : {"", " ", "G", "GiB", "-1", "+1", "-4G", "1.5G", "4 G", " 4G", "4G ", "4X", "4GiBB", "4Gi",
                        "4iB", "0x10", "4G4", "4KM", "1e9", "four", "4\n", "4,096", "B"}) {
    EXPECT_EQ(err(s), -EINVAL) << "'" << s << "'";
  }
}

TEST(ParseSize, RejectsOverflow) {
  EXPECT_EQ(err("18446744073709551616"), -ERANGE);
  EXPECT_EQ(err("99999999999999999999999"), -ERANGE);
  EXPECT_EQ(err("16E"), -ERANGE);
  EXPECT_EQ(err("16777216T"), -ERANGE);
  EXPECT_EQ(ok("16777215T"), 16777215ull << 40);
  EXPECT_EQ(err("18014398509481984K"), -ERANGE);  // 2^54 K = 2^64
  EXPECT_EQ(ok("18014398509481983K"), 18014398509481983ull << 10);
}

TEST(ParseSize, ThrowingFormNamesTheOption) {
  try {
    parse_size_or_throw("4Q", "--size");
    FAIL() << "no throw";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("--size"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'4Q'"), std::string::npos) << e.what();
    EXPECT_EQ(e.errno_value(), EINVAL);
  }
  try {
    parse_size_or_throw("32E", "--size");
    FAIL() << "no throw";
  } catch (const SetupError& e) {
    EXPECT_NE(std::string(e.what()).find("too large"), std::string::npos) << e.what();
    EXPECT_EQ(e.errno_value(), ERANGE);
  }
  EXPECT_EQ(parse_size_or_throw("1M", "--size"), 1u << 20);
}

TEST(FormatSize, LargestExactUnit) {
  EXPECT_EQ(format_size(0), "0");
  EXPECT_EQ(format_size(1), "1");
  EXPECT_EQ(format_size(512), "512");
  EXPECT_EQ(format_size(1024), "1K");
  EXPECT_EQ(format_size(1536), "1536");
  EXPECT_EQ(format_size(3072), "3K");
  EXPECT_EQ(format_size(4ull << 30), "4G");
  EXPECT_EQ(format_size((4ull << 30) + 4096), "4194308K");
  EXPECT_EQ(format_size(1ull << 40), "1T");
  EXPECT_EQ(format_size(1ull << 63), "8E");
  EXPECT_EQ(format_size(UINT64_MAX), "18446744073709551615");
}

TEST(FormatSize, RoundTrips) {
  for (uint64_t v : std::initializer_list<uint64_t>{0ull, 1ull, 511ull, 4096ull, 1ull << 20, (1ull << 30) * 3, 123456789ull << 10, UINT64_MAX,
                     1ull << 63, (1ull << 40) + 1}) {
    Result<uint64_t> r = parse_size(format_size(v));
    ASSERT_TRUE(r.ok()) << format_size(v);
    EXPECT_EQ(r.value(), v);
  }
}

}  // namespace
}  // namespace ublkrdma
