#include "cli/daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "base/errors.h"
#include "base/log.h"
#include "base/service_notify.h"
#include "base/unique_fd.h"
#include "cli/device_listing.h"
#include "cli/device_state.h"
#include "cli/target_args.h"
#include "ublk/control_device.h"
#include "ublk/served_device.h"

namespace ublkrdma::cli {
namespace {

// The setup result travels from the (detached) daemon to the waiting `add` over a pipe.
void report(int fd, const nlohmann::json& j) {
  if (fd < 0) return;
  std::string s = j.dump() + "\n";
  (void)!::write(fd, s.data(), s.size());
}

UniqueFd listen_stats_socket(uint32_t dev_id) {
  std::string path = socket_path(dev_id);
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) throw_errno(errno, "stats socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw_setup("stats socket path too long: {}", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) throw_errno(errno, "bind {}", path);
  if (::listen(fd.get(), 8) < 0) throw_errno(errno, "listen {}", path);
  return fd;
}

void answer_stats(int listen_fd, const ublk::ServedDevice& dev) {
  for (;;) {
    UniqueFd c(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) return;
    std::string s = dev.stats_json();
    const char* p = s.data();
    size_t left = s.size();
    while (left) {
      ssize_t n = ::write(c.get(), p, left);
      if (n <= 0) break;
      p += n;
      left -= size_t(n);
    }
  }
}

// Serves the device until it is stopped: by a signal (we stop and delete it) or by someone
// else's `del` (we release /dev/ublkcN so their DEL_DEV can finish).
int serve_until_stopped(ublk::ControlDevice& ctrl, std::unique_ptr<ublk::ServedDevice> dev, int signal_fd,
                        int report_fd) {
  uint32_t id = dev->dev_id();
  UniqueFd stats;
  try {
    stats = listen_stats_socket(id);
  } catch (const SetupError& e) {
    log::cli()->warn("device {}: no stats socket: {}", id, e.what());
  }
  report(report_fd, {{"ok", true}, {"dev_id", id}});
  log::cli()->info("device {} live: /dev/ublkb{} (daemon pid {})", id, id, ::getpid());

  bool signalled = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  for (;;) {
    pollfd fds[4] = {{signal_fd, POLLIN, 0},
                     {dev->done_fd(), POLLIN, 0},
                     {stats ? stats.get() : -1, POLLIN, 0},
                     {dev->capacity_fd(), POLLIN, 0}};
    int rc = ::poll(fds, 4, signalled ? 200 : -1);
    if (rc < 0 && errno != EINTR) {
      log::cli()->error("device {}: poll: {}", id, errno_text(errno));
      break;
    }
    if (fds[1].revents) break;
    if (fds[2].revents) answer_stats(stats.get(), *dev);
    if (fds[3].revents && !signalled) dev->apply_capacity(ctrl);
    if (fds[0].revents) {
      signalfd_siginfo si;
      if (::read(signal_fd, &si, sizeof(si)) == sizeof(si) && !signalled) {
        log::cli()->info("device {}: signal {} received, stopping", id, si.ssi_signo);
        signalled = true;
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        rc = dev->stop(ctrl);
        if (rc < 0) {
          log::cli()->error("device {}: STOP_DEV failed: {}; forcing the queues down", id, errno_text(rc));
          dev->force_exit();
        }
      }
    }
    if (signalled && std::chrono::steady_clock::now() > stop_deadline) {
      log::cli()->error("device {}: queues did not drain within 30 s of STOP_DEV; forcing them down", id);
      dev->force_exit();
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
  }
  // The queues are gone: the application's pages need not stay pinned for the device any longer.
  if (size_t n = dev->shared_buffer_count(); n && dev->done()) {
    size_t released = dev->unregister_shared_buffers(ctrl);
    log::cli()->log(released == n || !signalled ? spdlog::level::info : spdlog::level::warn,
                    "device {}: {} of {} shared buffers unregistered{}", id, released, n,
                    released == n ? "" : " (the device's deletion releases the rest)");
  }
  dev.reset();  // joins queue threads, closes /dev/ublkcN
  stats.reset();
  if (signalled) {
    int rc = ctrl.del_dev(id);
    if (rc < 0 && rc != -ENOENT && rc != -ENODEV) log::cli()->warn("device {}: DEL_DEV: {}", id, errno_text(rc));
  }
  remove_state(id);
  log::cli()->info("device {} removed; daemon exiting", id);
  return 0;
}

// The stop signals, blocked before any thread exists so that every thread inherits the mask
// and only the signalfd sees them.
sigset_t block_stop_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  return mask;
}

// Runs in the process that will serve the device. Returns its exit code.
int daemon_main(const DaemonPlan& plan, int report_fd, const std::string& log_path) {
  sigset_t mask = block_stop_signals();
  UniqueFd sfd(::signalfd(-1, &mask, SFD_CLOEXEC));
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (!sfd) throw_errno(errno, "signalfd");
    auto factory = make_target_factory(plan.target_args, plan.dev_opts);
    ublk::ControlDevice ctrl;
    std::unique_ptr<ublk::ServedDevice> dev =
        plan.recover_id ? ublk::ServedDevice::recover(ctrl, *plan.recover_id, plan.dev_opts, *factory)
                        : ublk::ServedDevice::create(ctrl, plan.dev_opts, *factory);
    nlohmann::json state = {{"dev_id", dev->dev_id()},
                            {"daemon_pid", ::getpid()},
                            {"target_args", plan.target_args},
                            {"target", nlohmann::json::parse(factory->describe_json())},
                            {"poll_mode", ublk::poll_mode_name(plan.dev_opts.poll.mode)},
                            {"hybrid_spin_us", plan.dev_opts.poll.hybrid_spin.count()},
                            {"inflight_spin_us", plan.dev_opts.poll.inflight_spin.count()},
                            {"nr_hw_queues", dev->info().nr_hw_queues},
                            {"queue_depth", dev->info().queue_depth},
                            {"max_io_buf_bytes", dev->info().max_io_buf_bytes},
                            {"shmem_bufs", dev->shared_buffers_json()}};
    if (!log_path.empty()) state["log"] = log_path;
    if (!plan.name.empty()) state["name"] = plan.name;
    write_state(dev->dev_id(), state);
    return serve_until_stopped(ctrl, std::move(dev), sfd.get(), report_fd);
  } catch (const SetupError& e) {
    log::cli()->error("{}", e.what());
    report(report_fd, {{"ok", false}, {"error", e.what()}});
    return 1;
  } catch (const std::exception& e) {
    log::cli()->error("unexpected error: {}", e.what());
    report(report_fd, {{"ok", false}, {"error", e.what()}});
    return 1;
  }
}

int print_device(uint32_t dev_id) {
  try {
    ublk::ControlDevice ctrl;
    if (auto d = describe_device(ctrl, dev_id)) {
      std::cout << format_device_text(*d) << std::flush;
      return 0;
    }
  } catch (const SetupError& e) {
    std::cerr << "ublk-rdma: " << e.what() << "\n";
  }
  std::cerr << "ublk-rdma: device " << dev_id << " vanished right after it started\n";
  return 1;
}

}  // namespace

