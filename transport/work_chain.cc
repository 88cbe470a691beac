#include "transport/work_chain.h"

#include <algorithm>

namespace ublkrdma::transport {

SendChain::SendChain(size_t reserve_wrs)
    : wrs_(std::max<size_t>(reserve_wrs, 1)), sge_at_(wrs_.size()), sges_(wrs_.size()) {}

ibv_send_wr& SendChain::append_empty() {
  if (len_ == wrs_.size()) {
    wrs_.resize(wrs_.size() * 2);
    sge_at_.resize(wrs_.size());
  }
  sge_at_[len_] = sges_len_;
  ibv_send_wr& wr = wrs_[len_++];
  wr = ibv_send_wr{};
  return wr;
}

ibv_send_wr& SendChain::append(uint64_t addr, uint32_t length, uint32_t lkey) {
  ibv_send_wr& wr = append_empty();
  add_sge(addr, length, lkey);
  return wr;
}

void SendChain::add_sge(uint64_t addr, uint32_t length, uint32_t lkey) {
  if (sges_len_ == sges_.size()) sges_.resize(sges_.size() * 2);
  sges_[sges_len_++] = ibv_sge{addr, length, lkey};
  ++wrs_[len_ - 1].num_sge;
}

size_t SendChain::prepare(const SendBudget& budget, bool signal_all) {
  size_t n = std::min(len_, budget.room());
  for (size_t i = 0; i < n; ++i) {
    ibv_send_wr& wr = wrs_[i];
    wr.sg_list = wr.num_sge ? &sges_[sge_at_[i]] : nullptr;
    wr.next = i + 1 < n ? &wrs_[i + 1] : nullptr;
  }
  budget.mark_signals(std::span<ibv_send_wr>(wrs_.data(), n), signal_all);
  return n;
}

SendChain::Posted SendChain::finish(SendBudget& budget, size_t n, int rc, const ibv_send_wr* bad) {
  // On failure the work requests before `bad` were posted; the rest of the chain was not.
  size_t posted = n;
  if (rc != 0) posted = bad >= &wrs_[0] && bad < &wrs_[0] + n ? size_t(bad - &wrs_[0]) : 0;
  size_t signaled = budget.posted(std::span<const ibv_send_wr>(wrs_.data(), posted));
  if (posted < len_) {
    // Keep the rest for the next pass; their scatter/gather entries move with them.
    size_t first = sge_at_[posted];
    for (size_t i = posted; i < len_; ++i) {
      wrs_[i - posted] = wrs_[i];
      sge_at_[i - posted] = sge_at_[i] - first;
    }
    std::copy(sges_.begin() + ptrdiff_t(first), sges_.begin() + ptrdiff_t(sges_len_), sges_.begin());
    sges_len_ -= first;
    len_ -= posted;
  } else {
    clear();
  }
  return {posted, signaled, rc};
}

RecvChain::RecvChain(size_t reserve) : wrs_(std::max<size_t>(reserve, 1)), sges_(wrs_.size()) {}

void RecvChain::add(uint64_t wr_id, uint64_t addr, uint32_t length, uint32_t lkey) {
  if (len_ == wrs_.size()) {
    wrs_.resize(wrs_.size() * 2);
    sges_.resize(wrs_.size());
  }
  sges_[len_] = ibv_sge{addr, length, lkey};
  ibv_recv_wr& wr = wrs_[len_++];
  wr = ibv_recv_wr{};
  wr.wr_id = wr_id;
  wr.num_sge = 1;
}

void RecvChain::link() {
  for (size_t i = 0; i < len_; ++i) {
    wrs_[i].sg_list = &sges_[i];
    wrs_[i].next = i + 1 < len_ ? &wrs_[i + 1] : nullptr;
  }
}

}  // namespace ublkrdma::transport
