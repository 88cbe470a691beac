#pragma once
// One RC connection of an rdma queue, and everything that travels on it: its QP and CQ (in
// transport::Connection), its message slots, the queue's IO slab registered on its PD, the
// slots that name its requests on the wire, its send-queue budget, the chain of work requests a
// pass posts with one doorbell, its receives, and its write fences. The queue target keeps the
// requests' state (by ublk tag) and matches answers to them; a connection can be torn down and
// built again without touching the rest of the queue.
//
// A queue has one connection or more (add --conns-per-queue); each request travels on the one
// it was given at submission, with its data, command, answer or fence all on that QP, so the RC
// ordering a fence relies on (an RDMA READ behind the RDMA WRITEs it proves) holds. On the wire
// a request is named by its slot on the connection (0..depth-1), not by its ublk tag.
//
// Made on the daemon's main thread (connect_rdma_connection), then owned by the queue thread:
// functions ending in _st are for that thread only.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/work_id.h"
#include "targets/connection_slots.h"
#include "targets/rdma_counters.h"
#include "targets/rdma_request.h"
#include "targets/rdma_target.h"
#include "transport/connection.h"
#include "transport/send_budget.h"
#include "transport/wire_protocol.h"
#include "transport/work_chain.h"
#include "ublk/queue_target.h"

namespace ublkrdma::targets {

class RdmaConnection;

// What a connection reports to its queue while polling.
class RdmaConnectionEvents {
 public:
  virtual ~RdmaConnectionEvents() = default;
  virtual void on_answer_st(const RdmaConnection& c, const wire::Response& r) = 0;
  virtual void on_read_done_st(const RdmaConnection& c, const wire::ReadDone& d) = 0;
  // Our RDMA READ of a READ's data completed (its wr_id names the tag and generation).
  virtual void on_pull_done_st(const WorkId& id) = 0;
  // A fence proved this fenced WRITE's data placed.
  virtual void on_fenced_write_done_st(uint16_t tag) = 0;
  // The memory window of an answered request (its wr_id names the tag and generation) is
  // invalidated: the server can no longer reach its buffer.
  virtual void on_window_closed_st(const WorkId& id) = 0;
  // The connection is unusable (a failed work request, a malformed message, a failed post).
  virtual void on_connection_failed_st(const RdmaConnection& c, const char* why) = 0;
  // The server says the export is `bytes` long now (v10: in a KEEP_ALIVE answer; it was resized).
  virtual void on_export_size_st(uint64_t bytes) = 0;
};

// What a queue's connections share, fixed when the queue starts.
struct RdmaQueueSetup {
  uint16_t queue_id = 0;
  std::span<std::byte> slab;  // the queue's IO buffers, registered on every connection
  size_t buffer_bytes = 0;    // one tag's buffer in it: tag t's is at t * buffer_bytes
  bool batch = false;         // SENDs carry up to kMaxBatch commands / Responses
  bool read_imm = false;      // the server completes successful READs with ReadDone immediates
  bool push_writes = false;   // a WRITE's data may go first by our RDMA WRITE
  // add --mr-per-io: the slab is not open to the server; a request it moves gets a memory window
  // over its buffer alone, bound before its command and invalidated before it completes.
  bool windows = false;
  // add --shmem-buf: the application's buffers, by index, registered on every connection like the
  // slab: a zero-copy request's data moves straight between them and the server.
  std::span<const ublk::SharedRegion> shared;
};

class RdmaConnection {
 public:
  // The connection to the server, made by connect_rdma_connection.
  RdmaConnection(std::unique_ptr<transport::Connection> conn, MappedRegion msgs, ibv_mr* msgs_mr,
                 const wire::AcceptData& accepted, uint16_t depth, uint16_t recv_slots);
  RdmaConnection(RdmaConnection&&) = default;
  ~RdmaConnection();

  const wire::AcceptData& accepted() const { return accepted_; }
  uint16_t depth() const { return depth_; }
  uint32_t max_inline() const { return conn_->max_inline(); }
  std::string peer_address() const { return conn_ ? conn_->peer_address() : std::string("(released)"); }
  std::string device_name() const { return conn_->device_name(); }
  int cq_fd() const { return conn_->cq_fd(); }
  int cm_fd() const { return conn_->cm_fd(); }

  // --- queue thread
  // Registers the slab and sizes the per-connection state. Throws SetupError.
  void start_st(const RdmaQueueSetup& setup, size_t index, RdmaCounters& counters);