int run_device_daemon(const DaemonPlan& plan) {
  if (plan.foreground) {
    // Foreground: a helper thread prints the device once setup reports it live, while this
    // thread goes on serving it.
    block_stop_signals();
    int pfd[2];
    if (::pipe2(pfd, O_CLOEXEC) < 0) throw_errno(errno, "pipe");
    UniqueFd rd(pfd[0]);
    std::thread printer([fd = pfd[0]] {
      FILE* f = ::fdopen(::dup(fd), "r");
      if (!f) return;
      char line[4096];
      if (std::fgets(line, sizeof(line), f)) {
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.value("ok", false) && print_device(j.value("dev_id", 0u)) == 0)
          service_ready();  // the device is live: a Type=notify unit (ublk-rdma@NAME) is up
      }
      std::fclose(f);
    });
    int rc = daemon_main(plan, pfd[1], "");
    ::close(pfd[1]);  // also wakes the printer if setup failed before reporting
    printer.join();
    return rc;
  }

  std::filesystem::create_directories(run_dir());
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) < 0) throw_errno(errno, "pipe");
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) throw_errno(errno, "fork");
  if (child == 0) {
    // Detach: new session, then a grandchild that is not a session leader serves the device.
    ::close(pfd[0]);
    ::setsid();
    pid_t gc = ::fork();
    if (gc != 0) ::_exit(gc < 0 ? 1 : 0);
    std::string log_path = fmt::format("{}/daemon-{}.log", run_dir(), ::getpid());
    int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (null_fd >= 0) {
      ::dup2(null_fd, STDIN_FILENO);
      ::dup2(null_fd, STDOUT_FILENO);
    }
    if (log_fd >= 0) ::dup2(log_fd, STDERR_FILENO);
    ::umask(022);
    if (::chdir("/") < 0) {
    }
    ::_exit(daemon_main(plan, pfd[1], log_path));
  }
  ::close(pfd[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(pfd[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, size_t(n));
    if (data.find('\n') != std::string::npos) break;
  }
  ::close(pfd[0]);
  auto j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    std::cerr << "ublk-rdma: the daemon exited during setup without a report; see the logs in " << run_dir() << "\n";
    return 1;
  }
  if (!j.value("ok", false)) {
    std::cerr << "ublk-rdma: " << j.value("error", std::string("setup failed")) << "\n";
    return 1;
  }
  return print_device(j.value("dev_id", 0u));
}

}  // namespace ublkrdma::cli
