#include "server/poll_group.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include "base/errors.h"
#include "base/log.h"
#include "server/connection.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;

// A sleep is bounded: deadlines (establishing, authenticating, the goodbye while a port is
// down) and the stop flag are looked at at least this often.
constexpr int kSleepMs = 100;

}  // namespace

unsigned default_poll_groups() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return unsigned(std::max(1, CPU_COUNT(&set)));
}

PollGroup::PollGroup(unsigned index, const std::atomic<bool>& stop)
    : index_(index), stop_(stop), wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!wake_) throw_errno(errno, "eventfd for poll group {}", index);
  thread_ = std::thread([this] { run(); });
}

PollGroup::~PollGroup() {
  quit_.store(true, std::memory_order_relaxed);
  wake();
  thread_.join();
}

void PollGroup::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
}

void PollGroup::add(Connection* conn) {
  count_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lk(new_mu_);
    new_.push_back(conn);
  }
  wake();
}

nlohmann::json PollGroup::to_json() const {
  return {{"connections", connections()}, {"passes", passes_.get()}, {"sleeps", sleeps_.get()}};
}

void PollGroup::take_new() {
  std::lock_guard lk(new_mu_);
  conns_.insert(conns_.end(), new_.begin(), new_.end());
  new_.clear();
}

void PollGroup::run() {
  char name[16];
  snprintf(name, sizeof(name), "poll-group-%u", index_);
  pthread_setname_np(pthread_self(), name);
  log::server()->debug("poll group {} started", index_);
  auto last_work = Clock::now();
  // How long to poll after last_work: the longest any connection that had work then asked for.
  // Only those: an idle connection's next event is not near because another one had work.
  std::chrono::microseconds spin{0};
  while (!quit_.load(std::memory_order_relaxed)) {
    take_new();
    bool stopping = stop_.load(std::memory_order_relaxed);
    int work = 0;
    std::chrono::microseconds work_spin{0};
    for (Connection* c : conns_) {
      if (int w = c->step(stopping); w > 0) {
        work += w;
        work_spin = std::max(work_spin, c->spin());
      }
    }
    passes_.add_st();
    if (work > 0) {
      // A connection that is done leaves the group here; the listener destroys it.
      auto gone = std::stable_partition(conns_.begin(), conns_.end(),
                                        [](Connection* c) { return c->phase() != ConnectionPhase::kDone; });
      for (auto it = gone; it != conns_.end(); ++it) {
        count_.fetch_sub(1, std::memory_order_relaxed);
        (*it)->release();
      }
      conns_.erase(gone, conns_.end());
      last_work = Clock::now();
      spin = work_spin;
      continue;
    }
    // Polling catches the next work sooner than a wake-up while it is near (a serial peer's next
    // command is one round trip after our answer); otherwise the CPU is better left to the
    // kernel work that carries the packets.
    if (spin.count() > 0 && Clock::now() - last_work < spin) {
      ::sched_yield();  // let rxe's kernel work (our packets) run on this CPU while we wait
      continue;
    }
    if (sleep()) last_work = Clock::now() - std::chrono::hours(1);  // woken: poll once, then sleep again if idle
  }
  log::server()->debug("poll group {} stopped", index_);
}

// Arms every connection, then sleeps until one of their fds (or the group's eventfd) is ready.
// False when a connection had work after all: nothing was slept.
bool PollGroup::sleep() {
  bool stopping = stop_.load(std::memory_order_relaxed);
  for (Connection* c : conns_)
    if (!c->ready_to_sleep(stopping)) return false;
  fds_.clear();
  fds_.push_back({wake_.get(), POLLIN, 0});
  for (Connection* c : conns_) c->watch(fds_);
  sleeps_.add_st();
  int rc = ::poll(fds_.data(), fds_.size(), kSleepMs);
  if (rc < 0 && errno != EINTR) log::server()->warn("poll group {}: poll: {}", index_, errno_text(errno));
  if (rc <= 0) return true;
  if (fds_[0].revents) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(wake_.get(), &v, sizeof(v));
  }
  const pollfd* p = fds_.data() + 1;
  for (Connection* c : conns_) {
    c->woken(p);
    p += Connection::kWatchFds;
  }
  return true;
}

}  // namespace ublkrdma::server