  size_t index() const { return index_; }  // in its queue
  uint32_t in_use() const { return slots_.in_use(); }
  bool full() const { return slots_.full(); }
  uint16_t tag_of(uint16_t slot) const { return slots_.tag_of(slot); }
  // The key the server reaches a request's data with, in the slab or shared buffer `shared`
  // (without windows).
  uint32_t rkey_for(int16_t shared) const { return data_mr(shared)->rkey; }
  // Takes a slot for `tag`: its name on the wire. The caller checks !full().
  uint16_t take_slot_st(uint16_t tag) { return slots_.take(tag); }
  void release_slot_st(uint16_t slot) { slots_.release(slot); }
  // Where the command of the request in `slot` is encoded before it is posted.
  uint8_t* command_slot(uint16_t slot) const;
  // With windows: the rkey the window of `slot` will have once bound for its next request (the
  // command carries it). The key's low byte changes with every binding, so a key the server
  // kept from an earlier request no longer matches.
  uint32_t next_window_rkey_st(uint16_t slot);
  // The request `tag` (encoded, kQueued) goes out with the next post_st.
  void queue_st(uint16_t tag) { pending_.push_back(tag); }
  // The answered request `tag` (kClosing) has its window invalidated with the next post_st.
  void queue_close_st(uint16_t tag) { closing_.push_back(tag); }
  // Work waiting for the next post_st: requests and window invalidations.
  size_t pending() const { return pending_.size() + closing_.size(); }

  // Posts as many queued requests as the send queue has room for with one ibv_post_send: one
  // SEND per command (with BATCH up to kMaxBatch per SEND), led by the window invalidations
  // queued and by our own RDMA (pushed WRITEs' data, pulled READs) and window bindings, and a
  // fence behind the chain's fenced WRITEs. Returns how many requests and invalidations it
  // posted; a failed post is reported through `events`.
  size_t post_st(std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events);

  // Whether a completion may still come: only such connections are polled and armed, so a
  // queue at low depth pays for one CQ, not for all of them.
  bool expects_completions() const {
    return slots_.in_use() > 0 || budget_.signal_outstanding() || keep_alive_outstanding_;
  }

  // Whether the server answers KEEP_ALIVE on this connection (v8, negotiated).
  bool keep_alive() const { return accepted_.keep_alive(); }
  // One tick of the queue's keepalive timer: sends a KEEP_ALIVE unless one is out (or the send
  // queue is full: next tick); false once `max_silent` ticks have passed since the last answer
  // to one (the server is stopped or gone). A failed post is reported through `events`.
  bool keep_alive_tick_st(uint32_t max_silent, RdmaConnectionEvents& events);
  // Polls the CQ once and reports what completed; returns how many completions it reaped.
  int poll_st(const std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events);
  // Asks for a completion event unless one is asked for already; -errno on failure.
  int arm_st();
  // Takes the completion events off the channel after a wakeup; returns how many.
  unsigned consume_cq_events_st();
  std::optional<transport::CmEventInfo> poll_cm_event_st() {
    return conn_ ? conn_->poll_cm_event_st() : std::nullopt;
  }

  // The connection failed: posting and reposting stop, its queued requests are dropped (the
  // queue takes them back), and the QP is taken out of service (drained, or destroyed); false
  // when neither worked and the device may still write into the slab (the caller must not hand
  // the buffers back then).
  bool fail_st();
  // After a successful fail_st: releases everything it holds on the device (QP, CQ, PD, MRs,
  // rdma_cm id and channels); only failed() and the counters remain. While the port is down
  // the rdma_cm id cannot go yet (transport::Connection::disconnect_st): its QP and MRs go,
  // and the rest is handed back, for the caller to destroy once the port is up. Not when the
  // device is being removed: its removal waits until all of it is gone.
  std::unique_ptr<transport::Connection> release_st(bool device_removed);
  // Ends the connection for good (drain, destroy, deregister). False as fail_st.
  bool close_st();
  bool failed() const { return failed_; }

