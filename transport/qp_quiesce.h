#pragma once
// Taking a QP out of service before the memory its work requests point at is used again: the
// QP is moved to the error state and drained (marker work requests posted after the transition
// come back flushed, so everything posted before them has completed), or, when any of that
// fails or times out, destroyed. Only then may buffers the peer could reach go back to their
// owner (the kernel, for a ublk IO buffer). When neither works, they must stay held.
#include <cstdint>

namespace ublkrdma::transport {

enum class Quiesced : uint8_t {
  kDrained,    // in the error state, every work request completed
  kDestroyed,  // not drained, but destroyed: the device no longer acts for it
  kLive,       // neither: the device may still move data for it
};

// Steps: to_error(), post_markers(), wait_markers() and destroy(), each true on success
// (verbs in Connection, fakes in the unit test).
template <class Steps>
Quiesced quiesce_qp(Steps&& steps) {
  // Markers on a QP that did not reach the error state would be executed, not flushed (a SEND
  // marker would reach the peer), and prove nothing: then only destroying it is safe.
  if (steps.to_error() && steps.post_markers() && steps.wait_markers()) return Quiesced::kDrained;
  return steps.destroy() ? Quiesced::kDestroyed : Quiesced::kLive;
}

}  // namespace ublkrdma::transport
