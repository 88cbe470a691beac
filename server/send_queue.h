#pragma once
// The send side of a served connection. RDMA work and answers are queued during a pass and
// posted with one doorbell, as far as the send queue has room (transport::SendBudget and
// SendChain); the rest waits for the next pass. Answers are encoded Responses in registered
// slots: with BATCH up to kMaxBatch of them leave in one SEND (a scatter/gather entry each),
// inline when the device allows; the first SEND holding the answer to a direct WRITE is
// fenced (it leaves once the RDMA READs before it have completed).
//
// Owner thread only. The post function is ibv_post_send on the QP, or a fake in tests.
#include <infiniband/verbs.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "server/connection_stats.h"
#include "transport/work_chain.h"

namespace ublkrdma::server {

// Per tag at most two send-queue entries wait to be posted (RDMA WRITE + SEND).
inline constexpr uint32_t kWrsPerTag = 2;
inline constexpr uint32_t kSignalEvery = 16;
inline constexpr uint32_t kSqSlack = 2 * kSignalEvery;
static_assert(4096 * kWrsPerTag + kSqSlack <= 0xffff);
// WorkId::op of the zero-length RDMA WRITE that drains the send queue at shutdown.
inline constexpr uint8_t kDrainWriteOp = 1;
// ... and of the one that probes a silent peer (its completion says the peer still acknowledges).
inline constexpr uint8_t kProbeWriteOp = 2;

struct SendQueueConfig {
  uint16_t depth = 0;
  uint16_t queue_id = 0;
  bool batch = false;       // answers share SENDs (BATCH)
  uint32_t max_inline = 0;  // bytes a SEND may carry inline (0: never inline)
  uint32_t answer_lkey = 0;  // of the slots answers are encoded in
};

class SendQueue {
 public:
  using PostSend = std::function<int(ibv_send_wr* first, ibv_send_wr** bad)>;

  SendQueue(const SendQueueConfig& config, PostSend post, ConnectionStats& stats);

  // The send queue's size in work requests (the QP's send_wrs).
  static uint32_t capacity(uint16_t depth) { return uint32_t(depth) * kWrsPerTag + kSqSlack; }

  // An RDMA READ or WRITE at the end of the chain; the caller fills in the rest.
  ibv_send_wr& rdma(uint64_t wr_id, ibv_wr_opcode op, uint64_t local, uint32_t length, uint32_t lkey,
                    uint64_t remote, uint32_t rkey);
  // Encoded Responses to send after everything queued so far (see the kinds in command_pipeline.h).
  void answer(const uint8_t* slot) { answers_.push_back(slot); }
  void fenced_answer(const uint8_t* slot) { fenced_answers_.push_back(slot); }
  // An answer in a scratch slot (a refusal): one inline SEND of its own.
  void scratch_answer(const uint8_t* slot) { scratch_answers_.push_back(slot); }
  // The same for a KEEP_ALIVE's answer, which is not counted as an answer to a command.
  void keep_alive_answer(const uint8_t* slot) { keep_alive_answers_.push_back(slot); }

  // Commands are taken on only while their answers fit: `commands` more would.
  bool has_room(size_t commands) const {
    return chain_.size() + scratch_answers_.size() + keep_alive_answers_.size() + answers_.size() +
               fenced_answers_.size() + commands * kWrsPerTag <=
           size_t(config_.depth) * kWrsPerTag;
  }
  // Nothing is waiting to be posted.
  bool empty() const {
    return chain_.empty() && scratch_answers_.empty() && keep_alive_answers_.empty() && answers_.empty() &&
           fenced_answers_.empty();
  }

  // Turns the queued answers into SENDs and posts the front of the chain that fits, with one
  // doorbell (every work request signaled with `signal_all`). Returns the post's result.
  int flush(bool signal_all);
  // A signaled work request completed. False when none was outstanding.
  bool retire() { return budget_.retire(); }
  // Work requests posted and not yet retired.
  size_t used() const { return budget_.used(); }
  // At shutdown, with nothing left to post: true once every posted work request has
  // completed, counted (no timer). While an unsignaled tail is out, queues one signaled
  // zero-length RDMA WRITE (for the next flush) whose completion retires it.
  bool drained();
  // Queues a signaled zero-length RDMA WRITE (kProbeWriteOp) for the next flush: it completes
  // once the peer's transport acknowledged it, or fails when the peer is gone.
  void probe();
  // The QP failed: nothing queued will be posted.
  void clear();

 private:
  void queue_answers();
  ibv_send_wr& append_answer_send(const uint8_t* slot, bool counted = true);

  const SendQueueConfig config_;
  const PostSend post_;
  ConnectionStats& stats_;
  transport::SendBudget budget_;
  transport::SendChain chain_;
  std::vector<const uint8_t*> scratch_answers_;
  std::vector<const uint8_t*> keep_alive_answers_;
  std::vector<const uint8_t*> answers_;
  std::vector<const uint8_t*> fenced_answers_;
};

}  // namespace ublkrdma::server
