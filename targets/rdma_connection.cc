#include "targets/rdma_connection.h"

#include <endian.h>

#include <algorithm>

#include "base/errors.h"
#include "base/log.h"
#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

using transport::Connection;

// With PULL_READS a READ takes one slot (its RDMA READ, no command), and a fenced WRITE one (its
// RDMA WRITE; the chain's fence is the one slot more that a WRITE with a command would take).
static_assert(ublk::kMaxQueueDepth * kWrsPerWindowedRequest + kSqSlack <= 0xffff,
              "send queue size must fit the QP limits we ask for");

constexpr int kPollBatch = 32;
// WorkId::op of the RDMA READ that fences a chain's fenced WRITEs (a pulled READ's op is kRead).
constexpr uint8_t kFenceOp = 0xff;
// What the fence reads: a few bytes of the last fenced WRITE's data, into that tag's command slot.
constexpr uint32_t kFenceBytes = 8;

const char* work_name(const WorkId& id) {
  switch (id.kind) {
    case WorkKind::kRdmaRecv: return "receive";
    case WorkKind::kRdmaWrite: return "RDMA WRITE of write data";
    case WorkKind::kRdmaRead: return id.op == kFenceOp ? "RDMA READ fencing WRITEs" : "RDMA READ of read data";
    case WorkKind::kRdmaBind: return "memory window binding";
    case WorkKind::kRdmaInvalidate: return "memory window invalidation";
    default: return "send";
  }
}

}  // namespace

RdmaConnection::RdmaConnection(std::unique_ptr<Connection> conn, MappedRegion msgs, ibv_mr* msgs_mr,
                               const wire::AcceptData& accepted, uint16_t depth, uint16_t recv_slots)
    : msgs_(std::move(msgs)), conn_(std::move(conn)), msgs_mr_(msgs_mr), accepted_(accepted), depth_(depth),
      recv_slots_(recv_slots) {}

RdmaConnection::~RdmaConnection() {
  if (conn_) conn_->close_st();
}

