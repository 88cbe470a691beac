#pragma once
// One accepted connection (one client queue) with its CQ, QP, registered buffers and backend
// queue, served by the poll group it was assigned to (server/poll_group.h): the group's thread
// calls step() until the connection is done. A connection waits to be established, takes the
// client's authentication, then serves: completions, the backend, the send queue. At stop it
// finishes what is in flight, drains the send queue, then closes in order.
#include <poll.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "base/work_id.h"
#include "server/auth_limiter.h"
#include "server/authenticator.h"
#include "server/backend.h"
#include "server/command_pipeline.h"
#include "server/connection_stats.h"
#include "server/send_queue.h"
#include "server/server_options.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"
#include "transport/work_chain.h"

namespace ublkrdma::server {

// With serve --auth-keys: what a connection needs to authenticate its client (protocol v9).
struct ConnectionAuth {
  std::shared_ptr<const AuthKeys> keys;  // what context points into, kept past a reload
  AuthContext context;
  AuthLimiter* limiter = nullptr;  // failed exchanges are counted against the peer's address
  std::string peer_ip;
};

// A connection's life; Connection::step() is its one transition function.
enum class ConnectionPhase : uint8_t {
  kEstablishing,    // accepted: waiting for rdma_cm's ESTABLISHED (10 s)
  kAuthenticating,  // waiting for the AUTH_REQUEST, then for the AUTH_RESULT to leave (5 s)
  kServing,         // commands, until the peer goes, the QP fails or the server stops
  kClosing,         // the backend finishes what it holds; then the QP is drained and closed
  kDisconnecting,   // the port is down: the goodbye waits until it is up (or the server stops)
  kDone,            // its group lets go of it, and the listener destroys it
};

class Connection final : private CommandIo {
 public:
  // The QP sizes a connection with these accepted parameters needs.
  static transport::QpSizes qp_sizes(const wire::AcceptData& accepted);

  Connection(std::unique_ptr<transport::Connection> rdma, const Backend& backend, std::string export_name,
             const wire::AcceptData& accepted, uint8_t max_reads, uint16_t queue_id, const ServerOptions& opts,
             std::optional<ConnectionAuth> auth = std::nullopt);
  ~Connection() override;

  // On the listener thread, before accepting: buffers, MRs, backend queue, receives.
  void setup();
  // With PUSH_WRITES or PULL_READS, the window the ACCEPT grants (after setup(); with
  // authentication the AUTH_RESULT does, once the client has proved itself): the export's
  // memory, or with PUSH_SLOTS this connection's buffer pool (tag t's slot at t * max_io).
  void fill_window(uint32_t& rkey, uint64_t& addr) const;
  transport::Connection& rdma() { return *rdma_; }

  // ---- on its poll group's thread
  // One pass of the current phase; the work found (0 = idle).
  int step(bool stopping);
  ConnectionPhase phase() const { return phase_; }
  // Before the group sleeps: arms the completion channel and looks once more. False when
  // there is work now (or polling must go on).
  bool ready_to_sleep(bool stopping);
  // The fds to sleep on: kWatchFds entries appended (a negative fd is skipped by poll());
  // after the sleep, woken() gets the same entries back.
  static constexpr size_t kWatchFds = 3;
  void watch(std::vector<pollfd>& fds) const;
  void woken(const pollfd* fds);
  // How long to keep polling after a step() of this connection that found work.
  std::chrono::microseconds spin() const;
  // The group has let go of it (after kDone): the listener may destroy it.
  void release() { done_.store(true, std::memory_order_release); }

  bool done() const { return done_.load(std::memory_order_acquire); }
  // What it counts against the server's memory budget (Negotiation::memory_bytes), and whose.
  void set_budget(uint64_t memory_bytes, std::string peer_ip) {
    memory_bytes_ = memory_bytes;
    peer_ip_ = std::move(peer_ip);
  }
  uint64_t memory_bytes() const { return memory_bytes_; }
  // The poll group that serves it (set by the listener before the group takes it).
  void set_poll_group(unsigned index) { poll_group_ = index; }
  const std::string& peer_ip() const { return peer_ip_; }
  const std::string& peer() const { return peer_; }
  const ConnectionStats& stats() const { return stats_; }
  const std::string& export_name() const { return export_name_; }
  unsigned poll_group() const { return poll_group_; }
  nlohmann::json to_json() const;

  // For a reload of --auth-keys, on the listener thread. The keys it authenticates (or did)
  // against, null without authentication; the host it authenticated, "" until it has.
  const AuthKeys* auth_keys() const { return auth_ ? auth_->keys.get() : nullptr; }
  std::string authenticated_host() const {
    return authenticated_.load(std::memory_order_acquire) ? host_id_ : std::string();
  }
  // The reload took its access away: it closes at its group's next pass (wake the group), and
  // its client's next attempt authenticates against the new keys.
  void revoke() { revoked_.store(true, std::memory_order_relaxed); }

 private:
  // Receives in a row that each brought one command, with no other command in flight or in
  // the send queue: the peer waits for every answer before it sends again (QD1), and polling
  // catches its next command one round trip after our answer.
  static constexpr uint32_t kSerialStreak = 8;

  // A client has this long after establishment to authenticate; a silent one holds a
  // connection (within --max-connections) no longer than that.
  static constexpr std::chrono::seconds kAuthTimeout{5};

