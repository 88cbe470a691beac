#include "server/send_queue.h"

#include <algorithm>

#include "base/work_id.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {

SendQueue::SendQueue(const SendQueueConfig& config, PostSend post, ConnectionStats& stats)
    : config_(config),
      post_(std::move(post)),
      stats_(stats),
      budget_(capacity(config.depth), kSignalEvery),
      // Room for every tag's work requests twice over: it only grows if a client floods
      // commands while its answers cannot leave.
      chain_(size_t(config.depth) * kWrsPerTag * 2 + 2) {
  scratch_answers_.reserve(size_t(config.depth) * kWrsPerTag + kWrsPerTag);
  keep_alive_answers_.reserve(1);
  answers_.reserve(config.depth);
  fenced_answers_.reserve(config.depth);
}

ibv_send_wr& SendQueue::rdma(uint64_t wr_id, ibv_wr_opcode op, uint64_t local, uint32_t length, uint32_t lkey,
                             uint64_t remote, uint32_t rkey) {
  ibv_send_wr& wr = chain_.append(local, length, lkey);
  wr.wr_id = wr_id;
  wr.opcode = op;
  wr.wr.rdma.remote_addr = remote;
  wr.wr.rdma.rkey = rkey;
  return wr;
}

int SendQueue::flush(bool signal_all) {
  queue_answers();
  auto posted = chain_.post(budget_, post_, signal_all);
  if (posted.wrs == 0 && posted.rc == 0) return 0;
  stats_.doorbells.add_st();
  stats_.max_post_batch.max_st(posted.wrs);
  stats_.sq_depth_max.max_st(budget_.used());
  return posted.rc;
}

// Refusals leave one per SEND, inline (their scratch slot is reused once the ring comes back
// to it). Answers to direct WRITEs go after every RDMA READ queued so far.
void SendQueue::queue_answers() {
  bool inline_ok = config_.max_inline >= wire::kResponseSize;
  for (const uint8_t* p : scratch_answers_) {
    ibv_send_wr& wr = append_answer_send(p);
    if (inline_ok) wr.send_flags = IBV_SEND_INLINE;
  }
  scratch_answers_.clear();
  for (const uint8_t* p : keep_alive_answers_) {
    ibv_send_wr& wr = append_answer_send(p, false);
    if (inline_ok) wr.send_flags = IBV_SEND_INLINE;
  }
  keep_alive_answers_.clear();
  size_t per_send = config_.batch ? wire::kMaxBatch : 1;
  size_t total = answers_.size() + fenced_answers_.size();
  bool fence_pending = !fenced_answers_.empty();
  for (size_t i = 0; i < total;) {
    size_t k = std::min(per_send, total - i);
    ibv_send_wr* wr = nullptr;
    bool fenced = false;
    for (size_t j = 0; j < k; ++j, ++i) {
      bool is_fenced = i >= answers_.size();
      const uint8_t* p = is_fenced ? fenced_answers_[i - answers_.size()] : answers_[i];
      fenced |= is_fenced;
      if (!wr) {
        wr = &append_answer_send(p);
      } else {
        chain_.add_sge(reinterpret_cast<uint64_t>(p), uint32_t(wire::kResponseSize), config_.answer_lkey);
      }
    }
    if (inline_ok && k * wire::kResponseSize <= config_.max_inline) wr->send_flags = IBV_SEND_INLINE;
    if (fenced && fence_pending) {
      wr->send_flags |= IBV_SEND_FENCE;
      fence_pending = false;
    }
  }
  answers_.clear();
  fenced_answers_.clear();
}

ibv_send_wr& SendQueue::append_answer_send(const uint8_t* p, bool counted) {
  ibv_send_wr& wr = chain_.append(reinterpret_cast<uint64_t>(p), uint32_t(wire::kResponseSize), config_.answer_lkey);
  wr.wr_id = WorkId{WorkKind::kRdmaSend, config_.queue_id, 0, 0, 0}.encode();
  wr.opcode = IBV_WR_SEND;
  if (counted) stats_.answer_sends.add_st();
  return wr;
}

bool SendQueue::drained() {
  if (budget_.quiescent()) return true;
  if (budget_.unsignaled_tail() > 0 && empty()) {
    // Nothing reports the unsignaled tail: a signaled work request after it will (send-queue
    // completions come in order). A zero-length RDMA WRITE moves no data and needs no rkey, as
    // in the kernel's ib_drain_sq; the next flush() posts it.
    ibv_send_wr& wr = chain_.append_empty();
    wr.wr_id = WorkId{WorkKind::kRdmaWrite, config_.queue_id, 0, kDrainWriteOp, 0}.encode();
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
  }
  return false;
}

void SendQueue::probe() {
  ibv_send_wr& wr = chain_.append_empty();
  wr.wr_id = WorkId{WorkKind::kRdmaWrite, config_.queue_id, 0, kProbeWriteOp, 0}.encode();
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = IBV_SEND_SIGNALED;
}

void SendQueue::clear() {
  chain_.clear();
  scratch_answers_.clear();
  keep_alive_answers_.clear();
  answers_.clear();
  fenced_answers_.clear();
}

}  // namespace ublkrdma::server