void RdmaConnection::start_st(const RdmaQueueSetup& setup, size_t index, RdmaCounters& counters) {
  setup_ = setup;
  index_ = index;
  counters_ = &counters;
  if (depth_ == 0) throw_setup("rdma queue {}: connection {} has depth 0", setup.queue_id, index);
  // The server reads write data from and writes read data into the slab: one MR per
  // connection, covering only the slab, open to the server for remote read+write; with windows
  // not open at all, only through the window each request binds over its own buffer.
  int access = IBV_ACCESS_LOCAL_WRITE | (setup.windows ? 0 : IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
  slab_mr_ = conn_->register_memory(setup.slab.data(), setup.slab.size(), access,
                                    fmt::format("queue {} IO slab (connection {})", setup.queue_id, index));
  if (setup.windows) {
    if (setup.buffer_bytes == 0 || setup.slab.size() % setup.buffer_bytes != 0)
      throw_setup("rdma queue {}: IO slab of {} bytes is not made of {}-byte buffers", setup.queue_id,
                  setup.slab.size(), setup.buffer_bytes);
    for (size_t off = 0; off < setup.slab.size(); off += setup.buffer_bytes)
      buffer_mrs_.push_back(conn_->register_memory(setup.slab.data() + off, setup.buffer_bytes,
                                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND,
                                                   fmt::format("queue {} IO buffer (connection {})", setup.queue_id,
                                                               index)));
  }
  // A read-only buffer only gives WRITE data: the server reads it, no one writes it.
  shared_mrs_.assign(setup.shared.size(), nullptr);
  for (size_t i = 0; i < setup.shared.size(); ++i) {
    const ublk::SharedRegion& r = setup.shared[i];
    if (!r.base) continue;
    int shared_access = setup.windows ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_READ;
    if (!r.read_only) shared_access |= IBV_ACCESS_LOCAL_WRITE | (setup.windows ? 0 : IBV_ACCESS_REMOTE_WRITE);
    shared_mrs_[i] = conn_->register_memory(r.base, r.size, shared_access,
                                            fmt::format("queue {} shared buffer {} (connection {})", setup.queue_id,
                                                        i, index));
  }
  if (setup.windows) {
    windows_.resize(depth_);
    window_rkeys_.resize(depth_);
    for (uint16_t i = 0; i < depth_; ++i) {
      windows_[i] = conn_->allocate_window(fmt::format("queue {} slot {} (connection {})", setup.queue_id, i, index));
      window_rkeys_[i] = windows_[i]->rkey;
    }
  }
  use_inline_ = conn_->max_inline() >= wire::kCommandSize;
  pending_.reserve(depth_);
  closing_.reserve(depth_);
  slots_ = ConnectionSlots(depth_);
  fenced_ring_.assign(depth_, 0);
  fence_sizes_.assign(size_t(depth_) + 1, 0);
  size_t capacity =
      size_t(depth_) * (setup.windows ? kWrsPerWindowedRequest : setup.push_writes ? kWrsPerRequest : 1) + kSqSlack;
  budget_ = transport::SendBudget(capacity, kSignalEvery);
  chain_ = transport::SendChain(capacity);
  reposts_ = transport::RecvChain(recv_slots_);
  command_tags_.reserve(depth_);
}

ibv_mr* RdmaConnection::window_mr(const RdmaRequest& t) const {
  if (t.shared_buffer >= 0) return shared_mrs_[size_t(t.shared_buffer)];
  return buffer_mrs_[(t.buffer - reinterpret_cast<uint64_t>(setup_.slab.data())) / setup_.buffer_bytes];
}

uint32_t RdmaConnection::next_window_rkey_st(uint16_t slot) {
  window_rkeys_[slot] = ibv_inc_rkey(window_rkeys_[slot]);
  return window_rkeys_[slot];
}

uint8_t* RdmaConnection::response_slot(uint16_t i) const {
  return static_cast<uint8_t*>(msgs_.get()) + size_t(i) * kRecvSlot;
}
uint8_t* RdmaConnection::command_slot(uint16_t slot) const {
  return static_cast<uint8_t*>(msgs_.get()) + size_t(recv_slots_) * kRecvSlot + size_t(slot) * kMsgSlot;
}

// Our own RDMA leads the chain: with PUSH_WRITES the RDMA WRITEs of the WRITEs' data (RC places
// them before the server sees any SEND behind them, so the data is in the export when its command
// arrives), with PULL_READS the READs' RDMA READs (signaled: their completion is the READ's).
// Fenced WRITEs send no command: after the chain's RDMA WRITEs one signaled RDMA READ of the
// export (the fence) completes only once the responder has executed every earlier RDMA WRITE on
// this QP (an RDMA READ never passes an RDMA WRITE), so their data is in the export's memory,
// where any later READ, from any queue, finds it; its completion completes them all.
size_t RdmaConnection::post_st(std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events) {
  if (failed_ || (pending_.empty() && closing_.empty())) return 0;
  const uint16_t queue_id = setup_.queue_id;
  size_t per_send = setup_.batch ? wire::kMaxBatch : 1;
  size_t room = budget_.room();
  // Invalidations first (each completes a request, and frees its slot), signaled: their
  // completion is their request's.
  size_t closed = std::min(closing_.size(), room);
  for (size_t i = 0; i < closed; ++i) {
    uint16_t tag = closing_[i];
    const RdmaRequest& t = requests[tag];
    ibv_send_wr& wr = chain_.append_empty();
    wr.wr_id = WorkId{WorkKind::kRdmaInvalidate, queue_id, tag, t.op, t.generation}.encode();
    wr.opcode = IBV_WR_LOCAL_INV;
    wr.invalidate_rkey = window_rkeys_[t.slot];
    wr.send_flags = IBV_SEND_SIGNALED;
  }
  room -= closed;
  // As many requests as their SENDs and our RDMA fit the send queue.
  size_t taken = 0, cmds = 0, own = 0;
  bool fence = false;
  while (taken < pending_.size()) {
    const RdmaRequest& t = requests[pending_[taken]];
    size_t o = own + (t.pushed || t.pulled || t.windowed ? 1 : 0) + (t.fenced && !fence ? 1 : 0);
    size_t c = cmds + (t.sends_command() ? 1 : 0);
    if (o + (c + per_send - 1) / per_send > room) break;
    own = o;
    cmds = c;
    fence = fence || t.fenced;
    ++taken;
  }
  if (taken == 0 && closed == 0) return 0;  // wait for a signaled completion to free slots
  command_tags_.clear();
  size_t pushes = 0, pulls = 0, fenced = 0, binds = 0;
  uint16_t last_fenced = 0;
  for (size_t i = 0; i < taken; ++i) {
    uint16_t tag = pending_[i];
    RdmaRequest& t = requests[tag];
    if (t.sends_command()) command_tags_.push_back(tag);
    if (t.windowed) {
      // Bound before the command that names it goes out: the server cannot use the key before.
      ibv_send_wr& wr = chain_.append_empty();
      wr.wr_id = WorkId{WorkKind::kRdmaBind, queue_id, tag, t.op, t.generation}.encode();
      wr.opcode = IBV_WR_BIND_MW;
      wr.bind_mw.mw = windows_[t.slot];
      wr.bind_mw.rkey = window_rkeys_[t.slot];
      // A READ's data is the server's to write, a WRITE's to read: never both.
      wr.bind_mw.bind_info = {window_mr(t), t.buffer, t.length,
                              t.op == uint8_t(wire::Opcode::kRead) ? IBV_ACCESS_REMOTE_WRITE : IBV_ACCESS_REMOTE_READ};
      ++binds;
      continue;
    }
    if (!t.pushed && !t.pulled) continue;
    ibv_send_wr& wr = chain_.append(t.buffer, t.length, data_mr(t.shared_buffer)->lkey);
    if (t.pulled) {
      wr.wr_id = WorkId{WorkKind::kRdmaRead, queue_id, tag, t.op, t.generation}.encode();
      wr.opcode = IBV_WR_RDMA_READ;
      wr.wr.rdma.remote_addr = accepted_.pull_source(t.offset);
      wr.send_flags = IBV_SEND_SIGNALED;
      t.state = RequestState::kInFlight;
      ++pulls;
    } else {
      wr.wr_id = WorkId{WorkKind::kRdmaWrite, queue_id, tag, t.op, t.generation}.encode();
      wr.opcode = IBV_WR_RDMA_WRITE;
      wr.wr.rdma.remote_addr = accepted_.push_target(t.slot, t.offset);
      ++pushes;
      if (t.fenced) {
        t.state = RequestState::kInFlight;
        fenced_ring_[fenced_tail_] = tag;
        fenced_tail_ = (fenced_tail_ + 1) % fenced_ring_.size();
        last_fenced = tag;
        ++fenced;
      }
    }
    wr.wr.rdma.rkey = accepted_.window_rkey;
  }
  if (fenced) {
    const RdmaRequest& t = requests[last_fenced];
    ibv_send_wr& wr = chain_.append(reinterpret_cast<uint64_t>(command_slot(t.slot)), kFenceBytes, msgs_mr_->lkey);
    wr.wr_id = WorkId{WorkKind::kRdmaRead, queue_id, last_fenced, kFenceOp, t.generation}.encode();
    wr.opcode = IBV_WR_RDMA_READ;
    wr.wr.rdma.remote_addr = accepted_.push_target(t.slot, t.offset);
    wr.wr.rdma.rkey = accepted_.window_rkey;
    wr.send_flags = IBV_SEND_SIGNALED;
    fence_sizes_[fence_tail_] = uint16_t(fenced);
    fence_tail_ = (fence_tail_ + 1) % fence_sizes_.size();
  }
  size_t sends = 0;
  for (size_t next = 0; next < cmds; ++sends) {
    size_t k = std::min(per_send, cmds - next);
    uint16_t first = command_tags_[next];
    ibv_send_wr* wr = nullptr;
    for (size_t j = 0; j < k; ++j, ++next) {
      RdmaRequest& t = requests[command_tags_[next]];
      uint64_t addr = reinterpret_cast<uint64_t>(command_slot(t.slot));
      if (j == 0) {
        wr = &chain_.append(addr, uint32_t(wire::kCommandSize), msgs_mr_->lkey);
      } else {
        chain_.add_sge(addr, uint32_t(wire::kCommandSize), msgs_mr_->lkey);
      }
      t.state = RequestState::kInFlight;
    }
    wr->wr_id = WorkId{WorkKind::kRdmaSend, queue_id, first, requests[first].op, requests[first].generation}.encode();
    wr->opcode = IBV_WR_SEND;
    if (use_inline_ && k * wire::kCommandSize <= conn_->max_inline()) {
      wr->send_flags |= IBV_SEND_INLINE;
      counters_->inline_sends.add_st();
    }
  }
  size_t total = chain_.size();
  // The chain was sized to the room: all of it goes out, with one doorbell.
  auto posted = chain_.post(budget_, [this](ibv_send_wr* first, ibv_send_wr** bad) {
    return ibv_post_send(conn_->qp(), first, bad);
  });
  // A binding gave the window its new key; a provider that checks the key a binding replaces
  // (rxe) takes it from the ibv_mw, which only ibv_bind_mw updates by itself.
  if (binds) {
    for (size_t i = 0; i < taken; ++i) {
      const RdmaRequest& t = requests[pending_[i]];
      if (t.windowed) windows_[t.slot]->rkey = window_rkeys_[t.slot];
    }
  }
  RdmaCounters& c = *counters_;
  c.doorbells.add_st();
  c.max_post_batch.max_st(taken);
  c.commands.add_st(cmds);
  c.command_sends.add_st(sends);
  c.pushed_writes.add_st(pushes);
  c.pulled_reads.add_st(pulls);
  c.fenced_writes.add_st(fenced);
  c.fences.add_st(fenced ? 1 : 0);
  c.window_binds.add_st(binds);
  c.window_invalidations.add_st(closed);
  c.signaled_sends.add_st(posted.signaled);
  c.sq_depth_max.max_st(budget_.used());
  pending_.erase(pending_.begin(), pending_.begin() + ptrdiff_t(taken));
  closing_.erase(closing_.begin(), closing_.begin() + ptrdiff_t(closed));
  if (posted.rc != 0 || posted.wrs != total) {
    chain_.clear();
    log::rdma()->error("queue {}: ibv_post_send of {} requests failed: {}", queue_id, taken, errno_text(posted.rc));
    events.on_connection_failed_st(*this, "posting commands failed");
  }
  return taken + closed;
}

int RdmaConnection::poll_st(const std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events) {
  if (!conn_ || conn_->closed()) return 0;
  ibv_wc wcs[kPollBatch];
  int n = ibv_poll_cq(conn_->cq(), kPollBatch, wcs);
  RdmaCounters& c = *counters_;
  c.polls.add_st();
  if (n <= 0) {
    if (n < 0) {
      log::rdma()->error("queue {}: ibv_poll_cq: {}", setup_.queue_id, errno_text(-n));
      events.on_connection_failed_st(*this, "polling the CQ failed");
    }
    c.idle_polls.add_st();
    return 0;
  }
  c.max_poll_batch.max_st(uint64_t(n));
  // Once the connection failed its requests belong to the queue again (reissued elsewhere):
  // nothing more it reaped may complete one.
  for (int i = 0; i < n && !failed_; ++i) {
    const ibv_wc& wc = wcs[i];
    WorkId id = WorkId::decode(wc.wr_id);
    if (wc.status != IBV_WC_SUCCESS) {
      log::rdma()->error("queue {}: {} completion failed: {} (vendor error {:#x})", setup_.queue_id, work_name(id),
                         ibv_wc_status_str(wc.status), wc.vendor_err);
      events.on_connection_failed_st(*this, "work request failed");
      continue;
    }
    if (id.kind == WorkKind::kRdmaRecv) {
      handle_receive_st(wc, events);
      if (!failed_ && id.tag < depth_)
        reposts_.add(wc.wr_id, reinterpret_cast<uint64_t>(response_slot(id.tag)), uint32_t(kRecvSlot), msgs_mr_->lkey);
      continue;
    }
    // Send-queue completions come in posting order: this is the oldest signaled one.
    budget_.retire();
    if (id.kind == WorkKind::kRdmaRead) {
      if (id.op == kFenceOp) {
        handle_fence_done_st(requests, events);
      } else {
        events.on_pull_done_st(id);
      }
    } else if (id.kind == WorkKind::kRdmaInvalidate) {
      events.on_window_closed_st(id);
    }
  }
  size_t reposts = reposts_.size();
  if (reposts && !failed_) {
    if (int rc = reposts_.post([this](ibv_recv_wr* first, ibv_recv_wr** bad) {
          return ibv_post_recv(conn_->qp(), first, bad);
        })) {
      log::rdma()->error("queue {}: reposting {} receives failed: {}", setup_.queue_id, reposts, errno_text(rc));
      events.on_connection_failed_st(*this, "reposting receives failed");
    } else {
      c.recv_reposts.add_st(reposts);
    }
  }
  reposts_.clear();
  return n;
}

// One receive: a Response, or with BATCH up to kMaxBatch of them back to back; or a ReadDone.
void RdmaConnection::handle_receive_st(const ibv_wc& wc, RdmaConnectionEvents& events) {
  WorkId id = WorkId::decode(wc.wr_id);
  if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
    if (!setup_.read_imm || !(wc.wc_flags & IBV_WC_WITH_IMM)) {
      log::rdma()->error("queue {}: RDMA WRITE WITH IMMEDIATE the server did not negotiate: protocol error",
                         setup_.queue_id);
      return events.on_connection_failed_st(*this, "unexpected immediate");
    }
    return events.on_read_done_st(*this, wire::decode_read_done(be32toh(wc.imm_data)));
  }
  size_t n = wire::messages_in(wc.byte_len, wire::kResponseSize, setup_.batch);
  if (id.tag >= recv_slots_ || n == 0) {
    log::rdma()->error("queue {}: answer of {} bytes in slot {}: protocol error", setup_.queue_id, wc.byte_len, id.tag);
    return events.on_connection_failed_st(*this, "malformed response");
  }
  for (size_t i = 0; i < n && !failed_; ++i) {
    const uint8_t* p = response_slot(id.tag) + i * wire::kResponseSize;
    auto d = wire::decode_response(std::span<const uint8_t>(p, wire::kResponseSize));
    if (!d.ok()) {
      log::rdma()->error("queue {}: malformed response: {}", setup_.queue_id, wire::decode_error_text(d.error));
      return events.on_connection_failed_st(*this, "malformed response");
    }
    if (d.value.opcode != wire::Opcode::kKeepAlive) {
      counters_->answers.add_st();
      events.on_answer_st(*this, d.value);
    } else if (!handle_keep_alive_answer_st(d.value)) {
      log::rdma()->error("queue {}: KEEP_ALIVE answer (tag {}, generation {}, status {}) not asked for: protocol error",
                         setup_.queue_id, d.value.tag, d.value.generation, d.value.status);
      return events.on_connection_failed_st(*this, "unexpected keepalive answer");
    } else if (d.value.export_sectors != 0) {
      events.on_export_size_st(d.value.export_sectors * 512);
    }
  }
}

