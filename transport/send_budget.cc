#include "transport/send_budget.h"

#include <stdexcept>

namespace ublkrdma::transport {

SendBudget::SendBudget(size_t capacity, uint32_t signal_every)
    : capacity_(capacity), signal_every_(signal_every), retires_(capacity + 1, 0) {
  if (signal_every == 0 || capacity < 2 * size_t(signal_every))
    throw std::invalid_argument("send budget: the queue must hold two signalling windows");
}

void SendBudget::mark_signals(std::span<ibv_send_wr> chain, bool signal_all) const {
  uint32_t since = since_signal_;
  for (size_t i = 0; i < chain.size(); ++i) {
    ibv_send_wr& wr = chain[i];
    ++since;
    bool last = i + 1 == chain.size();
    // The last rule: once this chain is posted, fewer than a window of slots would be left,
    // so its last work request must bring a completion that frees some.
    if (signal_all || (wr.send_flags & IBV_SEND_SIGNALED) || since >= signal_every_ ||
        (last && used_ + chain.size() + signal_every_ > capacity_)) {
      wr.send_flags |= IBV_SEND_SIGNALED;
      since = 0;
    }
  }
}

size_t SendBudget::posted(std::span<const ibv_send_wr> chain) {
  size_t signaled = 0;
  for (const ibv_send_wr& wr : chain) {
    ++since_signal_;
    if (wr.send_flags & IBV_SEND_SIGNALED) {
      // At most `capacity` signaled work requests fit in the queue: the ring never overflows.
      retires_[(head_ + signaled_) % retires_.size()] = since_signal_;
      ++signaled_;
      ++signaled;
      since_signal_ = 0;
    }
  }
  used_ += chain.size();
  return signaled;
}

bool SendBudget::retire() {
  if (signaled_ == 0) return false;
  used_ -= retires_[head_];
  head_ = (head_ + 1) % retires_.size();
  --signaled_;
  return true;
}

void SendBudget::reset() {
  used_ = 0;
  since_signal_ = 0;
  head_ = 0;
  signaled_ = 0;
}

}  // namespace ublkrdma::transport
