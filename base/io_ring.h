#pragma once
// Owner of one io_uring instance.
#include <liburing.h>

#include <cstring>

#include "base/errors.h"

namespace ublkrdma {

class IoRing {
 public:
  IoRing() = default;
  IoRing(unsigned entries, unsigned flags, unsigned cq_entries = 0) { init(entries, flags, cq_entries); }
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;
  ~IoRing() {
    if (live_) io_uring_queue_exit(&ring_);
  }

  void init(unsigned entries, unsigned flags, unsigned cq_entries = 0) {
    io_uring_params p;
    std::memset(&p, 0, sizeof(p));
    p.flags = flags;
    if (cq_entries) {
      p.flags |= IORING_SETUP_CQSIZE;
      p.cq_entries = cq_entries;
    }
    int rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc < 0) throw_errno(rc, "io_uring_queue_init({} entries, flags {:#x})", entries, flags);
    live_ = true;
  }

  io_uring* get() { return &ring_; }
  int fd() const { return ring_.ring_fd; }

 private:
  io_uring ring_{};
  bool live_ = false;
};

}  // namespace ublkrdma
