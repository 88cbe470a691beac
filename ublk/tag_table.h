#pragma once
// The per-tag state of one ublk queue: a flat array with checked transitions. Owned by the
// queue thread. A transition from the wrong state is refused (and the caller logs it): it would
// mean committing a request twice or handing a tag to the target that the kernel still owns.
#include <cstdint>
#include <vector>

namespace ublkrdma::ublk {

enum class TagState : uint8_t {
  kIdle,      // no command in the kernel yet
  kInKernel,  // FETCH / COMMIT_AND_FETCH / NEED_GET_DATA outstanding: waiting for a request
  kInTarget,  // the target holds the request
  kRetired,   // the kernel aborted the command (device stopping): never used again
};

const char* tag_state_name(TagState s);

class TagTable {
 public:
  explicit TagTable(uint16_t depth) : states_(depth, TagState::kIdle) {}

  uint16_t depth() const { return uint16_t(states_.size()); }
  TagState state(uint16_t tag) const { return states_[tag]; }
  uint32_t in_target() const { return in_target_; }
  uint32_t retired() const { return retired_; }
  bool all_retired() const { return retired_ == states_.size(); }

  // Moves `tag` from `from` to `to`; false (nothing changed) if the tag is out of range or not
  // in `from`, or if either side is kRetired (use retire(); a retired tag stays retired).
  bool transition(uint16_t tag, TagState from, TagState to) {
    if (tag >= states_.size() || states_[tag] != from) return false;
    if (from == TagState::kRetired || to == TagState::kRetired) return false;
    if (from == TagState::kInTarget) --in_target_;
    if (to == TagState::kInTarget) ++in_target_;
    states_[tag] = to;
    return true;
  }

  // The kernel will never hand this tag out again. Idempotent; false if out of range.
  bool retire(uint16_t tag) {
    if (tag >= states_.size()) return false;
    if (states_[tag] == TagState::kRetired) return true;
    if (states_[tag] == TagState::kInTarget) --in_target_;
    states_[tag] = TagState::kRetired;
    ++retired_;
    return true;
  }

 private:
  std::vector<TagState> states_;
  uint32_t in_target_ = 0;
  uint32_t retired_ = 0;
};

inline const char* tag_state_name(TagState s) {
  switch (s) {
    case TagState::kIdle: return "idle";
    case TagState::kInKernel: return "in-kernel";
    case TagState::kInTarget: return "in-target";
    case TagState::kRetired: return "retired";
  }
  return "?";
}

}  // namespace ublkrdma::ublk
