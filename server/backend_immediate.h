#pragma once
// A BackendQueue whose commands finish inside submit() (ram, null): the result is parked in a
// per-queue ring of completions and handed out by the next poll(). No syscalls.
//
// A command too long for one submit() (a ram export zeroing gigabytes) may be deferred instead:
// it stays in flight and poll() advances it a bounded piece per call, so the other commands of
// the connection keep flowing. Such a queue has an event_fd() that is readable while deferred
// work remains: a poll group that found nothing to reap and sleeps on it wakes at once
// and polls again, so the work never waits for an unrelated event.
#include <vector>

#include "base/unique_fd.h"
#include "server/backend.h"

namespace ublkrdma::server {

class ImmediateQueue : public BackendQueue {
 public:
  // `may_defer`: the subclass may return kDeferred from execute_st (creates the eventfd).
  // Throws SetupError.
  explicit ImmediateQueue(uint16_t depth, bool may_defer = false);

  int submit(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
             uint32_t flags) final;
  int poll(std::span<BackendCompletion> out) final;
  int event_fd() const final { return work_fd_.get(); }
  bool busy() const final { return count_ > 0 || deferred_ > 0; }

 protected:
  // execute_st's answer for a command it has accepted but not finished: the tag stays in flight
  // until the subclass reports it with complete_deferred_st() from advance_st().
  static constexpr int kDeferred = 1;

  // Does the command now. Returns -errno to refuse it (no completion), 0 with its completion
  // result (bytes or 0, or -errno) in *result, or kDeferred.
  virtual int execute_st(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
                         uint32_t flags, int* result) = 0;

  // Called at the start of each poll() while deferred commands remain: does a bounded piece of
  // them, calling complete_deferred_st() for each one that finishes.
  virtual void advance_st() {}

  void complete_deferred_st(uint16_t tag, int32_t result);

 private:
  void park_st(uint16_t tag, int32_t result);

  std::vector<BackendCompletion> done_;  // ring of depth entries
  std::vector<uint8_t> in_flight_;       // per tag
  uint32_t head_ = 0, count_ = 0;
  uint32_t deferred_ = 0;  // commands accepted with kDeferred and not yet completed
  UniqueFd work_fd_;       // eventfd, readable (counter 1) while deferred_ > 0; -1 if !may_defer
};

}  // namespace ublkrdma::server
