#include "base/service_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "base/log.h"
#include "base/unique_fd.h"

namespace ublkrdma {
namespace {
std::mutex g_mu;  // getenv/unsetenv of NOTIFY_SOCKET
}

bool service_notify(std::string_view state) {
  std::lock_guard lk(g_mu);
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t len = std::strlen(path);
  // "@name" is an abstract socket: a leading NUL instead of the '@'.
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
    log::get("service")->warn("NOTIFY_SOCKET '{}' is not a socket path: the service manager is not told", log::escaped(path));
    return false;
  }
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  auto alen = socklen_t(offsetof(sockaddr_un, sun_path) + len);
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), alen) < 0) {
    log::get("service")->warn("telling the service manager '{}' failed: {}", state, std::strerror(errno));
    return false;
  }
  return true;
}

void service_ready() {
  service_notify("READY=1");
  std::lock_guard lk(g_mu);
  ::unsetenv("NOTIFY_SOCKET");
}

}  // namespace ublkrdma
