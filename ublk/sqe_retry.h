#pragma once
// Getting a submission queue entry from a ring whose SQ may be full. Separate from QueueLoop so
// the retry policy can be tested without a kernel.
#include <cerrno>

namespace ublkrdma::ublk {

// How often get_sqe_st flushes a full SQ before it gives up. A flush that frees no entry, or
// fails, repeats at once: a ring that refuses this many in a row is broken (or its CQ must be
// reaped first, which the caller cannot do from where it needs the entry).
inline constexpr unsigned kMaxSqFlushes = 16;

// Returns get()'s entry; while get() finds the SQ full (returns null), flushes it with submit()
// (io_uring_submit: >= 0, or -errno) and tries again. Transient errors (-EAGAIN, -EBUSY, -EINTR)
// and flushes that free nothing count against `max_flushes`; any other error gives up at once.
// On giving up returns null with the reason in *err: the last error, or -EAGAIN if the SQ
// stayed full.
template <typename Get, typename Submit>
auto get_entry_flushing(Get&& get, Submit&& submit, unsigned max_flushes, int* err) -> decltype(get()) {
  auto entry = get();
  for (unsigned i = 0; !entry && i < max_flushes; ++i) {
    int rc = submit();
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
      *err = rc;
      return nullptr;
    }
    *err = rc < 0 ? rc : -EAGAIN;
    entry = get();
  }
  if (!entry && max_flushes == 0) *err = -EAGAIN;
  return entry;
}

}  // namespace ublkrdma::ublk
