#pragma once
// Work requests collected during one pass of a poll loop and posted with one doorbell.
//
// SendChain: send-queue work requests (SEND, RDMA READ/WRITE) with their scatter/gather
// entries, in posting order. post() takes as many from the front as the SendBudget has room
// for, marks which are signaled, posts them with one ibv_post_send and keeps the rest for the
// next pass. RecvChain: receives, all posted with one ibv_post_recv.
//
// The post function is a parameter (ibv_post_send / ibv_post_recv on a QP in production, a
// fake in tests): `int(ibv_send_wr* first, ibv_send_wr** bad)`, returning 0 or a positive errno
// and, on failure, the first work request that was not posted.
//
// Owner thread only. sg_list and next pointers are set when posting, so the chain may grow
// (and reallocate) while it is being built.
#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "transport/send_budget.h"

namespace ublkrdma::transport {

class SendChain {
 public:
  explicit SendChain(size_t reserve_wrs = 0);

  // A zeroed work request at the end of the chain, with one scatter/gather entry.
  ibv_send_wr& append(uint64_t addr, uint32_t length, uint32_t lkey);
  // A zeroed work request with no scatter/gather entry (e.g. a zero-length RDMA WRITE).
  ibv_send_wr& append_empty();
  // One more scatter/gather entry for the last work request.
  void add_sge(uint64_t addr, uint32_t length, uint32_t lkey);

  size_t size() const { return len_; }
  bool empty() const { return len_ == 0; }
  ibv_send_wr& operator[](size_t i) { return wrs_[i]; }
  void clear() { len_ = sges_len_ = 0; }

  struct Posted {
    size_t wrs = 0;       // work requests posted (taken off the front of the chain)
    size_t signaled = 0;  // ... of which signaled
    int rc = 0;           // the post function's result: 0, or a positive errno
  };
  // Posts the front of the chain that fits the budget, signaled as the budget decides (every
  // one with `signal_all`), with one doorbell, and keeps the rest. Nothing is posted when the
  // budget has no room.
  template <class PostSend>
  Posted post(SendBudget& budget, PostSend&& post_send, bool signal_all = false) {
    size_t n = prepare(budget, signal_all);
    if (n == 0) return {};
    ibv_send_wr* bad = nullptr;
    int rc = post_send(&wrs_[0], &bad);
    return finish(budget, n, rc, bad);
  }

 private:
  size_t prepare(const SendBudget& budget, bool signal_all);
  Posted finish(SendBudget& budget, size_t n, int rc, const ibv_send_wr* bad);

  std::vector<ibv_send_wr> wrs_;
  std::vector<size_t> sge_at_;  // each work request's first entry in sges_
  std::vector<ibv_sge> sges_;
  size_t len_ = 0, sges_len_ = 0;
};

class RecvChain {
 public:
  explicit RecvChain(size_t reserve = 0);

  void add(uint64_t wr_id, uint64_t addr, uint32_t length, uint32_t lkey);
  size_t size() const { return len_; }
  bool empty() const { return len_ == 0; }
  void clear() { len_ = 0; }

  // Posts every receive added since the last post with one doorbell and empties the chain
  // (a failed post leaves the QP unusable: the caller fails the connection). Returns the post
  // function's result, 0 when there was nothing to post.
  template <class PostRecv>
  int post(PostRecv&& post_recv) {
    if (len_ == 0) return 0;
    link();
    ibv_recv_wr* bad = nullptr;
    int rc = post_recv(&wrs_[0], &bad);
    len_ = 0;
    return rc;
  }

 private:
  void link();

  std::vector<ibv_recv_wr> wrs_;
  std::vector<ibv_sge> sges_;
  size_t len_ = 0;
};

}  // namespace ublkrdma::transport
