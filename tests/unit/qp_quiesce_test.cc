// What must be true before buffers a peer could reach are handed back: the QP drained, or
// destroyed; never markers posted on a QP that did not reach the error state.
#include <gtest/gtest.h>

#include <string>

#include "transport/qp_quiesce.h"

namespace ublkrdma::transport {
namespace {

struct FakeSteps {
  bool error_ok = true, markers_ok = true, drain_ok = true, destroy_ok = true;
  std::string calls;
  bool to_error() { return calls += 'E', error_ok; }
  bool post_markers() { return calls += 'M', markers_ok; }
  bool wait_markers() { return calls += 'W', drain_ok; }
  bool destroy() { return calls += 'D', destroy_ok; }
};

TEST(QpQuiesce, ADrainedQpIsNotDestroyed) {
  FakeSteps s;
  EXPECT_EQ(quiesce_qp(s), Quiesced::kDrained);
  EXPECT_EQ(s.calls, "EMW");
}

TEST(QpQuiesce, NoMarkersOnAQpThatDidNotReachTheErrorState) {
  FakeSteps s;
  s.error_ok = false;
  EXPECT_EQ(quiesce_qp(s), Quiesced::kDestroyed);
  EXPECT_EQ(s.calls, "ED");
}

TEST(QpQuiesce, ADrainThatTimesOutDestroysTheQp) {
  FakeSteps s;
  s.drain_ok = false;
  EXPECT_EQ(quiesce_qp(s), Quiesced::kDestroyed);
  EXPECT_EQ(s.calls, "EMWD");
}

TEST(QpQuiesce, MarkersThatCannotBePostedDestroyTheQp) {
  FakeSteps s;
  s.markers_ok = false;
  EXPECT_EQ(quiesce_qp(s), Quiesced::kDestroyed);
  EXPECT_EQ(s.calls, "EMD");
}

TEST(QpQuiesce, NeitherDrainedNorDestroyedIsLive) {
  FakeSteps s;
  s.error_ok = false;
  s.destroy_ok = false;
  EXPECT_EQ(quiesce_qp(s), Quiesced::kLive);
  FakeSteps t;
  t.drain_ok = false;
  t.destroy_ok = false;
  EXPECT_EQ(quiesce_qp(t), Quiesced::kLive);
}

}  // namespace
}  // namespace ublkrdma::transport
