// Addresses as users write them (base/host_port.h): --listen and add --traddr.
#include "base/host_port.h"

#include <gtest/gtest.h>

#include "base/errors.h"

namespace ublkrdma {
namespace {

TEST(HostPort, Forms) {
  auto hp = parse_host_port("192.0.2.1", 18520, "--traddr");
  EXPECT_EQ(hp.host, "192.0.2.1");
  EXPECT_EQ(hp.port, 18520);
  hp = parse_host_port("192.0.2.1:4420", 18520, "--traddr");
  EXPECT_EQ(hp.host, "192.0.2.1");
  EXPECT_EQ(hp.port, 4420);
  hp = parse_host_port("[fd00::1]:7", 18520, "--traddr");
  EXPECT_EQ(hp.host, "fd00::1");
  EXPECT_EQ(hp.port, 7);
  hp = parse_host_port("fd00::1", 18520, "--traddr");  // bare IPv6: no port
  EXPECT_EQ(hp.host, "fd00::1");
  EXPECT_EQ(hp.port, 18520);
  hp = parse_host_port("[fd00::2]", 9, "--traddr");
  EXPECT_EQ(hp.host, "fd00::2");
  EXPECT_EQ(hp.port, 9);
  hp = parse_host_port("server-a", 1, "--traddr");
  EXPECT_EQ(hp.host, "server-a");
}

TEST(HostPort, RefusesWithTheOptionNamed) {
  for (const char* bad : {"", ":18520", "192.0.2.1:", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:12x", "[fd00::1",
                          "[fd00::1]x", "[]:5", "[[fd00::1]:80", "[a]b]:80", "host]:80"}) {
    try {
      parse_host_port(bad, 18520, "--traddr");
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const SetupError& e) {
      EXPECT_NE(std::string(e.what()).find("--traddr"), std::string::npos) << e.what();
    }
  }
}

TEST(HostPort, RefusesANulInTheHost) {
  // The resolver would stop at the NUL and resolve "192.0.2.1".
  EXPECT_THROW(parse_host_port(std::string("192.0.2.1\0x:80", 14), 18520, "--traddr"), SetupError);
}

}  // namespace
}  // namespace ublkrdma
