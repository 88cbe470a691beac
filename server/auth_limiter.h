#pragma once
// Rate limit on failed authentications, per peer address: when the last kMaxFailures failures
// fall within one window (serve --auth-backoff, default 30 s), the address is refused at CONNECT
// (kAuthBackoff) for the window after the last of them. The window slides: a fixed one, counted
// from a first failure, let a peer spread 2 * kMaxFailures - 1 attempts across its end unblocked.
// The table is bounded, so a flood from many addresses cannot grow memory: when it is full the
// entry whose last failure is oldest goes. Called from the listener and the poll group threads
// (setup path only), hence the mutex.
#include <array>
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
    std::array<Clock::time_point, kMaxFailures> recent{};  // a ring of the last failures' times
    uint32_t failures = 0;                                   // recorded, the ring's next slot mod kMaxFailures
    Clock::time_point blocked_until{};
    Clock::time_point last() const { return recent[(failures + kMaxFailures - 1) % kMaxFailures]; }
    bool expired(Clock::time_point now, std::chrono::seconds window) const;
  };
  const std::chrono::seconds window_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  uint64_t failures_ = 0;
};

}  // namespace ublkrdma::server