bool RdmaConnection::handle_keep_alive_answer_st(const wire::Response& r) {
  if (!keep_alive_outstanding_ || r.tag != depth_ || r.generation != keep_alive_generation_ || r.status != 0)
    return false;
  keep_alive_outstanding_ = false;
  keep_alive_silent_ = 0;
  counters_->keep_alives.add_st();
  return true;
}

bool RdmaConnection::keep_alive_tick_st(uint32_t max_silent, RdmaConnectionEvents& events) {
  if (failed_ || !keep_alive()) return true;
  // Counted from the last answer, not from the last send: a full send queue delaying one does
  // not delay the verdict.
  if (++keep_alive_silent_ >= max_silent) return false;
  if (keep_alive_outstanding_) return true;
  // The chain is empty between passes (post_st posts all it builds); wait a tick for room.
  if (budget_.room() == 0) return true;
  keep_alive_generation_ = wire::next_generation(keep_alive_generation_);
  wire::Command cmd;
  cmd.opcode = wire::Opcode::kKeepAlive;
  cmd.tag = depth_;
  cmd.generation = keep_alive_generation_;
  uint8_t* slot = command_slot(depth_);
  wire::encode_into(cmd, std::span<uint8_t, wire::kCommandSize>(slot, wire::kCommandSize));
  ibv_send_wr& wr = chain_.append(reinterpret_cast<uint64_t>(slot), uint32_t(wire::kCommandSize), msgs_mr_->lkey);
  wr.wr_id = WorkId{WorkKind::kRdmaSend, setup_.queue_id, depth_, uint8_t(cmd.opcode), cmd.generation}.encode();
  wr.opcode = IBV_WR_SEND;
  if (use_inline_) wr.send_flags = IBV_SEND_INLINE;
  auto posted = chain_.post(budget_, [this](ibv_send_wr* first, ibv_send_wr** bad) {
    return ibv_post_send(conn_->qp(), first, bad);
  });
  chain_.clear();
  if (posted.rc != 0 || posted.wrs != 1) {
    log::rdma()->error("queue {}: posting a KEEP_ALIVE failed: {}", setup_.queue_id, errno_text(posted.rc));
    events.on_connection_failed_st(*this, "posting a keepalive failed");
    return true;
  }
  keep_alive_outstanding_ = true;
  return true;
}

