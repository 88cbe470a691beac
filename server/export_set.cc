#include "server/export_set.h"

#include <pthread.h>

#include "base/errors.h"
#include "base/log.h"

namespace ublkrdma::server {

ExportSet::ExportSet(std::span<const ExportSpec> specs, std::chrono::milliseconds retry, Opener open)
    : specs_(specs.begin(), specs.end()), slots_(specs.size()), retry_(retry), open_(open) {
  bool waiting = false;
  for (size_t i = 0; i < specs_.size(); ++i) {
    if (specs_[i].kind != BackendKind::kRbd) {
      slots_[i].owner = open_(specs_[i], specs_[i].read_only);  // throws: a configuration error
      slots_[i].backend.store(slots_[i].owner.get(), std::memory_order_release);
      continue;
    }
    if (!try_open(i)) waiting = true;
  }
  if (waiting) thread_ = std::thread([this] { retry_loop(); });
}

ExportSet::~ExportSet() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string ExportSet::unavailable_reason(size_t i) const {
  std::lock_guard lk(mu_);
  return slots_[i].reason;
}

bool ExportSet::try_open(size_t i) {
  Slot& s = slots_[i];
  try {
    std::unique_ptr<Backend> b = open_(specs_[i], specs_[i].read_only);
    std::lock_guard lk(mu_);
    bool was_unavailable = !s.reason.empty();
    s.reason.clear();
    s.owner = std::move(b);
    s.backend.store(s.owner.get(), std::memory_order_release);
    if (was_unavailable) log::server()->warn("export '{}' is available again", specs_[i].name);
    return true;
  } catch (const SetupError& e) {
    std::lock_guard lk(mu_);
    // One line per new reason at error; a repeat of the same at debug.
    if (s.reason != e.what()) {
      log::server()->error("export '{}' is unavailable: {} (trying again every {} s; the other exports serve)",
                           specs_[i].name, e.what(), std::chrono::duration<double>(retry_).count());
    } else {
      log::server()->debug("export '{}' still unavailable: {}", specs_[i].name, e.what());
    }
    s.reason = e.what();
    return false;
  }
}

void ExportSet::retry_loop() {
  ::pthread_setname_np(::pthread_self(), "export-retry");
  std::unique_lock lk(mu_);
  for (;;) {
    wake_.wait_for(lk, retry_, [this] { return stop_; });
    if (stop_) return;
    bool waiting = false;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].backend.load(std::memory_order_acquire)) continue;
      lk.unlock();
      bool opened = try_open(i);
      lk.lock();
      if (stop_) return;
      waiting = waiting || !opened;
    }
    if (!waiting) return;
  }
}

void ExportSet::refresh_sizes() const {
  for (size_t i = 0; i < size(); ++i)
    if (const Backend* b = backend(i)) b->refresh_size();
}

}  // namespace ublkrdma::server
