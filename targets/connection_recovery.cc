#include "targets/connection_recovery.h"

namespace ublkrdma::targets {

const char* connection_state_name(ConnectionState s) {
  switch (s) {
    case ConnectionState::kLive: return "live";
    case ConnectionState::kReconnecting: return "reconnecting";
    case ConnectionState::kConnecting: return "connecting";
    case ConnectionState::kFailed: return "failed";
  }
  return "?";
}

void ConnectionRecovery::note_error(const char* why) {
  last_error_.store(why, std::memory_order_relaxed);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  last_error_ms_.store(ms.count(), std::memory_order_relaxed);
}

void ConnectionRecovery::lost(TimePoint now, const char* why) {
  note_error(why);
  if (state() == ConnectionState::kFailed) return;
  losses_.add_st();
  if (state() == ConnectionState::kLive) {
    lost_at_ = now;
    failed_attempts_ = 0;
  }
  if (policy_.ctrl_loss_tmo.count() == 0) return set_state(ConnectionState::kFailed);
  next_attempt_ = now + policy_.reconnect_delay;
  set_state(ConnectionState::kReconnecting);
}

void ConnectionRecovery::attempt_started() {
  attempts_.add_st();
  set_state(ConnectionState::kConnecting);
}

void ConnectionRecovery::attempt_failed(TimePoint now, const char* why) {
  note_error(why);
  ++failed_attempts_;
  if (state() == ConnectionState::kFailed) return;
  if (past(now, policy_.ctrl_loss_tmo)) return set_state(ConnectionState::kFailed);
  next_attempt_ = now + policy_.reconnect_delay;
  set_state(ConnectionState::kReconnecting);
}

void ConnectionRecovery::connected() {
  successes_.add_st();
  set_state(ConnectionState::kLive);
}

void ConnectionRecovery::give_up(const char* why) {
  note_error(why);
  set_state(ConnectionState::kFailed);
}

bool ConnectionRecovery::expire(TimePoint now) {
  if (state() == ConnectionState::kReconnecting && past(now, policy_.ctrl_loss_tmo)) set_state(ConnectionState::kFailed);
  return state() == ConnectionState::kFailed;
}

bool ConnectionRecovery::fails_io(TimePoint now) const {
  switch (state()) {
    case ConnectionState::kLive: return false;
    case ConnectionState::kFailed: return true;
    default: return past(now, policy_.fast_io_fail_tmo) || past(now, policy_.ctrl_loss_tmo);
  }
}

}  // namespace ublkrdma::targets
