#pragma once
// Rate limit on failed authentications, per peer address: kMaxFailures within the window
// (serve --auth-backoff, default 30 s) of the first and the address is refused at CONNECT
// (kAuthBackoff) for the window after the last of them. The table is bounded, so a flood from many addresses cannot grow memory: when
// it is full the oldest entry goes. Called from the listener and the poll group threads (setup
// path only), hence the mutex.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace ublkrdma::server {

class AuthLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr uint32_t kMaxFailures = 5;
  static constexpr std::chrono::seconds kDefaultWindow{30};
  static constexpr size_t kMaxAddresses = 4096;

  explicit AuthLimiter(std::chrono::seconds window = kDefaultWindow) : window_(window) {}

  // Whether `address` (the peer's IP, without port) is refused now.
  bool blocked(const std::string& address, Clock::time_point now);
  void record_failure(const std::string& address, Clock::time_point now);
  size_t tracked() const;
  uint64_t failures() const;  // ever recorded

 private:
  struct Entry {
    Clock::time_point first;  // of the failures counted
    uint32_t failures = 0;
    Clock::time_point blocked_until{};
    bool expired(Clock::time_point now, std::chrono::seconds window) const;
  };
  const std::chrono::seconds window_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  uint64_t failures_ = 0;
};

}  // namespace ublkrdma::server
