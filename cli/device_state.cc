#include "cli/device_state.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/errors.h"
#include "base/unique_fd.h"

namespace ublkrdma::cli {

std::string run_dir() {
  const char* d = std::getenv("UBLK_RDMA_RUN_DIR");
  return d && *d ? d : "/run/ublk-rdma";
}

std::string state_path(uint32_t dev_id) { return fmt::format("{}/ublk{}.json", run_dir(), dev_id); }
std::string socket_path(uint32_t dev_id) { return fmt::format("{}/ublk{}.sock", run_dir(), dev_id); }

void write_state(uint32_t dev_id, const nlohmann::json& state) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir(), ec);
  if (ec) throw SetupError(fmt::format("cannot create {}: {}", run_dir(), ec.message()), ec.value());
  std::string path = state_path(dev_id), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << state.dump(2) << "\n";
    if (!out) throw_errno(errno, "cannot write {}", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) throw_errno(errno, "cannot rename {} to {}", tmp, path);
}

std::optional<nlohmann::json> read_state(uint32_t dev_id) {
  std::ifstream in(state_path(dev_id));
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

void remove_state(uint32_t dev_id) {
  ::unlink(state_path(dev_id).c_str());
  ::unlink(socket_path(dev_id).c_str());
}

std::optional<nlohmann::json> query_daemon_stats(uint32_t dev_id) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::nullopt;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = socket_path(dev_id);
  if (path.size() >= sizeof(addr.sun_path)) return std::nullopt;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) return std::nullopt;
  std::string data;
  char buf[4096];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) return std::nullopt;
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, size_t(n));
  }
  auto j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

bool process_alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

}  // namespace ublkrdma::cli
