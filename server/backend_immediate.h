#pragma once
// A BackendQueue whose commands finish inside submit() (ram, null): the result is parked in a
// per-queue ring of completions and handed out by the next poll(). No fd, no syscalls.
#include <vector>

#include "server/backend.h"

namespace ublkrdma::server {

class ImmediateQueue : public BackendQueue {
 public:
  explicit ImmediateQueue(uint16_t depth);

  int submit(uint16_t tag, BackendOp op, uint64_t offset, uint32_t length, std::byte* buffer,
             uint32_t flags) final;
  int poll(std::span<BackendCompletion> out) final;
  int event_fd() const final { return -1; }
  bool busy() const final { return count_ > 0; }

 protected:
  // Does the command now. Returns -errno to refuse it (no completion), else 0 with its
  // completion result (bytes or 0, or -errno) in *result.
  virtual int execute_st(BackendOp op, uint64_t offset, uint32_t length, std::byte* buffer, uint32_t flags,
                         int* result) = 0;

 private:
  std::vector<BackendCompletion> done_;  // ring of depth entries
  std::vector<uint8_t> in_flight_;       // per tag
  uint32_t head_ = 0, count_ = 0;
};

}  // namespace ublkrdma::server
