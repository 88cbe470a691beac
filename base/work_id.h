#pragma once
// One codec for io_uring `user_data` and verbs `wr_id`: {kind, queue, tag, op, generation}.
// Never a heap pointer. The generation lets a completion that belongs to a torn-down
// connection (or an earlier use of the tag) be recognised and dropped.
//
//   bits  0..15  tag          (ublk tags are < 4096; the server also keys slots by tag)
//   bits 16..23  op           (kind-specific sub-operation)
//   bits 24..35  queue        (ublk allows at most 4096 queues)
//   bits 36..59  generation   (24 bits, wraps)
//   bits 60..63  kind         (kind 15 is reserved as a sentinel range)
#include <cstdint>

namespace ublkrdma {

enum class WorkKind : uint8_t {
  kUblkCmd = 1,    // FETCH / COMMIT_AND_FETCH / NEED_GET_DATA uring_cmd
  kTargetIo = 2,   // an io_uring op a target submitted (e.g. loop file IO)
  kFdPoll = 3,     // POLL_ADD on an fd a target asked the loop to watch
  kRdmaSend = 4,   // verbs SEND
  kRdmaRecv = 5,   // verbs RECV
  kRdmaRead = 6,   // verbs RDMA READ
  kRdmaWrite = 7,  // verbs RDMA WRITE
  kControl = 8,    // control-plane or other bookkeeping
  kRdmaBind = 9,   // verbs BIND_MW: a request's buffer opened to the peer
  kRdmaInvalidate = 10,  // verbs LOCAL_INV: ... and closed again
  kSentinel = 15,
};

struct WorkId {
  WorkKind kind;
  uint16_t queue;
  uint16_t tag;
  uint8_t op;
  uint32_t generation;

  static constexpr unsigned kTagBits = 16, kOpBits = 8, kQueueBits = 12, kGenBits = 24, kKindBits = 4;
  static constexpr unsigned kOpShift = kTagBits, kQueueShift = kOpShift + kOpBits,
                            kGenShift = kQueueShift + kQueueBits, kKindShift = kGenShift + kGenBits;
  static_assert(kKindShift + kKindBits == 64, "WorkId fields must fill 64 bits exactly");
  static constexpr uint32_t kGenMask = (1u << kGenBits) - 1;
  static constexpr uint16_t kQueueMask = (1u << kQueueBits) - 1;

  constexpr uint64_t encode() const {
    return uint64_t(tag) | uint64_t(op) << kOpShift | uint64_t(queue & kQueueMask) << kQueueShift |
           uint64_t(generation & kGenMask) << kGenShift | uint64_t(kind) << kKindShift;
  }
  static constexpr WorkId decode(uint64_t v) {
    return WorkId{WorkKind(v >> kKindShift), uint16_t((v >> kQueueShift) & kQueueMask), uint16_t(v & 0xffff),
                  uint8_t((v >> kOpShift) & 0xff), uint32_t((v >> kGenShift) & kGenMask)};
  }
  friend constexpr bool operator==(const WorkId&, const WorkId&) = default;
};

static_assert(WorkId::decode(WorkId{WorkKind::kRdmaSend, 4095, 4095, 7, 0xabcdef}.encode()) ==
              WorkId{WorkKind::kRdmaSend, 4095, 4095, 7, 0xabcdef});

}  // namespace ublkrdma
