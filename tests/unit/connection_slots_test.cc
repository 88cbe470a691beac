#include "targets/connection_slots.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

using ublkrdma::targets::connection_depth;
using ublkrdma::targets::ConnectionSlots;
using ublkrdma::targets::kNoTag;
using ublkrdma::targets::least_loaded;

TEST(ConnectionSlots, DepthIsTheShareRoundedUp) {
  EXPECT_EQ(connection_depth(128, 4), 32);
  EXPECT_EQ(connection_depth(64, 3), 22);
  EXPECT_EQ(connection_depth(64, 1), 64);
  EXPECT_EQ(connection_depth(1, 1), 1);
  EXPECT_EQ(connection_depth(4096, 8), 512);
  EXPECT_EQ(connection_depth(5, 8), 1);
}

TEST(ConnectionSlots, LeastLoadedTakesTheLowestOnATie) {
  std::vector<uint32_t> loads{3, 1, 1, 2};
  auto of = [&](size_t i) { return loads[i]; };
  EXPECT_EQ(least_loaded(loads.size(), of), 1u);
  loads = {0, 0, 0};
  EXPECT_EQ(least_loaded(loads.size(), of), 0u);
  loads = {5};
  EXPECT_EQ(least_loaded(loads.size(), of), 0u);
}

TEST(ConnectionSlots, TakeNamesTheTagAndReleaseFreesIt) {
  ConnectionSlots s(3);
  EXPECT_EQ(s.depth(), 3);
  EXPECT_EQ(s.in_use(), 0u);
  uint16_t a = s.take(100);
  EXPECT_EQ(a, 0);  // the lowest first while none is taken
  uint16_t b = s.take(7);
  uint16_t c = s.take(42);
  EXPECT_TRUE(s.full());
  EXPECT_EQ(s.in_use(), 3u);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  EXPECT_EQ(s.tag_of(a), 100);
  EXPECT_EQ(s.tag_of(b), 7);
  EXPECT_EQ(s.tag_of(c), 42);
  EXPECT_TRUE(s.release(b));
  EXPECT_EQ(s.tag_of(b), kNoTag);
  EXPECT_FALSE(s.full());
  EXPECT_EQ(s.take(9), b);  // the slot freed last is taken next
  EXPECT_EQ(s.tag_of(b), 9);
}

TEST(ConnectionSlots, AnswersNamingFreeOrForeignSlotsFindNoTag) {
  ConnectionSlots s(2);
  EXPECT_EQ(s.tag_of(0), kNoTag);  // free
  EXPECT_EQ(s.tag_of(2), kNoTag);  // beyond the depth
  EXPECT_EQ(s.tag_of(0xffff), kNoTag);
  EXPECT_FALSE(s.release(1));  // never taken: nothing changes
  EXPECT_FALSE(s.release(5));
  EXPECT_EQ(s.in_use(), 0u);
  uint16_t a = s.take(3);
  EXPECT_TRUE(s.release(a));
  EXPECT_FALSE(s.release(a));  // twice
  EXPECT_EQ(s.in_use(), 0u);
}

// The property the client relies on to ask each connection for only its share of the depth:
// with every request on the least loaded connection, no connection ever needs more slots than
// connection_depth(), whatever order requests complete in.
TEST(ConnectionSlots, LeastLoadedNeverOverflowsTheShare) {
  std::mt19937 rng(12345);
  for (uint16_t depth : {1, 2, 5, 31, 64, 128}) {
    for (uint16_t conns = 1; conns <= 8; ++conns) {
      uint16_t lanes = std::min(conns, depth);
      std::vector<ConnectionSlots> slots(lanes, ConnectionSlots(connection_depth(depth, lanes)));
      struct Held {
        uint16_t lane, slot;
      };
      std::vector<Held> held;            // requests in flight, in no particular order
      std::vector<uint16_t> free_tags;   // ublk tags not in flight
      for (uint16_t t = 0; t < depth; ++t) free_tags.push_back(t);
      for (int step = 0; step < 20000; ++step) {
        // Fill more often than drain, so the queue spends most steps near full.
        bool submit = !free_tags.empty() && (held.empty() || rng() % 3 != 0);
        if (submit) {
          uint16_t lane = uint16_t(least_loaded(slots.size(), [&](size_t l) { return slots[l].in_use(); }));
          ASSERT_FALSE(slots[lane].full()) << "depth " << depth << " conns " << conns << " step " << step;
          size_t i = rng() % free_tags.size();
          uint16_t tag = free_tags[i];
          free_tags.erase(free_tags.begin() + ptrdiff_t(i));
          uint16_t slot = slots[lane].take(tag);
          ASSERT_EQ(slots[lane].tag_of(slot), tag);
          held.push_back({lane, slot});
        } else {
          size_t i = rng() % held.size();
          Held h = held[i];
          held.erase(held.begin() + ptrdiff_t(i));
          uint16_t tag = slots[h.lane].tag_of(h.slot);
          ASSERT_NE(tag, kNoTag);
          ASSERT_TRUE(slots[h.lane].release(h.slot));
          free_tags.push_back(tag);
        }
        uint32_t total = 0;
        for (const auto& s : slots) total += s.in_use();
        ASSERT_EQ(total, held.size());
      }
    }
  }
}
