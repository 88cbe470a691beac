#include "server/backend_immediate.h"

#include <cerrno>

namespace ublkrdma::server {

ImmediateQueue::ImmediateQueue(uint16_t depth) : done_(depth ? depth : 1), in_flight_(depth, 0) {}

int ImmediateQueue::submit(uint16_t tag, BackendOp op, uint64_t offset, uint32_t length, std::byte* buffer,
                           uint32_t flags) {
  if (tag >= in_flight_.size()) return -EINVAL;
  if (in_flight_[tag]) return -EBUSY;
  int result = 0;
  int rc = execute_st(op, offset, length, buffer, flags, &result);
  if (rc < 0) return rc;
  in_flight_[tag] = 1;
  done_[(head_ + count_) % done_.size()] = BackendCompletion{tag, result};
  ++count_;  // never exceeds depth: one command per tag
  return 0;
}

int ImmediateQueue::poll(std::span<BackendCompletion> out) {
  int n = 0;
  while (count_ > 0 && size_t(n) < out.size()) {
    BackendCompletion c = done_[head_];
    head_ = uint32_t((head_ + 1) % done_.size());
    --count_;
    in_flight_[c.tag] = 0;
    out[n++] = c;
  }
  return n;
}

}  // namespace ublkrdma::server
