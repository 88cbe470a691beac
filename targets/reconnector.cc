#include "targets/reconnector.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

#include "base/errors.h"
#include "base/log.h"

namespace ublkrdma::targets {

Reconnector::Reconnector(Connect connect, std::string thread_name)
    : connect_(std::move(connect)), thread_name_(std::move(thread_name)),
      event_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!event_) throw_errno(errno, "eventfd for {}", thread_name_);
}

Reconnector::~Reconnector() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reconnector::request_st(size_t index) {
  {
    std::lock_guard lock(mu_);
    requests_.push_back(index);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  wake_.notify_one();
}

std::vector<Reconnector::Result> Reconnector::take_results_st() {
  std::lock_guard lock(mu_);
  // Under the lock, as the thread posts a result and signals it: the signal cleared is exactly
  // the results taken.
  uint64_t n;
  [[maybe_unused]] ssize_t r = ::read(event_.get(), &n, sizeof(n));  // EAGAIN when none: fine
  return std::exchange(results_, {});
}

void Reconnector::run() {
  ::pthread_setname_np(::pthread_self(), thread_name_.substr(0, 15).c_str());
  // It does IO on behalf of the device (it connects the paths its writeback needs).
  ::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stop_ || !requests_.empty(); });
    if (stop_) return;
    size_t index = requests_.front();
    requests_.pop_front();
    lock.unlock();
    Result r;
    r.index = index;
    try {
      r.connection = std::make_unique<RdmaConnection>(connect_(index));
    } catch (const SetupError& e) {
      r.error = e.what();
      r.errno_value = e.errno_value();
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    lock.lock();
    if (stop_) return;  // the connection, if any, closes with r
    results_.push_back(std::move(r));
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(event_.get(), &one, sizeof(one));
  }
}

}  // namespace ublkrdma::targets
