#pragma once
// One accepted connection (one client queue), served by a thread of its own that owns its
// CQ, QP, registered buffers and backend queue. The thread waits for the connection to be
// established, then polls: completions, the backend, the send queue; it spins while work is
// near and sleeps on the completion channel when idle. At stop it finishes what is in flight,
// drains the send queue, then closes in order.
#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <thread>
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
  AuthContext context;
  AuthLimiter* limiter = nullptr;  // failed exchanges are counted against the peer's address
  std::string peer_ip;
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
  void start(const std::atomic<bool>& stop);

  bool done() const { return done_.load(std::memory_order_acquire); }
  // What it counts against the server's memory budget (Negotiation::memory_bytes), and whose.
  void set_budget(uint64_t memory_bytes, std::string peer_ip) {
    memory_bytes_ = memory_bytes;
    peer_ip_ = std::move(peer_ip);
  }
  uint64_t memory_bytes() const { return memory_bytes_; }
  const std::string& peer_ip() const { return peer_ip_; }
  const ConnectionStats& stats() const { return stats_; }
  const std::string& export_name() const { return export_name_; }
  nlohmann::json to_json() const;

 private:
  // ------------------------------------------------------------------ thread body
  void run(const std::atomic<bool>& stop);
  bool wait_established();
  // connection_auth.cc: takes the AUTH_REQUEST, answers it, opens the window on success.
  bool authenticate();
  bool wait_auth_completion(WorkKind kind, ibv_wc& wc, std::chrono::steady_clock::time_point deadline);
  void open_window();
  void serve(const std::atomic<bool>& stop);
  void sleep_once();
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
  const uint16_t recv_slots_;  // depth_, and one more with keep_alive_
  const size_t recv_slot_bytes_;
  std::optional<ConnectionAuth> auth_;
  // The authenticated client's: written once by the connection's thread, then published by
  // authenticated_ for to_json() on other threads.
  std::string host_id_;
  std::atomic<bool> authenticated_{false};
  const std::chrono::microseconds spin_;
  const std::chrono::microseconds serial_spin_;  // >= spin_
  uint32_t serial_streak_ = 0;

  // Destruction order matters: the backend queue (fixed buffers) and the transport connection
  // (QP, MRs) go before the memory they point at.
  MappedRegion msgs_;
  MappedRegion pool_;        // depth x max IO, when the export has no direct memory
  uint64_t memory_bytes_ = 0;  // fixed before start (read by the listener thread)
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
  std::thread thread_;
};

}  // namespace ublkrdma::server
