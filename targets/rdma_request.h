#pragma once
// One request of an rdma queue, by its ublk tag: what the queue target and the connection it
// travels on both need to know of it.
#include <cstdint>

namespace ublkrdma::targets {

enum class RequestState : uint8_t {
  kFree,      // no request holds the tag
  kQueued,    // encoded, waiting in its connection's pending list for the next post
  kInFlight,  // posted: waits for its answer, its ReadDone, its RDMA READ or its fence
  kClosing,   // answered (result kept), its buffer's window being invalidated: done when that is
  kHeld,      // its connection was lost: waits for a live one to be reissued on
};

struct RdmaRequest {
  uint32_t generation = 0;
  uint32_t length = 0;
  uint32_t tick = 0;  // the queue's timer tick when it was submitted
  int32_t result = 0;  // kClosing: what the answer said, given to ublk once the window is closed
  RequestState state = RequestState::kFree;
  uint8_t op = 0;          // wire::Opcode
  uint8_t connection = 0;  // the connection it travels on (set at submission) ...
  uint16_t slot = 0;       // ... and its slot there: its tag on the wire
  bool pushed = false;  // a WRITE whose data goes out by our RDMA WRITE before its command
  bool pulled = false;  // a READ that is our RDMA READ of the export, with no command
  bool fenced = false;  // a pushed WRITE with no command, done when the fence READ behind it is
  // The server reaches its buffer through a memory window bound for it alone (add --mr-per-io),
  // invalidated before it completes.
  bool windowed = false;
  // Zero copy (add --shmem-buf): the index of the shared buffer its data is in; -1: the slab.
  int16_t shared_buffer = -1;
  uint64_t buffer = 0;  // a READ or WRITE: where its data is (in the slab or a shared buffer) ...
  uint64_t offset = 0;  // ... and where it is in the export

  bool sends_command() const { return !pulled && !fenced; }
};

}  // namespace ublkrdma::targets
