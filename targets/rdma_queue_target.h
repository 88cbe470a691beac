#pragma once
// The rdma queue target's class, shared by its two source files: rdma_queue.cc (requests by
// tag, matching answers to them) and rdma_queue_recovery.cc (a lost connection's requests held
// and reissued, reconnecting, the timers, the stats). Internal to targets/.
#include <atomic>
#include <deque>
#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include "targets/connection_recovery.h"
#include "targets/rdma_connection.h"
#include "targets/rdma_target.h"
#include "targets/reconnector.h"
#include "ublk/queue_target.h"

namespace ublkrdma::targets {

// Ticks of the IO timer per io_timeout: a request times out between 1x and 1.25x io_timeout.
inline constexpr uint32_t kTicksPerTimeout = 4;
// Ticks of the keepalive timer per keepalive timeout. A KEEP_ALIVE goes out on every tick unless
// one is out already; the connection counts as lost on the kTicksPerKeepAlive-th tick after the
// last answer, so a server that stops is detected within the timeout (the last answer came
// before it stopped) and a live one has three ticks to answer one.
inline constexpr uint32_t kTicksPerKeepAlive = 4;

class RdmaQueueTarget final : public ublk::QueueTarget, private RdmaConnectionEvents {
 public:
  RdmaQueueTarget(std::vector<RdmaConnection> connections, const RdmaTargetOptions& opts, uint16_t conns_per_path,
                  uint16_t queue_id, uint64_t session_id);
  ~RdmaQueueTarget() override;

  void start_st(ublk::QueueContext& ctx) override;
  void submit_st(const ublk::IoRequest& req) override;
  int poll_st() override;
  ublk::IdleAdvice idle_advice_st() const override;
  bool prepare_to_sleep_st() override;
  void on_fd_ready_st(uint8_t token) override;
  void on_device_stopping_st() override;
  void stop_st() override;
  std::string stats_json() const override;

 private:
  // --- rdma_queue.cc: the IO path
  void fail_now(uint16_t tag, int err);
  // Puts request `tag` (ios_[tag]) on a live connection with a free slot, holds it while there
  // is none, or fails it when the queue fails IO.
  void dispatch_st(uint16_t tag);
  // The live connection with the fewest requests, if it has a free slot (with every connection
  // live it always has one: each carries its share of the depth).
  bool pick_connection_st(size_t& index) const;
  void choose_active_path_st();
  size_t path_of(size_t connection) const { return connection / conns_per_path_; }
  void send_on_st(uint16_t tag, size_t index);
  void hold_st(uint16_t tag);
  void complete_tag_st(uint16_t tag, int result);
  void answered_st(uint16_t tag, int result);
  void post_all_st();
  int poll_connections_st();
  bool awaits_answer_st(uint16_t tag, uint8_t op) const;
  void on_answer_st(const RdmaConnection& c, const wire::Response& r) override;
  void on_read_done_st(const RdmaConnection& c, const wire::ReadDone& d) override;
  void on_pull_done_st(const WorkId& id) override;
  void on_fenced_write_done_st(uint16_t tag) override;
  void on_window_closed_st(const WorkId& id) override;
  void on_connection_failed_st(const RdmaConnection& c, const char* why) override;
  void on_export_size_st(uint64_t bytes) override;

  // --- rdma_queue_recovery.cc
  void handle_cm_events_st(size_t index);
  void handle_io_timer_st();
  void handle_keep_alive_timer_st();
  void housekeeping_st();
  // Connection `index` is unusable: take it out of service, take back its requests (held, or
  // sent at once on the queue's other connections) and start recovering it.
  void connection_lost_st(size_t index, const char* why, bool device_removed = false);
  // Held requests go out, oldest first, while live connections have free slots; they fail if
  // no connection is live and the queue fails IO.
  void drain_held_st();
  void fail_held_st(const char* why);
  bool fails_io_st(RecoveryClock::time_point now) const;
  void handle_recovery_timer_st();
  void release_parked_st();
  void handle_reconnected_st();
  void replace_connection_st(size_t index, std::unique_ptr<RdmaConnection> c);
  bool same_export(const wire::AcceptData& a) const;
  void arm_recovery_timer_st(bool on);
  Reconnector& reconnector_st();

  RdmaTargetOptions opts_;
  uint16_t queue_id_;
  uint16_t depth_;
  uint64_t session_id_;
  uint16_t conns_per_path_;
  // Failover: the path whose connections carry the requests; kAllPaths with round-robin or one path.
  static constexpr size_t kAllPaths = SIZE_MAX;
  size_t active_path_ = kAllPaths;
  std::atomic<size_t> active_path_gauge_{0};  // active_path_ for the stats thread
  ublk::QueueContext* ctx_ = nullptr;
  uint32_t max_io_ = 0;
  wire::AcceptData accepted_;  // what the first connection was granted: every later one must match
  bool push_writes_ = false;   // WRITE data goes by our RDMA WRITE into the export (PUSH_WRITES)
  bool pull_reads_ = false;    // READ data comes by our RDMA READ from the export (PULL_READS)
  bool fence_writes_ = false;  // pushed WRITEs send no command: an RDMA READ fence completes them
  bool stopped_ = false;
  bool deleting_ = false;  // the device is being deleted: held requests fail instead of waiting

  std::vector<RdmaRequest> requests_;  // by ublk tag
  std::vector<ublk::IoRequest> ios_;   // by ublk tag: what the kernel asked, to send it again
  uint32_t inflight_ = 0;              // tags the queue holds (queued, in flight or held)
  uint32_t next_generation_ = 0;       // one counter for the queue: a slot passes between tags
  std::deque<uint16_t> held_;          // tags waiting for a slot on a live connection (kHeld)
  std::atomic<uint32_t> held_gauge_{0};  // held_.size() for the stats thread

  RdmaQueueSetup setup_;
  std::vector<std::unique_ptr<RdmaConnection>> connections_;
  std::unique_ptr<ConnectionRecovery[]> recovery_;  // by connection
  size_t live_ = 0;                                 // connections in ConnectionState::kLive
  size_t pending_ = 0;  // tags encoded but not yet posted, over all connections
  std::unique_ptr<Reconnector> reconnector_;
  // Lost connections whose port was down: their rdma_cm ids wait for it to come up before they
  // disconnect and go (checked on the recovery timer).
  std::vector<std::unique_ptr<transport::Connection>> parked_;

  UniqueFd io_timer_;
  uint32_t tick_ = 0;
  UniqueFd keep_alive_timer_;
  UniqueFd recovery_timer_;
  bool recovery_timer_armed_ = false;
  uint32_t polls_since_housekeeping_ = 0;
  RdmaCounters counters_;
};

}  // namespace ublkrdma::targets