// The fence behind a chain's fenced WRITEs completed: their data is in the export. Fences
// complete in posting order, so the oldest outstanding fence's WRITEs are the next in the ring.
void RdmaConnection::handle_fence_done_st(const std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events) {
  if (fence_head_ == fence_tail_) {
    log::rdma()->error("queue {}: a write fence completed with none outstanding", setup_.queue_id);
    return events.on_connection_failed_st(*this, "unexpected fence completion");
  }
  uint16_t n = fence_sizes_[fence_head_];
  fence_head_ = (fence_head_ + 1) % fence_sizes_.size();
  for (uint16_t i = 0; i < n && !failed_; ++i) {
    uint16_t tag = fenced_ring_[fenced_head_];
    fenced_head_ = (fenced_head_ + 1) % fenced_ring_.size();
    const RdmaRequest& t = requests[tag];
    if (t.state != RequestState::kInFlight || !t.fenced) {
      log::rdma()->error("queue {}: fenced WRITE tag {} not in flight (state {})", setup_.queue_id, tag, int(t.state));
      return events.on_connection_failed_st(*this, "write fence out of step");
    }
    events.on_fenced_write_done_st(tag);
  }
}

int RdmaConnection::arm_st() {
  if (cq_armed_ || !expects_completions()) return 0;
  if (int rc = conn_->arm_cq_st(); rc < 0) return rc;
  cq_armed_ = true;
  counters_->cq_arms.add_st();
  return 0;
}

unsigned RdmaConnection::consume_cq_events_st() {
  unsigned n = 0;
  if (!conn_) return 0;
  while (conn_->consume_cq_event_st()) ++n;
  cq_armed_ = false;
  return n;
}

bool RdmaConnection::fail_st() {
  failed_ = true;
  pending_.clear();
  closing_.clear();
  chain_.clear();
  conn_->disconnect_st();
  bool safe = conn_->quiesce_st(nullptr, std::chrono::milliseconds(1000)) != transport::Quiesced::kLive;
  if (safe) budget_.reset();
  return safe;
}

std::unique_ptr<transport::Connection> RdmaConnection::release_st(bool device_removed) {
  failed_ = true;
  msgs_mr_ = slab_mr_ = nullptr;
  windows_.clear();  // owned by conn_, like the MRs: nothing may name them once it goes
  buffer_mrs_.clear();
  shared_mrs_.clear();
  if (conn_ && conn_->disconnect_pending() && !device_removed) {
    conn_->close_st();
    return std::move(conn_);
  }
  conn_.reset();
  return nullptr;
}

bool RdmaConnection::close_st() {
  failed_ = true;
  return !conn_ || conn_->close_st() != transport::Quiesced::kLive;
}

}  // namespace ublkrdma::targets
