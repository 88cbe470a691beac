#include "server/auth_limiter.h"

#include <algorithm>

namespace ublkrdma::server {

bool AuthLimiter::blocked(const std::string& address, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = entries_.find(address);
  if (it == entries_.end()) return false;
  if (now - it->second.first >= kWindow) {
    entries_.erase(it);
    return false;
  }
  return it->second.failures >= kMaxFailures;
}

void AuthLimiter::record_failure(const std::string& address, Clock::time_point now) {
  std::lock_guard lk(mu_);
  auto it = entries_.find(address);
  if (it != entries_.end() && now - it->second.first >= kWindow) {
    entries_.erase(it);
    it = entries_.end();
  }
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxAddresses) {
      std::erase_if(entries_, [&](const auto& e) { return now - e.second.first >= kWindow; });
      if (entries_.size() >= kMaxAddresses)
        entries_.erase(std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
          return a.second.first < b.second.first;
        }));
    }
    it = entries_.emplace(address, Entry{now, 0}).first;
  }
  ++it->second.failures;
  ++failures_;
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
