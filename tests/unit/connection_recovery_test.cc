// A lost connection's recovery timeline (nvme-cli's reconnect_delay, fast_io_fail_tmo and
// ctrl_loss_tmo) over a clock the test moves.
#include "targets/connection_recovery.h"

#include <gtest/gtest.h>

namespace ublkrdma::targets {
namespace {

using std::chrono::milliseconds;
using State = ConnectionState;

RecoveryPolicy policy(int delay_ms, int ctrl_loss_ms, int fast_fail_ms) {
  return RecoveryPolicy{milliseconds(delay_ms), milliseconds(ctrl_loss_ms), milliseconds(fast_fail_ms)};
}

class ConnectionRecoveryTest : public ::testing::Test {
 protected:
  RecoveryClock::time_point at(int ms) const { return t0_ + milliseconds(ms); }
  RecoveryClock::time_point t0_ = RecoveryClock::now();
};

TEST_F(ConnectionRecoveryTest, LiveUntilLost) {
  ConnectionRecovery r(policy(2000, 600000, -1));
  EXPECT_TRUE(r.live());
  EXPECT_FALSE(r.fails_io(at(0)));
  EXPECT_FALSE(r.attempt_due(at(100000)));
  EXPECT_EQ(r.last_error(), nullptr);
}

TEST_F(ConnectionRecoveryTest, AttemptsEveryReconnectDelayUntilConnected) {
  ConnectionRecovery r(policy(2000, 600000, -1));
  r.lost(at(0), "DISCONNECTED");
  EXPECT_EQ(r.state(), State::kReconnecting);
  EXPECT_STREQ(r.last_error(), "DISCONNECTED");
  EXPECT_GT(r.last_error_unix_ms(), 0);
  EXPECT_FALSE(r.attempt_due(at(1999)));
  EXPECT_TRUE(r.attempt_due(at(2000)));
  r.attempt_started();
  EXPECT_EQ(r.state(), State::kConnecting);
  EXPECT_FALSE(r.attempt_due(at(5000)));  // one attempt at a time
  r.attempt_failed(at(2100), "Connection refused");
  EXPECT_EQ(r.failed_attempts(), 1u);
  EXPECT_FALSE(r.attempt_due(at(4099)));
  EXPECT_TRUE(r.attempt_due(at(4100)));
  r.attempt_started();
  r.connected();
  EXPECT_TRUE(r.live());
  EXPECT_EQ(r.attempts(), 2u);
  EXPECT_EQ(r.successes(), 1u);
  EXPECT_EQ(r.losses(), 1u);
  EXPECT_FALSE(r.fails_io(at(1000000)));
}

TEST_F(ConnectionRecoveryTest, HeldIoWaitsUntilCtrlLossTmoThenFailsForGood) {
  ConnectionRecovery r(policy(2000, 5000, -1));
  r.lost(at(0), "IO timeout");
  EXPECT_FALSE(r.fails_io(at(4999)));
  EXPECT_FALSE(r.expire(at(4999)));
  EXPECT_TRUE(r.fails_io(at(5000)));
  EXPECT_TRUE(r.expire(at(5000)));
  EXPECT_EQ(r.state(), State::kFailed);
  EXPECT_FALSE(r.attempt_due(at(100000)));
  r.lost(at(6000), "again");  // a failed connection stays failed
  EXPECT_EQ(r.state(), State::kFailed);
}

TEST_F(ConnectionRecoveryTest, AFailedAttemptPastCtrlLossTmoGivesUp) {
  ConnectionRecovery r(policy(2000, 5000, -1));
  r.lost(at(0), "DISCONNECTED");
  r.attempt_started();
  EXPECT_FALSE(r.expire(at(6000)));  // an attempt under way is not cut short ...
  EXPECT_TRUE(r.fails_io(at(6000)));  // ... but held IO fails already
  r.attempt_failed(at(7000), "Connection refused");
  EXPECT_EQ(r.state(), State::kFailed);
}

TEST_F(ConnectionRecoveryTest, FastIoFailFailsIoButGoesOnReconnecting) {
  ConnectionRecovery r(policy(1000, -1, 2000));
  r.lost(at(0), "DISCONNECTED");
  EXPECT_FALSE(r.fails_io(at(1999)));
  EXPECT_TRUE(r.fails_io(at(2000)));
  EXPECT_FALSE(r.expire(at(100000000)));  // ctrl_loss_tmo -1: never gives up
  EXPECT_TRUE(r.attempt_due(at(100000000)));
  r.attempt_started();
  r.connected();
  EXPECT_FALSE(r.fails_io(at(100000001)));
}

TEST_F(ConnectionRecoveryTest, CtrlLossTmoZeroMeansNoReconnect) {
  ConnectionRecovery r(policy(2000, 0, -1));
  r.lost(at(0), "DISCONNECTED");
  EXPECT_EQ(r.state(), State::kFailed);
  EXPECT_TRUE(r.fails_io(at(0)));
  EXPECT_FALSE(r.attempt_due(at(100000)));
}

TEST_F(ConnectionRecoveryTest, ALossDuringRecoveryKeepsTheFirstLossTime) {
  ConnectionRecovery r(policy(1000, 5000, -1));
  r.lost(at(0), "DISCONNECTED");
  r.attempt_started();
  r.lost(at(3000), "IO timeout");  // the attempt's connection died at once
  EXPECT_TRUE(r.fails_io(at(5000)));  // measured from 0, not 3000
  EXPECT_EQ(r.losses(), 2u);
}

TEST_F(ConnectionRecoveryTest, GiveUpIsFinal) {
  ConnectionRecovery r(policy(1000, -1, -1));
  r.lost(at(0), "DISCONNECTED");
  r.give_up("the server describes the export differently");
  EXPECT_EQ(r.state(), State::kFailed);
  EXPECT_TRUE(r.fails_io(at(1)));
  EXPECT_STREQ(connection_state_name(r.state()), "failed");
}

}  // namespace
}  // namespace ublkrdma::targets
