// systemd's notify protocol as the units of Type=notify rely on it: one datagram per state to
// $NOTIFY_SOCKET, a path or an abstract name; nothing without the variable.
#include "base/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "base/unique_fd.h"

namespace ublkrdma {
namespace {

// A datagram socket bound to `name` (a path, or "@abstract"), as the service manager has one.
UniqueFd bound_socket(const std::string& name) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), socklen_t(offsetof(sockaddr_un, sun_path) + name.size())) < 0)
    return UniqueFd(-1);
  return fd;
}

std::string receive(const UniqueFd& fd) {
  char buf[256];
  ssize_t n = ::recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
  return n < 0 ? std::string("(nothing)") : std::string(buf, size_t(n));
}

TEST(ServiceNotify, NothingWithoutAServiceManager) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(service_notify("READY=1"));
  service_ready();  // no effect, no error
}

TEST(ServiceNotify, ReadyOnAPathThenTheVariableIsGone) {
  std::string path = "/tmp/ublk-rdma-notify-test." + std::to_string(::getpid());
  ::unlink(path.c_str());
  UniqueFd fd = bound_socket(path);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  EXPECT_TRUE(service_notify("STATUS=starting"));
  EXPECT_EQ(receive(fd), "STATUS=starting");
  service_ready();
  EXPECT_EQ(receive(fd), "READY=1");
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);  // a daemon started later does not inherit it
  EXPECT_FALSE(service_notify("READY=1"));
  ::unlink(path.c_str());
}

TEST(ServiceNotify, AbstractSocket) {
  std::string name = "@ublk-rdma-notify-test." + std::to_string(::getpid());
  UniqueFd fd = bound_socket(name);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
  service_ready();
  EXPECT_EQ(receive(fd), "READY=1");
}

TEST(ServiceNotify, ABadVariableIsRefused) {
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(service_notify("READY=1"));
  ::setenv("NOTIFY_SOCKET", ("/" + std::string(200, 'x')).c_str(), 1);
  EXPECT_FALSE(service_notify("READY=1"));
  ::unsetenv("NOTIFY_SOCKET");
}

}  // namespace
}  // namespace ublkrdma