  // ------------------------------------------------------------------ phases
  int establish_step(bool stopping);
  // connection_auth.cc: takes the AUTH_REQUEST, answers it, opens the window on success.
  int authenticate_step(bool stopping);
  int auth_failed(std::string_view why);
  void open_window();
  int serve_step(bool stopping);
  int close_step();
  int disconnect_step(bool stopping);
  void handle_cm_events();
  void fail(const char* why);
  void probe_peer_if_silent();

  // ------------------------------------------------------------------ completions
  int poll_cq();
  int poll_backend();
  void note_arrivals(size_t commands);
  size_t commands_in(uint32_t byte_len) const;
  void on_message(uint16_t slot, uint32_t byte_len);
  void park(uint16_t slot, uint32_t byte_len);
  int resume_parked();

  // ------------------------------------------------------------------ posting
  void queue_recv(uint16_t slot);
  void post_recvs();
  void flush();

  // CommandIo
  void queue_rdma_read(const wire::Command& cmd, ReadKind kind) override;
  void queue_rdma_write(const wire::Command& cmd, bool read_done) override;
  void queue_answer(const wire::Command& cmd, int err, AnswerKind kind) override;
  int submit_backend(const wire::Command& cmd) override;
  uint64_t export_size() const override { return backend_.size(); }

  // msgs_: [recv_slots_ receive slots][depth response slots][scratch response slots]
  uint8_t* recv_slot(uint16_t i) const;
  uint8_t* resp_slot(uint16_t tag) const;
  size_t scratch_slots() const;
  uint8_t* scratch_slot();
  std::byte* data_buffer(const wire::Command& cmd) const;

  const std::string export_name_;
  const uint16_t queue_id_;
  const std::string peer_;
  const Backend& backend_;
  const uint16_t depth_;
  const uint32_t max_io_;
  const uint32_t max_reads_;
  const bool read_imm_;     // successful READs complete as RDMA WRITE WITH IMMEDIATE (no SEND)
  const bool batch_;        // SENDs carry up to kMaxBatch commands / responses
  const bool push_writes_;  // the client RDMA WRITEs WRITE data into the export (PUSH_WRITES)
  const bool push_slots_;   // ... into this connection's buffer pool, a slot per tag (PUSH_SLOTS)
  const bool pull_reads_;   // the client RDMA READs READ data from the export (PULL_READS)
  const bool keep_alive_;   // KEEP_ALIVE negotiated: one receive more, for the tag beyond the depth
  const bool zero_based_window_;  // v9: the window is a region of its own, addressed from 0
  const bool size_in_keep_alive_;  // v10: KEEP_ALIVE answers carry the export's size
  const uint16_t recv_slots_;  // depth_, and one more with keep_alive_
  const size_t recv_slot_bytes_;
  std::optional<ConnectionAuth> auth_;
  // The authenticated client's: written once by the connection's thread, then published by
  // authenticated_ for to_json() on other threads.
  std::string host_id_;
  std::atomic<bool> authenticated_{false};
  std::atomic<bool> revoked_{false};
  const std::chrono::microseconds spin_;
  const std::chrono::microseconds serial_spin_;  // >= spin_
  uint32_t serial_streak_ = 0;

  ConnectionPhase phase_ = ConnectionPhase::kEstablishing;
  std::chrono::steady_clock::time_point deadline_;  // of establishing, authenticating, the next goodbye
  bool cm_ready_ = false;   // the cm channel was readable: look at its events
  uint32_t passes_ = 0;
  bool cq_armed_ = false;  // the CQ raises an event on its next completion (none taken since)
  // Authentication: the AUTH_REQUEST's verdict while its AUTH_RESULT leaves, and its slot.
  std::optional<AuthVerdict> verdict_;
  uint16_t auth_slot_ = 0;

  // Destruction order matters: the backend queue (fixed buffers) and the transport connection
  // (QP, MRs) go before the memory they point at.
  MappedRegion msgs_;
  MappedRegion pool_;        // depth x max IO, when the export has no direct memory
  uint64_t memory_bytes_ = 0;  // fixed before start (read by the listener thread)
  unsigned poll_group_ = 0;    // likewise
  std::string peer_ip_;
  std::span<std::byte> direct_;
  std::unique_ptr<transport::Connection> rdma_;
  std::unique_ptr<BackendQueue> bq_;
  ibv_mr* msgs_mr_ = nullptr;
  ibv_mr* data_mr_ = nullptr;
  // The region the client's RDMA reaches: data_mr_ itself for clients before v9, else a second
  // registration of the same memory, zero-based, made at setup or once the client authenticated.
  ibv_mr* window_mr_ = nullptr;

  ConnectionStats stats_;
  std::optional<CommandPipeline> pipeline_;
  std::optional<SendQueue> sends_;
  transport::RecvChain recvs_;
  // Commands received while the send queue was backed up, by receive slot (not yet reposted:
  // the client runs out of credits instead of the server out of memory).
  struct Parked {
    uint16_t slot;
    uint32_t byte_len;
  };
  std::vector<Parked> parked_;
  size_t parked_len_ = 0;
  size_t scratch_next_ = 0;

  // A peer that sends nothing for a while is probed (SendQueue::probe): a vanished one fails
  // the probe and its connection goes. Counted receives, not timestamps, on the hot path.
  uint64_t receives_ = 0;
  uint64_t receives_seen_ = 0;
  std::chrono::steady_clock::time_point last_heard_{};
  bool probe_outstanding_ = false;

  bool draining_ = false;
  bool failed_ = false;
  bool device_removed_ = false;  // DEVICE_REMOVAL: everything on the device goes now
  std::atomic<bool> done_{false};
};

}  // namespace ublkrdma::server
