#include "server/backend_immediate.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/errors.h"

namespace ublkrdma::server {

ImmediateQueue::ImmediateQueue(uint16_t depth, bool may_defer) : done_(depth ? depth : 1), in_flight_(depth, 0) {
  if (!may_defer) return;
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw_errno(errno, "eventfd for a backend queue");
  work_fd_.reset(fd);
}

int ImmediateQueue::submit(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
                           uint32_t flags) {
  if (tag >= in_flight_.size()) return -EINVAL;
  if (in_flight_[tag]) return -EBUSY;
  int result = 0;
  int rc = execute_st(tag, op, offset, length, buffer, flags, &result);
  if (rc < 0) return rc;
  in_flight_[tag] = 1;
  if (rc == kDeferred) {
    if (deferred_++ == 0) {
      uint64_t one = 1;
      (void)!::write(work_fd_.get(), &one, sizeof(one));  // cannot fail: the counter is 0 or 1
    }
    return 0;
  }
  park_st(tag, result);
  return 0;
}

void ImmediateQueue::complete_deferred_st(uint16_t tag, int32_t result) {
  park_st(tag, result);
  if (--deferred_ == 0) {
    uint64_t v;
    (void)!::read(work_fd_.get(), &v, sizeof(v));  // back to 0: not readable
  }
}

void ImmediateQueue::park_st(uint16_t tag, int32_t result) {
  done_[(head_ + count_) % done_.size()] = BackendCompletion{tag, result};
  ++count_;  // never exceeds depth: one command per tag
}

int ImmediateQueue::poll(std::span<BackendCompletion> out) {
  if (deferred_ > 0) advance_st();
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
