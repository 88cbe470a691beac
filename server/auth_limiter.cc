#include "server/auth_limiter.h"

#include <algorithm>

namespace ublkrdma::server {

bool AuthLimiter::Entry::expired(Clock::time_point now, std::chrono::seconds window) const {
  return now >= blocked_until && now - last() >= window;
}

bool AuthLimiter::blocked(const std::string& address, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = entries_.find(address);
  if (it == entries_.end()) return false;
  if (it->second.expired(now, window_)) {
    entries_.erase(it);
    return false;
  }
  return now < it->second.blocked_until;
}

void AuthLimiter::record_failure(const std::string& address, Clock::time_point now) {
  std::lock_guard lk(mu_);
  ++failures_;
  auto it = entries_.find(address);
  if (it != entries_.end() && it->second.expired(now, window_)) {
    entries_.erase(it);
    it = entries_.end();
  }
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxAddresses) {
      std::erase_if(entries_, [&](const auto& e) { return e.second.expired(now, window_); });
      if (entries_.size() >= kMaxAddresses)
        entries_.erase(std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
          return a.second.last() < b.second.last();
        }));
    }
    it = entries_.emplace(address, Entry{}).first;
  }
  Entry& e = it->second;
  e.recent[e.failures++ % kMaxFailures] = now;
  // After the write the slot at failures % kMaxFailures holds the oldest of the last kMaxFailures.
  if (e.failures >= kMaxFailures && now - e.recent[e.failures % kMaxFailures] < window_) e.blocked_until = now + window_;
}

size_t AuthLimiter::tracked() const {
  std::lock_guard lk(mu_);
  return entries_.size();
}

uint64_t AuthLimiter::failures() const {
  std::lock_guard lk(mu_);
  return failures_;
}

}  // namespace ublkrdma::server
