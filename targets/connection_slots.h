// How an rdma queue spreads its requests over its connections (add --conns-per-queue): which
// connection a request takes, and which of that connection's slots names it on the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ublkrdma::targets {

inline constexpr uint16_t kNoTag = 0xffff;

// A queue's depth over `conns` connections when each request takes the connection holding the
// fewest: none ever holds more than this (the chosen one held at most the average of the
// others, which is below depth / conns while a request is still to be placed).
constexpr uint16_t connection_depth(uint16_t queue_depth, uint16_t conns) {
  return conns == 0 ? 0 : uint16_t((uint32_t(queue_depth) + conns - 1) / conns);
}

// The index in 0..n-1 with the smallest load(i), the lowest on a tie: a shallow queue stays on
// its first connection, a deep one spreads over all of them. n must be > 0.
template <typename Load>
size_t least_loaded(size_t n, Load load) {
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (load(i) < load(best)) best = i;
  return best;
}

// One connection's slots 0..depth-1 and the ublk tag holding each. The slot freed last is taken
// next, so a shallow queue keeps reusing the same few.
class ConnectionSlots {
 public:
  ConnectionSlots() = default;
  explicit ConnectionSlots(uint16_t depth) : tag_(depth, kNoTag), free_(depth) {
    for (uint16_t s = 0; s < depth; ++s) free_[s] = uint16_t(depth - 1 - s);
  }

  uint16_t depth() const { return uint16_t(tag_.size()); }
  uint32_t in_use() const { return uint32_t(tag_.size() - free_.size()); }
  bool full() const { return free_.empty(); }

  // A free slot, now held by `tag` (the caller checks !full()).
  uint16_t take(uint16_t tag) {
    uint16_t slot = free_.back();
    free_.pop_back();
    tag_[slot] = tag;
    return slot;
  }

  // Frees a slot taken before; false (and nothing changes) when it is not held.
  bool release(uint16_t slot) {
    if (tag_of(slot) == kNoTag) return false;
    tag_[slot] = kNoTag;
    free_.push_back(slot);
    return true;
  }

  // The tag holding `slot`, or kNoTag when it is out of range or free (an answer naming it is
  // foreign or stale).
  uint16_t tag_of(uint16_t slot) const { return slot < tag_.size() ? tag_[slot] : kNoTag; }

 private:
  std::vector<uint16_t> tag_;
  std::vector<uint16_t> free_;  // a stack: the lowest free slot on top while none is taken
};

}  // namespace ublkrdma::targets
