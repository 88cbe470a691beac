#pragma once
// What happens to one connection of an rdma queue after it is lost: when to try again, when to
// fail the requests it held, and when to give up for good (nvme-cli's reconnect_delay,
// fast_io_fail_tmo and ctrl_loss_tmo). Pure logic over a clock the caller passes in; the queue
// (rdma_queue.cc) acts on it. Its state and counters are read by the stats thread.
#include <atomic>
#include <chrono>
#include <cstdint>

#include "base/counter.h"

namespace ublkrdma::targets {

using RecoveryClock = std::chrono::steady_clock;

struct RecoveryPolicy {
  std::chrono::milliseconds reconnect_delay{2000};  // between attempts
  // Since the loss: give up and fail held and new requests with EIO (negative: never).
  std::chrono::milliseconds ctrl_loss_tmo{600000};
  // Since the loss: fail held and new requests with EIO while attempts go on (negative: off).
  std::chrono::milliseconds fast_io_fail_tmo{-1};
};

enum class ConnectionState : uint8_t {
  kLive,          // carries requests
  kReconnecting,  // lost; the next attempt is due at next_attempt()
  kConnecting,    // an attempt is under way
  kFailed,        // given up (ctrl_loss_tmo passed, or it cannot be rebuilt): no more attempts
};
const char* connection_state_name(ConnectionState s);

class ConnectionRecovery {
 public:
  using TimePoint = RecoveryClock::time_point;

  ConnectionRecovery() = default;
  explicit ConnectionRecovery(const RecoveryPolicy& p) : policy_(p) {}
  void set_policy(const RecoveryPolicy& p) { policy_ = p; }

  ConnectionState state() const { return state_.load(std::memory_order_relaxed); }
  bool live() const { return state() == ConnectionState::kLive; }

  // The connection was lost at `now`: attempts start after reconnect_delay, unless
  // ctrl_loss_tmo is 0 (no reconnecting at all). A connection lost again before its recovery
  // is over keeps the first loss time.
  void lost(TimePoint now, const char* why);
  // Whether an attempt should start now.
  bool attempt_due(TimePoint now) const { return state() == ConnectionState::kReconnecting && now >= next_attempt_; }
  void attempt_started();
  // The attempt failed: the next one after reconnect_delay, or none if ctrl_loss_tmo passed.
  void attempt_failed(TimePoint now, const char* why);
  // The attempt succeeded: live again.
  void connected();
  // It can never be rebuilt (its QP could not be quiesced, the export changed).
  void give_up(const char* why);
  // Gives up if ctrl_loss_tmo passed while not connecting; true when it is failed.
  bool expire(TimePoint now);
  // Whether requests it would carry fail now rather than wait for it: given up, or
  // fast_io_fail_tmo passed since the loss.
  bool fails_io(TimePoint now) const;

  TimePoint next_attempt() const { return next_attempt_; }
  uint64_t attempts() const { return attempts_.get(); }
  uint64_t successes() const { return successes_.get(); }
  uint64_t losses() const { return losses_.get(); }
  // Attempts that failed since the connection was last live (queue thread only).
  uint32_t failed_attempts() const { return failed_attempts_; }
  // The last error (a static string) and when, in ms since the epoch (0: none yet).
  const char* last_error() const { return last_error_.load(std::memory_order_relaxed); }
  int64_t last_error_unix_ms() const { return last_error_ms_.load(std::memory_order_relaxed); }

 private:
  void set_state(ConnectionState s) { state_.store(s, std::memory_order_relaxed); }
  void note_error(const char* why);
  bool past(TimePoint now, std::chrono::milliseconds tmo) const { return tmo.count() >= 0 && now - lost_at_ >= tmo; }

  RecoveryPolicy policy_;
  std::atomic<ConnectionState> state_{ConnectionState::kLive};
  TimePoint lost_at_{};
  TimePoint next_attempt_{};
  uint32_t failed_attempts_ = 0;
  RelaxedCounter attempts_, successes_, losses_;
  std::atomic<const char*> last_error_{nullptr};
  std::atomic<int64_t> last_error_ms_{0};
};

}  // namespace ublkrdma::targets
