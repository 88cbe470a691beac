#include "ublk/tag_table.h"

#include <gtest/gtest.h>

using ublkrdma::ublk::TagState;
using ublkrdma::ublk::TagTable;

TEST(TagTable, NormalLifeCycle) {
  TagTable t(4);
  EXPECT_EQ(t.depth(), 4);
  EXPECT_TRUE(t.transition(2, TagState::kIdle, TagState::kInKernel));
  EXPECT_TRUE(t.transition(2, TagState::kInKernel, TagState::kInTarget));
  EXPECT_EQ(t.in_target(), 1u);
  EXPECT_TRUE(t.transition(2, TagState::kInTarget, TagState::kInKernel));
  EXPECT_EQ(t.in_target(), 0u);
  EXPECT_EQ(t.state(2), TagState::kInKernel);
}

TEST(TagTable, RefusesWrongSourceState) {
  TagTable t(2);
  // Completing a request the target never received (double commit) is refused.
  EXPECT_FALSE(t.transition(0, TagState::kInTarget, TagState::kInKernel));
  EXPECT_EQ(t.state(0), TagState::kIdle);
  ASSERT_TRUE(t.transition(0, TagState::kIdle, TagState::kInKernel));
  EXPECT_FALSE(t.transition(0, TagState::kIdle, TagState::kInKernel));
  EXPECT_EQ(t.in_target(), 0u);
}

TEST(TagTable, RefusesOutOfRangeAndRetiredTarget) {
  TagTable t(2);
  EXPECT_FALSE(t.transition(2, TagState::kIdle, TagState::kInKernel));
  EXPECT_FALSE(t.transition(0, TagState::kIdle, TagState::kRetired));
  EXPECT_FALSE(t.retire(7));
}

TEST(TagTable, RetireIsIdempotentAndCountsOnce) {
  TagTable t(3);
  for (uint16_t i = 0; i < 3; ++i) ASSERT_TRUE(t.transition(i, TagState::kIdle, TagState::kInKernel));
  ASSERT_TRUE(t.transition(1, TagState::kInKernel, TagState::kInTarget));
  EXPECT_TRUE(t.retire(0));
  EXPECT_TRUE(t.retire(0));
  EXPECT_EQ(t.retired(), 1u);
  EXPECT_FALSE(t.all_retired());
  EXPECT_TRUE(t.retire(1));
  EXPECT_EQ(t.in_target(), 0u);
  EXPECT_TRUE(t.retire(2));
  EXPECT_TRUE(t.all_retired());
  // A retired tag never comes back.
  EXPECT_FALSE(t.transition(2, TagState::kRetired, TagState::kInKernel));
}