 private:
  uint8_t* response_slot(uint16_t i) const;
  // The MR over all of the slab or of shared buffer `shared` (>= 0): what our own RDMA names a
  // request's data by, and what the server reaches it through without windows.
  ibv_mr* data_mr(int16_t shared) const { return shared < 0 ? slab_mr_ : shared_mrs_[size_t(shared)]; }
  // What a request's window binds over: the MR of its tag buffer alone, or its shared buffer's.
  ibv_mr* window_mr(const RdmaRequest& t) const;
  void handle_receive_st(const ibv_wc& wc, RdmaConnectionEvents& events);
  bool handle_keep_alive_answer_st(const wire::Response& r);
  void handle_fence_done_st(const std::vector<RdmaRequest>& requests, RdmaConnectionEvents& events);

  // Declared before conn_: destroyed (unmapped) after it, so after the MRs on it are gone.
  MappedRegion msgs_;  // [depth receive slots][depth command slots]
  std::unique_ptr<transport::Connection> conn_;
  ibv_mr* msgs_mr_ = nullptr;
  ibv_mr* slab_mr_ = nullptr;
  // With setup_.windows: one window per slot and its rkey at the last binding, and one MR per
  // tag buffer (local access and binding only) for the windows to bind over. A device that
  // checks a window's access against its MR's range alone (rxe) then still confines it to the
  // buffer of the request it was bound for. All owned by conn_.
  std::vector<ibv_mw*> windows_;
  std::vector<uint32_t> window_rkeys_;
  std::vector<ibv_mr*> buffer_mrs_;
  std::vector<ibv_mr*> shared_mrs_;  // by shared buffer index (null: none), owned by conn_
  wire::AcceptData accepted_;
  uint16_t depth_ = 0;  // how many of the queue's requests it may hold at once
  uint16_t recv_slots_ = 0;  // receives posted: depth_, and one more where KEEP_ALIVE was asked for

  RdmaQueueSetup setup_;
  size_t index_ = 0;
  RdmaCounters* counters_ = nullptr;
  bool use_inline_ = false;
  bool cq_armed_ = false;
  bool failed_ = false;
  // KEEP_ALIVE: sent on the wire tag depth_ (command slot depth_), one at a time.
  bool keep_alive_outstanding_ = false;
  uint32_t keep_alive_generation_ = 0;
  uint32_t keep_alive_silent_ = 0;  // ticks since the last answer to one (or since the start)

  ConnectionSlots slots_;  // its requests (kQueued, kInFlight or kClosing), by their wire tag
  std::vector<uint16_t> pending_;  // tags encoded but not yet posted
  std::vector<uint16_t> closing_;  // answered tags whose windows wait to be invalidated
  transport::SendBudget budget_;
  transport::SendChain chain_;
  transport::RecvChain reposts_;
  std::vector<uint16_t> command_tags_;  // the tags of a chain that send a command
  // Fenced WRITEs in posting order, and per outstanding fence how many of them it completes.
  std::vector<uint16_t> fenced_ring_;
  size_t fenced_head_ = 0, fenced_tail_ = 0;
  std::vector<uint16_t> fence_sizes_;
  size_t fence_head_ = 0, fence_tail_ = 0;
};

// Connects one of the `conns` connections of queue `queue_id` on `path` (it carries at most its
// share of the depth) and checks what the server granted. Throws SetupError with the reason.
RdmaConnection connect_rdma_connection(const RdmaTargetOptions& o, const RdmaPath& path, uint16_t queue_id,
                                       uint16_t conns, uint64_t session_id);

// Send-queue slots per request a connection reserves: with PUSH_WRITES a WRITE takes two (its
// data's RDMA WRITE and its command), with windows a request three (the binding, its command
// and the invalidation).
inline constexpr uint32_t kWrsPerRequest = 2;
inline constexpr uint32_t kWrsPerWindowedRequest = 3;

// Every kSignalEvery-th work request is signaled; its completion retires the unsignaled ones
// before it. The send queue holds the in-flight requests plus two signaling windows, so a
// signaled one is always outstanding when the queue is close to full (no stall, no overflow).
inline constexpr uint32_t kSignalEvery = 16;
inline constexpr uint32_t kSqSlack = 2 * kSignalEvery;
// A connection's message memory: receive slots of kRecvSlot bytes, then command slots of
// kMsgSlot. A receive holds the largest answer message: kMaxBatch Responses once BATCH is
// negotiated (receives are posted before the server's answer says whether it is).
inline constexpr size_t kMsgSlot = 64;  // one cache line per command slot
static_assert(wire::kCommandSize <= kMsgSlot);
inline constexpr size_t kRecvSlot = wire::kMaxBatch * wire::kResponseSize;

}  // namespace ublkrdma::targets
