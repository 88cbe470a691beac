#pragma once
// Selective signalling of one QP's send queue. Only some work requests ask for a completion;
// each signaled one, when it completes, retires itself and the unsignaled ones posted before
// it (send-queue completions arrive in posting order). The budget counts the slots in use so
// a chain is never posted past the queue's capacity, and it signals often enough that a
// completion is always on its way while the queue is close to full (no stall, no overflow).
//
// Owner thread only, like the QP it accounts for.
#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ublkrdma::transport {

class SendBudget {
 public:
  SendBudget() = default;
  // `capacity` slots (the QP's send_wrs); every `signal_every`-th work request is signaled.
  // Throws std::invalid_argument unless capacity >= 2 * signal_every >= 2.
  SendBudget(size_t capacity, uint32_t signal_every);

  size_t capacity() const { return capacity_; }
  size_t used() const { return used_; }
  size_t room() const { return capacity_ - used_; }
  // A signaled work request is posted and has not completed yet.
  bool signal_outstanding() const { return signaled_ != 0; }
  // Work requests posted after the last signaled one: nothing will report their completion
  // until a later signaled one does.
  uint32_t unsignaled_tail() const { return since_signal_; }
  // Every work request posted has been retired: the queue holds nothing of ours.
  bool quiescent() const { return used_ == 0; }

  // Sets IBV_SEND_SIGNALED on the work requests of `chain` (about to be posted, in order) that
  // need it: those that already ask for it, every signal_every-th, all of them with
  // `signal_all`, and the last one when the queue would otherwise fill without a completion
  // on its way. Changes nothing in the budget: posted() does that for what was posted.
  void mark_signals(std::span<ibv_send_wr> chain, bool signal_all = false) const;
  // The first `chain.size()` work requests of a marked chain were posted. Returns how many
  // of them are signaled.
  size_t posted(std::span<const ibv_send_wr> chain);
  // A signaled work request completed (successfully or flushed). False when none was
  // outstanding: the caller's accounting and the device disagree.
  bool retire();
  // Forgets everything (the QP was destroyed, or replaced by a new one).
  void reset();

 private:
  size_t capacity_ = 0;
  uint32_t signal_every_ = 1;
  size_t used_ = 0;
  uint32_t since_signal_ = 0;
  // For each outstanding signaled work request, oldest first, how many slots it retires.
  std::vector<uint32_t> retires_;
  size_t head_ = 0, signaled_ = 0;
};

}  // namespace ublkrdma::transport
