#include "server/rdma_server.h"

#include <endian.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/counter.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/mapped_region.h"
#include "base/work_id.h"
#include "server/backend.h"
#include "server/command_validator.h"
#include "server/negotiation.h"
#include "transport/connection.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;
using transport::Connection;

constexpr size_t kMsgSlot = 64;  // one cache line per receive / response slot
static_assert(wire::kCommandSize <= kMsgSlot && wire::kResponseSize <= kMsgSlot);
constexpr uint32_t kSignalEvery = 16;
constexpr uint32_t kSqSlack = 2 * kSignalEvery;
// Per tag at most two send-queue entries wait to be posted (RDMA WRITE + SEND).
constexpr uint32_t kWrsPerTag = 2;
static_assert(4096 * kWrsPerTag + kSqSlack <= 0xffff);
static_assert(wire::kCmdFlagFua == kCommandFlagFua && wire::kCmdFlagPushed == kCommandFlagPushed,
              "command flags are validated as they come off the wire");
constexpr int kPollBatch = 32;
constexpr uint32_t kCmCheckEvery = 4096;  // passes between cm-channel checks while spinning
// Receives in a row that each brought one command, with no other command in flight or in the
// send queue: the peer waits for every answer before it sends again (QD1), and polling catches
// its next command one round trip after our answer.
constexpr uint32_t kSerialStreak = 8;

// Rejections the validator does not know: malformed commands and a tag already in flight.
constexpr unsigned kRejectMalformed = kCommandCheckCount;
constexpr unsigned kRejectTagBusy = kCommandCheckCount + 1;
constexpr unsigned kRejectReasons = kCommandCheckCount + 2;

const char* reject_reason_name(unsigned i) {
  if (i == kRejectMalformed) return "malformed";
  if (i == kRejectTagBusy) return "tag_busy";
  return command_check_name(CommandCheck(i));
}

struct ConnCounters {
  RelaxedCounter commands;
  RelaxedCounter reads, writes, flushes, discards, write_zeroes;
  RelaxedCounter rdma_bytes;          // READ data RDMA-written + WRITE data RDMA-read or pushed
  RelaxedCounter pushed_writes;       // WRITEs whose data the client put into the export (PUSH_WRITES)
  RelaxedCounter copied_bytes;        // IO data copied in userspace: no such path, stays 0
  RelaxedCounter errors;              // responses with a non-zero status
  RelaxedCounter rejected;            // commands refused by validation (subset of errors)
  std::array<RelaxedCounter, kRejectReasons> rejected_by;
  RelaxedCounter backend_errors;
  RelaxedCounter polls, idle_polls, sleeps;
  RelaxedCounter serial_commands;  // commands that came as part of a serial stream (see kSerialStreak)
  RelaxedCounter doorbells, max_post_batch, sq_depth_max, rdma_reads_max;
  RelaxedCounter read_done_imm;  // READs answered by RDMA WRITE WITH IMMEDIATE alone
  RelaxedCounter answer_sends;   // SENDs carrying Responses (fewer than Responses with BATCH)
  RelaxedCounter parked_max;  // most commands held back at once because answers could not leave

  nlohmann::json to_json() const {
    nlohmann::json by = nlohmann::json::object();
    for (unsigned i = 1; i < kRejectReasons; ++i)
      if (rejected_by[i].get()) by[reject_reason_name(i)] = rejected_by[i].get();
    return {{"commands", commands.get()},
            {"reads", reads.get()},
            {"writes", writes.get()},
            {"flushes", flushes.get()},
            {"discards", discards.get()},
            {"write_zeroes", write_zeroes.get()},
            {"rdma_bytes", rdma_bytes.get()},
            {"pushed_writes", pushed_writes.get()},
            {"copied_bytes", copied_bytes.get()},
            {"errors", errors.get()},
            {"rejected_commands", rejected.get()},
            {"rejected_by_reason", by},
            {"backend_errors", backend_errors.get()},
            {"polls", polls.get()},
            {"idle_polls", idle_polls.get()},
            {"sleeps", sleeps.get()},
            {"serial_commands", serial_commands.get()},
            {"doorbells", doorbells.get()},
            {"max_post_batch", max_post_batch.get()},
            {"sq_depth_max", sq_depth_max.get()},
            {"rdma_reads_max", rdma_reads_max.get()},
            {"read_done_imm", read_done_imm.get()},
            {"answer_sends", answer_sends.get()},
            {"parked_max", parked_max.get()}};
  }
};

// One accepted connection (one client queue), served by its own thread.
class ServerConnection {
 public:
  ServerConnection(std::unique_ptr<Connection> conn, const Backend& backend, std::string export_name,
                   const wire::AcceptData& acc, uint8_t max_reads, uint16_t queue_id, const ServerOptions& opts)
      : export_name_(std::move(export_name)), queue_id_(queue_id), peer_(conn->peer_address()), backend_(backend),
        depth_(acc.queue_depth), max_io_(acc.max_io_bytes), max_reads_(max_reads), read_imm_(acc.read_imm()),
        batch_(acc.batch()), push_writes_(acc.push_writes()), push_slots_(acc.push_slots()),
        pull_reads_(acc.pull_reads()),
        recv_slot_bytes_(batch_ ? wire::kMaxBatch * wire::kCommandSize : kMsgSlot),
        spin_(opts.spin), serial_spin_(std::max(opts.spin, opts.serial_spin)),
        conn_(std::move(conn)) {
    limits_ = CommandLimits{backend.size(), backend.block_size(), backend.read_only(), backend.supported_ops(),
                            max_io_, depth_, push_writes_};
    // DISCARD and WRITE_ZEROES move no data: the negotiated max IO (a buffer size) does not
    // bound them, only the export does.
    limits_nodata_ = limits_;
    limits_nodata_.max_io_bytes = UINT32_MAX;
    limits_nodata_.push_writes = false;
  }

  ~ServerConnection() {
    if (thread_.joinable()) thread_.join();
  }

  // On the listener thread, before accepting: buffers, MRs, backend queue, receives.
  // With PUSH_WRITES or PULL_READS, the window the ACCEPT grants (after setup()): the export's
  // memory, or with PUSH_SLOTS this connection's buffer pool (tag t's slot at t * max_io).
  void fill_window(wire::AcceptData& a) const {
    a.window_rkey = data_mr_->rkey;
    a.window_addr = reinterpret_cast<uint64_t>(push_slots_ ? pool_.get() : static_cast<void*>(direct_.data()));
  }

  void setup() {
    msgs_ = MappedRegion::anonymous(size_t(depth_) * (recv_slot_bytes_ + kMsgSlot) + scratch_slots() * kMsgSlot, true);
    msgs_mr_ = conn_->register_memory(msgs_.get(), msgs_.size(), IBV_ACCESS_LOCAL_WRITE, "message slots");
    std::span<std::byte> direct = backend_.direct_memory();
    std::span<std::byte> registered;
    if (!direct.empty()) {
      // RDMA straight into the export: RDMA READ lands there (local write), RDMA WRITE reads it;
      // with PUSH_WRITES the client's RDMA WRITEs land there too (remote write, this export only:
      // the MR covers exactly its bytes, and negotiation never grants it for a read-only one);
      // with PULL_READS the client's RDMA READs read it (remote read, the same bounds).
      direct_ = direct;
      int access = IBV_ACCESS_LOCAL_WRITE | (push_writes_ ? IBV_ACCESS_REMOTE_WRITE : 0) |
                   (pull_reads_ ? IBV_ACCESS_REMOTE_READ : 0);
      data_mr_ = conn_->register_memory(direct.data(), direct.size(), access,
                                        fmt::format("export '{}' memory", export_name_));
      registered = direct;
    } else {
      if ((push_writes_ && !push_slots_) || pull_reads_)
        throw_setup("PUSH_WRITES into or PULL_READS from the export need an export served from memory");
      // With PUSH_SLOTS the client's RDMA WRITEs land in its tags' slots: this pool is the
      // connection's own, and holds nothing but that client's data in flight.
      pool_ = MappedRegion::anonymous(size_t(depth_) * max_io_, true);
      int access = IBV_ACCESS_LOCAL_WRITE | (push_slots_ ? IBV_ACCESS_REMOTE_WRITE : 0);
      data_mr_ = conn_->register_memory(pool_.get(), pool_.size(), access, "buffer pool");
      registered = pool_.bytes();
      pool_bytes_ = pool_.size();
    }
    bq_ = backend_.open_queue(registered, depth_);
    tags_.assign(depth_, Tag{});
    // Room for every tag's work requests twice over: it only grows (safely: sg_list is set
    // when posting) if a client floods commands while its answers cannot leave.
    batch_wrs_.resize(size_t(depth_) * kWrsPerTag * 2 + 2);
    batch_sge_at_.resize(batch_wrs_.size());
    batch_sges_.resize(batch_wrs_.size());
    parked_.resize(depth_);
    answers_.reserve(depth_);
    refusals_.reserve(scratch_slots());
    fenced_answers_.reserve(depth_);
    recv_wrs_.resize(depth_);
    recv_sges_.resize(depth_);
    read_wait_.assign(depth_, 0);
    signal_fifo_.assign(size_t(depth_) * kWrsPerTag + kSqSlack + 1, 0);
    sq_capacity_ = size_t(depth_) * kWrsPerTag + kSqSlack;
    inline_ok_ = conn_->max_inline() >= wire::kResponseSize;
    for (uint16_t i = 0; i < depth_; ++i) queue_recv(i);
    post_recvs();
    if (failed_) throw_setup("posting {} receives for {} failed", depth_, peer_);
  }

  Connection& connection() { return *conn_; }

  void start(const std::atomic<bool>& stop) {
    thread_ = std::thread([this, &stop] { run(stop); });
  }

  bool done() const { return done_.load(std::memory_order_acquire); }
  uint64_t pool_bytes() const { return pool_bytes_; }  // 0 when IO goes straight to the export
  const ConnCounters& counters() const { return c_; }
  const std::string& export_name() const { return export_name_; }

  nlohmann::json to_json() const {
    nlohmann::json j = c_.to_json();
    j["peer"] = peer_;
    j["export"] = export_name_;
    j["queue"] = queue_id_;
    j["depth"] = depth_;
    j["max_io_bytes"] = max_io_;
    j["direct"] = !direct_.empty();
    j["read_imm"] = read_imm_;
    j["batch"] = batch_;
    j["push_writes"] = push_writes_;
    j["push_slots"] = push_slots_;
    j["pull_reads"] = pull_reads_;
    return j;
  }

 private:
  enum class TagState : uint8_t { kFree, kWaitReadCredit, kRdmaRead, kBackend };
  struct Tag {
    wire::Command cmd;
    TagState state = TagState::kFree;
  };

  // msgs_: [depth receive slots][depth response slots][scratch response slots]
  uint8_t* recv_slot(uint16_t i) const { return static_cast<uint8_t*>(msgs_.get()) + size_t(i) * recv_slot_bytes_; }
  uint8_t* resp_slot(uint16_t tag) const {
    return static_cast<uint8_t*>(msgs_.get()) + size_t(depth_) * recv_slot_bytes_ + size_t(tag) * kMsgSlot;
  }
  // Answers to refused commands: their tag may be out of range or busy, so they never use
  // a tag's slot. They leave inline, one per SEND (the slot is copied when posted), and no
  // more answers than the batch bound (batch_has_room) wait unposted at once: a slot is
  // posted before the ring comes back to it, however fast a client floods bad commands. (On a
  // device without inline sends such a flood can still garble the flooder's own answers.)
  size_t scratch_slots() const { return size_t(depth_) * kWrsPerTag + kWrsPerTag; }
  uint8_t* scratch_slot() {
    size_t i = scratch_next_++ % scratch_slots();
    return static_cast<uint8_t*>(msgs_.get()) + size_t(depth_) * (recv_slot_bytes_ + kMsgSlot) + i * kMsgSlot;
  }
  std::byte* data_buffer(const wire::Command& cmd) const {
    if (!direct_.empty()) return direct_.data() + cmd.offset;  // validated: within the export
    return static_cast<std::byte*>(pool_.get()) + size_t(cmd.tag) * max_io_;
  }

  // ------------------------------------------------------------------ thread body
  void run(const std::atomic<bool>& stop) {
    log::server()->debug("{}: serving export '{}' queue {} (depth {}, max IO {}, {} RDMA READs, {})", peer_,
                         export_name_, queue_id_, depth_, max_io_, max_reads_,
                         direct_.empty() ? "buffer pool" : "direct to export memory");
    if (wait_established()) serve(stop);
    // Let the backend finish what it holds (its buffers are ours), then tear down in order:
    // QP drained and destroyed, MRs deregistered, then the backend queue and the buffers.
    while (bq_->busy()) {
      BackendCompletion done[kPollBatch];
      if (bq_->poll(done) < 0) break;
      if (bq_->busy()) ::usleep(200);
    }
    conn_->close_st();
    bq_.reset();
    log::server()->info("{}: export '{}' queue {} closed ({} commands, {} errors, {} rejected)", peer_, export_name_,
                        queue_id_, c_.commands.get(), c_.errors.get(), c_.rejected.get());
    done_.store(true, std::memory_order_release);
  }

  bool wait_established() {
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      auto ev = conn_->wait_cm_event_st(std::chrono::milliseconds(200));
      if (!ev) continue;
      if (ev->type == RDMA_CM_EVENT_ESTABLISHED) return true;
      log::server()->warn("{}: connection not established: {} (status {})", peer_, rdma_event_str(ev->type),
                          ev->status);
      return false;
    }
    log::server()->warn("{}: connection not established within 10 s", peer_);
    return false;
  }

  void serve(const std::atomic<bool>& stop) {
    auto last_active = Clock::now();
    uint32_t passes = 0;
    for (;;) {
      if (!draining_ && stop.load(std::memory_order_relaxed)) {
        draining_ = true;
        log::server()->debug("{}: stopping: finishing {} commands in flight", peer_, inflight_);
      }
      int work = poll_cq() + poll_backend();
      flush_batch();
      work += resume_parked();
      if (failed_ && inflight_ == 0 && batch_empty()) return;
      if (draining_ && inflight_ == 0 && batch_empty() && parked_len_ == 0 && fifo_head_ == fifo_tail_) {
        // Every answer posted since the stop was signaled and has completed; an unsignaled
        // tail from before the stop gets a moment to leave before the QP is flushed.
        if (since_signal_ > 0) ::usleep(20000);
        return;
      }
      if (failed_ && !bq_->busy()) return;  // what is left waits on a dead QP
      if (++passes % kCmCheckEvery == 0) handle_cm_events();
      if (work > 0) {
        last_active = Clock::now();
        continue;
      }
      // A serial peer's next command comes one round trip after our answer: polling until then
      // saves a wake-up per IO. Other peers' commands come in bursts; between them the CPU
      // is better left to the kernel work that carries them.
      auto spin = serial_streak_ == kSerialStreak ? serial_spin_ : spin_;
      if (spin.count() > 0 && Clock::now() - last_active < spin) {
        ::sched_yield();  // let rxe's kernel work (our packets) run on this CPU while we wait
        continue;
      }
      sleep_once();
      last_active = Clock::now() - serial_spin_;  // woken: poll, and sleep again at once if idle
    }
  }

  void sleep_once() {
    if (!batch_empty() || parked_len_ > 0) return;  // waiting for send-queue room: keep polling
    if (int rc = conn_->arm_cq_st(); rc < 0) {
      log::server()->error("{}: ibv_req_notify_cq: {}", peer_, errno_text(rc));
      failed_ = true;
      return;
    }
    if (poll_cq() > 0 || poll_backend() > 0) return;  // armed before this poll: nothing lost
    c_.sleeps.add_st();
    pollfd fds[3] = {{conn_->cq_fd(), POLLIN, 0}, {conn_->cm_fd(), POLLIN, 0}, {bq_->event_fd(), POLLIN, 0}};
    int nfds = bq_->event_fd() >= 0 ? 3 : 2;
    int rc = ::poll(fds, nfds, 100);  // bounded: the stop flag is checked at least 10x/s
    if (rc < 0 && errno != EINTR) log::server()->warn("{}: poll: {}", peer_, errno_text(errno));
    if (fds[0].revents) conn_->consume_cq_event_st();
    if (fds[1].revents) handle_cm_events();
  }

  void handle_cm_events() {
    while (auto ev = conn_->poll_cm_event_st()) {
      switch (ev->type) {
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
        case RDMA_CM_EVENT_TIMEWAIT_EXIT:
          if (!failed_) log::server()->info("{}: {}", peer_, rdma_event_str(ev->type));
          fail("peer disconnected");
          break;
        default:
          log::server()->debug("{}: rdma_cm event {}", peer_, rdma_event_str(ev->type));
      }
    }
  }

  // The QP is unusable: stop posting; flushed completions free the tags that wait on it.
  void fail(const char* why) {
    if (failed_) return;
    failed_ = true;
    log::server()->debug("{}: connection failed ({}), {} commands in flight", peer_, why, inflight_);
    conn_->disconnect_st();
    batch_len_ = 0;
    sges_len_ = 0;
    refusals_.clear();
    answers_.clear();
    fenced_answers_.clear();
    parked_len_ = 0;
    // Tags waiting for an RDMA READ credit or on the send queue will never get one.
    for (auto& t : tags_) {
      if (t.state == TagState::kWaitReadCredit) release_tag(t);
    }
    read_wait_len_ = 0;
  }

  // ------------------------------------------------------------------ completions
  int poll_cq() {
    ibv_wc wcs[kPollBatch];
    int n = ibv_poll_cq(conn_->cq(), kPollBatch, wcs);
    c_.polls.add_st();
    if (n <= 0) {
      if (n < 0) {
        log::server()->error("{}: ibv_poll_cq: {}", peer_, errno_text(-n));
        fail("poll_cq failed");
      }
      c_.idle_polls.add_st();
      return 0;
    }
    size_t received = 0;  // commands
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      WorkId id = WorkId::decode(wc.wr_id);
      if (wc.status != IBV_WC_SUCCESS) {
        if (!failed_ && wc.status != IBV_WC_WR_FLUSH_ERR)
          log::server()->warn("{}: {} failed: {} (vendor error {:#x})", peer_,
                              id.kind == WorkKind::kRdmaRecv   ? "receive"
                              : id.kind == WorkKind::kRdmaRead ? "RDMA READ of write data"
                                                               : "send",
                              ibv_wc_status_str(wc.status), wc.vendor_err);
        fail("work request failed");
        if (id.kind == WorkKind::kRdmaRead && id.tag < depth_ && tags_[id.tag].state == TagState::kRdmaRead) {
          --reads_outstanding_;
          release_tag(tags_[id.tag]);
        }
        continue;
      }
      switch (id.kind) {
        case WorkKind::kRdmaRecv: {
          size_t commands = commands_in(wc.byte_len);
          received += commands;
          if (parked_len_ > 0 || !batch_has_room(commands)) {
            park(id.tag, wc.byte_len);
          } else {
            on_message(id.tag, wc.byte_len);
          }
          break;
        }
        case WorkKind::kRdmaRead:
          retire_signaled();
          --reads_outstanding_;
          on_write_data(id.tag);
          start_waiting_reads();
          break;
        case WorkKind::kRdmaSend:
        case WorkKind::kRdmaWrite:
          retire_signaled();
          break;
        default:
          break;
      }
    }
    post_recvs();
    if (received > 0) note_arrivals(received);
    return n;
  }

  // One command alone, with at most itself in flight: a serial stream if it keeps up. Large
  // transfers at some depth also come one command at a time, but while the answers to the
  // others still fill the send queue (sq_used_ counts unsignaled work requests until a later
  // signaled one completes: up to kSignalEvery of them).
  void note_arrivals(size_t commands) {
    bool alone = commands == 1 && inflight_ <= 1 && sq_used_ <= kSignalEvery + kWrsPerTag;
    serial_streak_ = alone ? std::min(serial_streak_ + 1, kSerialStreak) : 0;
    if (serial_streak_ == kSerialStreak) c_.serial_commands.add_st();
  }

  void retire_signaled() {
    if (fifo_head_ == fifo_tail_) return;
    sq_used_ -= signal_fifo_[fifo_head_];
    fifo_head_ = (fifo_head_ + 1) % signal_fifo_.size();
  }

  // Commands a receive of byte_len bytes holds (a malformed one counts as one, to be refused).
  size_t commands_in(uint32_t byte_len) const {
    return std::max<size_t>(1, wire::messages_in(byte_len, wire::kCommandSize, batch_));
  }

  // One receive: a command, or with BATCH up to kMaxBatch of them back to back.
  void on_message(uint16_t slot, uint32_t byte_len) {
    if (slot >= depth_) return;
    std::array<wire::Decoded<wire::Command>, wire::kMaxBatch> cmds;
    size_t n = wire::messages_in(byte_len, wire::kCommandSize, batch_);
    bool malformed = n == 0;
    if (malformed) n = 1;  // refuse what the first bytes name
    for (size_t i = 0; i < n; ++i)
      cmds[i] = wire::decode_command(
          std::span<const uint8_t>(recv_slot(slot) + i * wire::kCommandSize, wire::kCommandSize));
    queue_recv(slot);  // the commands are decoded: the slot may take the next message
    for (size_t i = 0; i < n; ++i) on_command(cmds[i], malformed ? 0 : byte_len);
  }

  // byte_len 0: the message around the command was malformed.
  void on_command(const wire::Decoded<wire::Command>& d, uint32_t byte_len) {
    if (failed_) return;
    c_.commands.add_st();
    const wire::Command& cmd = d.value;
    if (byte_len == 0 || !d.ok()) {
      SPDLOG_LOGGER_DEBUG(log::server(), "{}: malformed command ({} bytes): {}", peer_, byte_len,
                          wire::decode_error_text(d.error));
      return reject(cmd, kRejectMalformed, -EINVAL);
    }
    bool moves_data = cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite;
    CommandCheck check = validate_command(
        CommandToValidate{uint8_t(cmd.opcode), cmd.flags, cmd.tag, cmd.offset, cmd.length},
        moves_data ? limits_ : limits_nodata_);
    if (check != CommandCheck::kOk) {
      SPDLOG_LOGGER_DEBUG(log::server(), "{}: command tag {} refused: {}", peer_, cmd.tag, command_check_name(check));
      return reject(cmd, unsigned(check), command_check_errno(check));
    }
    Tag& t = tags_[cmd.tag];
    if (t.state != TagState::kFree) return reject(cmd, kRejectTagBusy, -EBUSY);
    if (draining_) {
      // Shutting down: answer, do not start new work.
      c_.errors.add_st();
      refuse(cmd, -EIO);
      return;
    }
    if (!direct_.empty() && moves_data) return serve_direct(cmd);
    t.cmd = cmd;
    ++inflight_;
    switch (cmd.opcode) {
      case wire::Opcode::kRead:
        c_.reads.add_st();
        return submit_backend(t);
      case wire::Opcode::kWrite:
        c_.writes.add_st();
        if (cmd.flags & wire::kCmdFlagPushed) {  // PUSH_SLOTS: the data is in the tag's slot already
          c_.pushed_writes.add_st();
          c_.rdma_bytes.add_st(cmd.length);
          return submit_backend(t);
        }
        t.state = TagState::kWaitReadCredit;
        if (reads_outstanding_ < max_reads_) return post_rdma_read(t);
        read_wait_[read_wait_len_++] = cmd.tag;  // at most depth entries: one per tag
        return;
      case wire::Opcode::kFlush:
        c_.flushes.add_st();
        return submit_backend(t);
      case wire::Opcode::kDiscard:
        c_.discards.add_st();
        return submit_backend(t);
      case wire::Opcode::kWriteZeroes:
        c_.write_zeroes.add_st();
        return submit_backend(t);
    }
  }

  // READ/WRITE on an export the server's MR covers (ram): the RDMA itself is the IO and the
  // backend is not involved. READ = RDMA WRITE + SEND. WRITE = RDMA READ into the export and an
  // answer that leaves, fenced, once the data is in (flush_batch): the server never waits for
  // the READ's completion, so one pass and one doorbell serve each command. The tag is free at
  // once: the client reuses it only after the answer, which follows the data.
  // A pushed WRITE's data came before its command (RC order on the client's QP): answer at once.
  void serve_direct(const wire::Command& cmd) {
    if (cmd.opcode == wire::Opcode::kRead) {
      c_.reads.add_st();
      return answer_read(cmd);
    }
    c_.writes.add_st();
    if (cmd.flags & wire::kCmdFlagPushed) {
      c_.pushed_writes.add_st();
      c_.rdma_bytes.add_st(cmd.length);
      return respond(cmd, 0);
    }
    c_.rdma_bytes.add_st(cmd.length);
    queue_rdma(cmd, IBV_WR_RDMA_READ);
    fenced_answers_.push_back(encode_answer(cmd, 0, resp_slot(cmd.tag)));
  }

  // Commands are only taken on while the batch has room for their answers.
  bool batch_has_room(size_t commands) const {
    return batch_len_ + refusals_.size() + answers_.size() + fenced_answers_.size() + commands * kWrsPerTag <=
           size_t(depth_) * kWrsPerTag;
  }
  bool batch_empty() const {
    return batch_len_ == 0 && refusals_.empty() && answers_.empty() && fenced_answers_.empty();
  }

  void park(uint16_t slot, uint32_t byte_len) {
    if (slot >= depth_ || parked_len_ >= parked_.size()) return;  // one receive per slot: cannot happen
    parked_[parked_len_++] = Parked{slot, byte_len};
    c_.parked_max.max_st(parked_len_);
  }

  int resume_parked() {
    size_t done = 0;
    while (done < parked_len_ && batch_has_room(commands_in(parked_[done].byte_len))) {
      on_message(parked_[done].slot, parked_[done].byte_len);
      ++done;
    }
    if (done == 0) return 0;
    std::copy(parked_.begin() + ptrdiff_t(done), parked_.begin() + ptrdiff_t(parked_len_), parked_.begin());
    parked_len_ -= done;
    post_recvs();
    return int(done);
  }

  void reject(const wire::Command& cmd, unsigned reason, int err) {
    c_.rejected.add_st();
    c_.rejected_by[reason].add_st();
    c_.errors.add_st();
    refuse(cmd, err);
  }

  void submit_backend(Tag& t) {
    const wire::Command& cmd = t.cmd;
    t.state = TagState::kBackend;
    bool data = cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite;
    uint32_t flags = (cmd.flags & wire::kCmdFlagFua) ? kBackendFlagFua : 0;
    int rc = bq_->submit(cmd.tag, BackendOp(uint8_t(cmd.opcode)), cmd.offset, cmd.length,
                         data ? data_buffer(cmd) : nullptr, flags);
    if (rc < 0) {
      c_.backend_errors.add_st();
      finish(t, rc);
    }
  }

  int poll_backend() {
    BackendCompletion done[kPollBatch];
    int n = bq_->poll(done);
    if (n < 0) {
      log::server()->error("{}: backend queue failed: {}", peer_, errno_text(n));
      return 0;
    }
    for (int i = 0; i < n; ++i) {
      if (done[i].tag >= depth_ || tags_[done[i].tag].state != TagState::kBackend) {
        log::server()->error("{}: backend completed tag {} that is not with it", peer_, done[i].tag);
        continue;
      }
      Tag& t = tags_[done[i].tag];
      int res = done[i].result;
      if (res < 0) {
        c_.backend_errors.add_st();
        SPDLOG_LOGGER_DEBUG(log::server(), "{}: backend error on tag {}: {}", peer_, t.cmd.tag, errno_text(res));
      }
      finish(t, res < 0 ? res : 0);
    }
    return n;
  }

  // The backend is done with the tag (or refused it): answer, with the read data first.
  void finish(Tag& t, int err) {
    const wire::Command cmd = t.cmd;
    if (failed_) return release_tag(t);
    if (err < 0) c_.errors.add_st();
    release_tag(t);
    if (err == 0 && cmd.opcode == wire::Opcode::kRead) return answer_read(cmd);
    respond(cmd, err);
  }

  // A successful READ: its data, then its answer (both in one work request with ReadDone).
  void answer_read(const wire::Command& cmd) {
    ibv_send_wr& wr = queue_rdma(cmd, IBV_WR_RDMA_WRITE);
    c_.rdma_bytes.add_st(cmd.length);
    if (read_imm_) {
      wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
      wr.imm_data = htobe32(wire::encode_read_done(cmd.tag, cmd.generation));
      c_.read_done_imm.add_st();
      return;
    }
    respond(cmd, 0);
  }

  void release_tag(Tag& t) {
    if (t.state == TagState::kFree) return;
    t.state = TagState::kFree;
    --inflight_;
  }

  // Queues the Response; flush_batch sends it after every work request queued before it in this
  // pass (RC keeps order, so a READ's data goes first).
  void respond(const wire::Command& cmd, int err) {
    if (failed_) return;
    answers_.push_back(encode_answer(cmd, err, resp_slot(cmd.tag)));
  }
  // The answer to a refused command, from a scratch slot.
  void refuse(const wire::Command& cmd, int err) {
    if (failed_) return;
    refusals_.push_back(encode_answer(cmd, err, scratch_slot()));
  }

  uint8_t* encode_answer(const wire::Command& cmd, int err, uint8_t* p) {
    wire::Response r{cmd.tag, wire::is_known_opcode(uint8_t(cmd.opcode)) ? cmd.opcode : wire::Opcode::kRead,
                     cmd.generation, wire::errno_to_status(err)};
    wire::encode_into(r, std::span<uint8_t, wire::kResponseSize>(p, wire::kResponseSize));
    return p;
  }

  // The queued Responses as SENDs: one per Response, or with BATCH up to kMaxBatch per SEND
  // (one scatter/gather entry each; the slots stay put until the client has the answer).
  // Answers to direct WRITEs go after every RDMA READ queued so far: the first SEND that holds
  // one is fenced (it leaves only when all earlier READs have completed).
  void queue_answers() {
    for (uint8_t* p : refusals_) {
      ibv_send_wr& wr = append_answer_send(p);
      if (inline_ok_) wr.send_flags = IBV_SEND_INLINE;
    }
    refusals_.clear();
    size_t per_send = batch_ ? wire::kMaxBatch : 1;
    size_t total = answers_.size() + fenced_answers_.size();
    bool fence_pending = !fenced_answers_.empty();
    for (size_t i = 0; i < total;) {
      size_t k = std::min(per_send, total - i);
      ibv_send_wr* wr = nullptr;
      bool fenced = false;
      for (size_t j = 0; j < k; ++j, ++i) {
        bool is_fenced = i >= answers_.size();
        uint8_t* p = is_fenced ? fenced_answers_[i - answers_.size()] : answers_[i];
        fenced |= is_fenced;
        if (!wr) {
          wr = &append_answer_send(p);
        } else {
          append_sge(reinterpret_cast<uint64_t>(p), uint32_t(wire::kResponseSize), msgs_mr_->lkey);
        }
      }
      if (inline_ok_ && k * wire::kResponseSize <= conn_->max_inline()) wr->send_flags = IBV_SEND_INLINE;
      if (fenced && fence_pending) {
        wr->send_flags |= IBV_SEND_FENCE;
        fence_pending = false;
      }
    }
    answers_.clear();
    fenced_answers_.clear();
  }

  // A SEND of the encoded Response at p (more may follow in it through append_sge).
  ibv_send_wr& append_answer_send(uint8_t* p) {
    ibv_send_wr& wr = append_wr(reinterpret_cast<uint64_t>(p), uint32_t(wire::kResponseSize), msgs_mr_->lkey);
    wr.wr_id = WorkId{WorkKind::kRdmaSend, queue_id_, 0, 0, 0}.encode();
    wr.opcode = IBV_WR_SEND;
    c_.answer_sends.add_st();
    return wr;
  }

  // Queues the data movement of a command between the server's buffer and the client's:
  // IBV_WR_RDMA_WRITE for a READ's data, IBV_WR_RDMA_READ for a WRITE's.
  ibv_send_wr& queue_rdma(const wire::Command& cmd, ibv_wr_opcode op) {
    ibv_send_wr& wr = append_wr(reinterpret_cast<uint64_t>(data_buffer(cmd)), cmd.length, data_mr_->lkey);
    WorkKind kind = op == IBV_WR_RDMA_READ ? WorkKind::kRdmaRead : WorkKind::kRdmaWrite;
    wr.wr_id = WorkId{kind, queue_id_, cmd.tag, 0, cmd.generation}.encode();
    wr.opcode = op;
    wr.wr.rdma.remote_addr = cmd.addr;
    wr.wr.rdma.rkey = cmd.rkey;
    return wr;
  }

  // A fresh work request at the end of the batch, with one scatter/gather entry.
  ibv_send_wr& append_wr(uint64_t addr, uint32_t length, uint32_t lkey) {
    if (batch_len_ == batch_wrs_.size()) {
      batch_wrs_.resize(batch_wrs_.size() * 2);
      batch_sge_at_.resize(batch_wrs_.size());
    }
    batch_sge_at_[batch_len_] = sges_len_;
    push_sge(ibv_sge{addr, length, lkey});
    ibv_send_wr& wr = batch_wrs_[batch_len_++];
    wr = ibv_send_wr{};
    wr.num_sge = 1;
    return wr;
  }
  // One more scatter/gather entry for the last work request.
  void append_sge(uint64_t addr, uint32_t length, uint32_t lkey) {
    push_sge(ibv_sge{addr, length, lkey});
    ++batch_wrs_[batch_len_ - 1].num_sge;
  }
  void push_sge(const ibv_sge& sge) {
    if (sges_len_ == batch_sges_.size()) batch_sges_.resize(batch_sges_.size() * 2);
    batch_sges_[sges_len_++] = sge;
  }

  void post_rdma_read(Tag& t) {
    const wire::Command& cmd = t.cmd;
    t.state = TagState::kRdmaRead;
    ++reads_outstanding_;
    c_.rdma_reads_max.max_st(reads_outstanding_);
    ibv_send_wr& wr = queue_rdma(cmd, IBV_WR_RDMA_READ);
    wr.send_flags = IBV_SEND_SIGNALED;  // the data must be here before the backend sees it
  }

  void start_waiting_reads() {
    size_t started = 0;
    while (started < read_wait_len_ && reads_outstanding_ < max_reads_) {
      Tag& t = tags_[read_wait_[started++]];
      if (t.state == TagState::kWaitReadCredit) post_rdma_read(t);
    }
    if (started) {
      std::copy(read_wait_.begin() + ptrdiff_t(started), read_wait_.begin() + ptrdiff_t(read_wait_len_),
                read_wait_.begin());
      read_wait_len_ -= started;
    }
  }

  void on_write_data(uint16_t tag) {
    if (tag >= depth_ || tags_[tag].state != TagState::kRdmaRead) return;
    Tag& t = tags_[tag];
    c_.rdma_bytes.add_st(t.cmd.length);
    submit_backend(t);
  }

  // ------------------------------------------------------------------ posting
  void queue_recv(uint16_t slot) {
    ibv_sge& sge = recv_sges_[recv_len_];
    sge = ibv_sge{reinterpret_cast<uint64_t>(recv_slot(slot)), uint32_t(recv_slot_bytes_), msgs_mr_->lkey};
    ibv_recv_wr& wr = recv_wrs_[recv_len_];
    wr = ibv_recv_wr{};
    wr.wr_id = WorkId{WorkKind::kRdmaRecv, queue_id_, slot, 0, 0}.encode();
    wr.sg_list = &sge;
    wr.num_sge = 1;
    if (recv_len_ > 0) recv_wrs_[recv_len_ - 1].next = &wr;
    ++recv_len_;
  }

  void post_recvs() {
    if (recv_len_ == 0) return;
    size_t n = recv_len_;
    recv_len_ = 0;
    if (failed_) return;
    ibv_recv_wr* bad = nullptr;
    if (int rc = ibv_post_recv(conn_->qp(), &recv_wrs_[0], &bad)) {
      log::server()->error("{}: posting {} receives: {}", peer_, n, errno_text(rc));
      fail("post_recv failed");
    }
  }

  // Posts as much of the batch as the send queue has room for, with one doorbell.
  void flush_batch() {
    if (failed_) return;
    queue_answers();
    if (batch_len_ == 0) return;
    size_t room = sq_capacity_ - sq_used_;
    size_t n = std::min(batch_len_, room);
    if (n == 0) return;
    for (size_t i = 0; i < n; ++i) {
      ibv_send_wr& wr = batch_wrs_[i];
      wr.sg_list = &batch_sges_[batch_sge_at_[i]];
      wr.next = i + 1 < n ? &batch_wrs_[i + 1] : nullptr;
      ++since_signal_;
      bool last = i + 1 == n;
      if ((wr.send_flags & IBV_SEND_SIGNALED) || since_signal_ >= kSignalEvery || draining_ ||
          (last && sq_used_ + n + kSignalEvery > sq_capacity_)) {
        wr.send_flags |= IBV_SEND_SIGNALED;
        signal_fifo_[fifo_tail_] = since_signal_;
        fifo_tail_ = (fifo_tail_ + 1) % signal_fifo_.size();
        since_signal_ = 0;
      }
    }
    ibv_send_wr* bad = nullptr;
    int rc = ibv_post_send(conn_->qp(), &batch_wrs_[0], &bad);
    c_.doorbells.add_st();
    c_.max_post_batch.max_st(n);
    sq_used_ += n;
    c_.sq_depth_max.max_st(sq_used_);
    if (n < batch_len_) {
      // Keep the rest for the next pass; their sges move with them.
      size_t first = batch_sge_at_[n];
      for (size_t i = n; i < batch_len_; ++i) {
        batch_wrs_[i - n] = batch_wrs_[i];
        batch_sge_at_[i - n] = batch_sge_at_[i] - first;
      }
      std::copy(batch_sges_.begin() + ptrdiff_t(first), batch_sges_.begin() + ptrdiff_t(sges_len_), batch_sges_.begin());
      sges_len_ -= first;
    } else {
      sges_len_ = 0;
    }
    batch_len_ -= n;
    if (rc != 0) {
      log::server()->error("{}: ibv_post_send of {} work requests: {}", peer_, n, errno_text(rc));
      fail("post_send failed");
    }
  }

  const std::string export_name_;
  const uint16_t queue_id_;
  const std::string peer_;
  const Backend& backend_;
  const uint16_t depth_;
  const uint32_t max_io_;
  const uint32_t max_reads_;
  const bool read_imm_;  // successful READs complete as RDMA WRITE WITH IMMEDIATE (no SEND)
  const bool batch_;     // SENDs carry up to kMaxBatch commands / responses
  const bool push_writes_;  // the client RDMA WRITEs WRITE data into the export (PUSH_WRITES)
  const bool push_slots_;   // ... into this connection's buffer pool, a slot per tag (PUSH_SLOTS)
  const bool pull_reads_;   // the client RDMA READs READ data from the export (PULL_READS)
  const size_t recv_slot_bytes_;
  const std::chrono::microseconds spin_;
  const std::chrono::microseconds serial_spin_;  // >= spin_
  uint32_t serial_streak_ = 0;  // up to kSerialStreak
  CommandLimits limits_{};
  CommandLimits limits_nodata_{};

  // Destruction order matters: the backend queue (fixed buffers) and the connection (QP,
  // MRs) go before the memory they point at.
  MappedRegion msgs_;  // [depth receive slots][depth response slots]
  MappedRegion pool_;  // depth x max IO, when the export has no direct memory
  uint64_t pool_bytes_ = 0;  // its size, fixed at setup (read by the listener thread)
  std::span<std::byte> direct_;
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<BackendQueue> bq_;
  ibv_mr* msgs_mr_ = nullptr;
  ibv_mr* data_mr_ = nullptr;
  bool inline_ok_ = false;

  std::vector<Tag> tags_;
  uint32_t inflight_ = 0;
  uint32_t reads_outstanding_ = 0;
  std::vector<uint16_t> read_wait_;
  size_t read_wait_len_ = 0;

  std::vector<ibv_send_wr> batch_wrs_;  // work requests to post, in order (sg_list set at posting)
  std::vector<size_t> batch_sge_at_;    // each one's first entry in batch_sges_
  std::vector<ibv_sge> batch_sges_;
  size_t batch_len_ = 0, sges_len_ = 0;
  std::vector<uint8_t*> refusals_;        // encoded answers to refused commands (scratch slots)
  std::vector<uint8_t*> answers_;         // encoded Responses waiting for flush_batch
  std::vector<uint8_t*> fenced_answers_;  // those of direct WRITEs: after the RDMA READs
  // Commands received while the batch was backed up, by receive slot (not yet reposted: the
  // client runs out of credits instead of the server out of memory).
  struct Parked {
    uint16_t slot;
    uint32_t byte_len;
  };
  std::vector<Parked> parked_;
  size_t parked_len_ = 0;
  std::vector<ibv_recv_wr> recv_wrs_;
  std::vector<ibv_sge> recv_sges_;
  size_t recv_len_ = 0;

  size_t sq_capacity_ = 0, sq_used_ = 0;
  uint32_t since_signal_ = 0;
  std::vector<uint32_t> signal_fifo_;
  size_t fifo_head_ = 0, fifo_tail_ = 0;
  size_t scratch_next_ = 0;

  bool draining_ = false;
  bool failed_ = false;
  ConnCounters c_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

struct ExportTotals {
  uint64_t connections = 0;
  uint64_t commands = 0, rdma_bytes = 0, copied_bytes = 0, errors = 0, rejected_commands = 0;
};

}  // namespace

struct RdmaServer::Impl {
  ServerOptions opts;
  std::vector<std::unique_ptr<Backend>> backends;  // by export index
  std::unique_ptr<transport::Listener> listener;
  mutable std::mutex mu;  // guards conns and totals against stats_json() from other threads
  std::vector<std::unique_ptr<ServerConnection>> conns;
  std::map<std::string, ExportTotals> totals;  // of closed connections
  RelaxedCounter rejected_connections;
  RelaxedCounter accepted_connections;

  int find_export(std::string_view name, ExportInfo& info) const {
    for (size_t i = 0; i < opts.exports.size(); ++i) {
      if (opts.exports[i].name != name) continue;
      const Backend& b = *backends[i];
      info.size = b.size();
      info.block_size = b.block_size();
      info.read_only = b.read_only();
      info.supported_ops = b.supported_ops();
      info.direct_memory = !b.direct_memory().empty();
      return int(i);
    }
    return -1;
  }

  void handle(transport::IncomingRequest req, const std::atomic<bool>& stop) {
    std::string peer = req.peer_address();
    ServerLimits limits;
    limits.max_queue_depth = opts.max_queue_depth;
    limits.max_io_bytes = opts.max_io_bytes;
    limits.max_rdma_reads = req.initiator_depth();
    limits.max_total_pool_bytes = opts.max_total_pool_bytes;
    limits.max_connections = opts.max_connections;
    limits.push_writes = opts.push_writes;
    limits.pull_reads = opts.pull_reads;
    limits.client_rdma_reads = req.responder_resources();
    {
      std::lock_guard lk(mu);  // finished connections not reaped yet still hold their memory
      limits.connections_in_use = uint32_t(conns.size());
      for (const auto& c : conns) limits.pool_bytes_in_use += c->pool_bytes();
    }
    Negotiation n = negotiate(
        req.private_data(), req.peer(), opts.allow,
        [this](std::string_view name, ExportInfo& info) { return find_export(name, info); }, limits);
    if (!n.accepted) {
      rejected_connections.add_st();
      log::server()->warn("refused {} (export '{}', queue {}): {}: {}", peer, n.request.name(), n.request.queue_id,
                          wire::connect_status_text(n.reject.status), n.reason);
      req.reject(wire::encode(n.reject));
      return;
    }
    const ExportSpec& spec = opts.exports[size_t(n.export_index)];
    std::unique_ptr<ServerConnection> sc;
    try {
      uint32_t depth = n.accept.queue_depth;
      transport::QpSizes sizes;
      sizes.send_wrs = depth * kWrsPerTag + kSqSlack;
      sizes.recv_wrs = depth;
      sizes.max_inline = 64;
      if (n.accept.batch()) sizes.max_send_sge = wire::kMaxBatch;  // a batched answer: one entry per Response
      auto conn = req.take(sizes);
      uint8_t reads = uint8_t(std::min<int>(req.initiator_depth(), conn->device_attr().max_qp_init_rd_atom));
      if (reads == 0) throw_setup("no RDMA READ possible (client responder resources {})", req.initiator_depth());
      sc = std::make_unique<ServerConnection>(std::move(conn), *backends[size_t(n.export_index)], spec.name, n.accept,
                                              reads, n.request.queue_id, opts);
      sc->setup();
      if (n.accept.has_window()) sc->fill_window(n.accept);
      // With PULL_READS the client's RDMA READs run against us: serve as many as it issues.
      transport::accept_connection(sc->connection(), wire::encode(n.accept), reads,
                                   n.accept.pull_reads() ? req.responder_resources() : 0);
    } catch (const SetupError& e) {
      rejected_connections.add_st();
      log::server()->error("cannot serve {} (export '{}'): {}", peer, spec.name, e.what());
      auto rej = wire::encode(wire::RejectData{wire::kVersion, wire::ConnectStatus::kInternal, wire::kMinVersion});
      if (sc) {
        rdma_reject(sc->connection().id(), rej.data(), uint8_t(rej.size()));
      } else {
        req.reject(rej);
      }
      return;
    }
    accepted_connections.add_st();
    log::server()->info("accepted {}: export '{}' queue {}, depth {}, max IO {}", peer, spec.name,
                        n.request.queue_id, n.accept.queue_depth, n.accept.max_io_bytes);
    sc->start(stop);
    std::lock_guard lk(mu);
    conns.push_back(std::move(sc));
  }

  void reap_finished() {
    std::lock_guard lk(mu);
    for (auto it = conns.begin(); it != conns.end();) {
      if (!(*it)->done()) {
        ++it;
        continue;
      }
      fold((*it)->export_name(), (*it)->counters());
      it = conns.erase(it);  // joins the finished thread
    }
  }

  void fold(const std::string& name, const ConnCounters& c) {
    ExportTotals& t = totals[name];
    t.connections += 1;
    t.commands += c.commands.get();
    t.rdma_bytes += c.rdma_bytes.get();
    t.copied_bytes += c.copied_bytes.get();
    t.errors += c.errors.get();
    t.rejected_commands += c.rejected.get();
  }

  std::string stats() const {
    std::lock_guard lk(mu);
    std::map<std::string, ExportTotals> per = totals;
    for (const auto& spec : opts.exports) per[spec.name];  // every export, even unused
    nlohmann::json jconns = nlohmann::json::array();
    for (const auto& c : conns) {
      jconns.push_back(c->to_json());
      ExportTotals& t = per[c->export_name()];
      const ConnCounters& cc = c->counters();
      t.connections += 1;
      t.commands += cc.commands.get();
      t.rdma_bytes += cc.rdma_bytes.get();
      t.copied_bytes += cc.copied_bytes.get();
      t.errors += cc.errors.get();
      t.rejected_commands += cc.rejected.get();
    }
    nlohmann::json jexp = nlohmann::json::object();
    for (const auto& [name, t] : per)
      jexp[name] = {{"connections", t.connections},   {"commands", t.commands},
                    {"rdma_bytes", t.rdma_bytes},     {"copied_bytes", t.copied_bytes},
                    {"errors", t.errors},             {"rejected_commands", t.rejected_commands}};
    nlohmann::json j = {{"exports", jexp},
                        {"connections", jconns},
                        {"accepted_connections", accepted_connections.get()},
                        {"rejected_connections", rejected_connections.get()}};
    return j.dump();
  }

  void write_stats() const {
    if (opts.stats_path.empty()) return;
    std::string tmp = opts.stats_path + ".tmp";
    {
      std::ofstream f(tmp, std::ios::trunc);
      if (!f) {
        log::server()->warn("cannot write stats to {}: {}", tmp, errno_text(errno));
        return;
      }
      f << stats() << "\n";
    }
    if (std::rename(tmp.c_str(), opts.stats_path.c_str()) != 0)
      log::server()->warn("cannot rename {} to {}: {}", tmp, opts.stats_path, errno_text(errno));
  }
};

RdmaServer::RdmaServer(const ServerOptions& opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = opts;
  if (opts.exports.empty()) throw_setup("serve: no export given (--export NAME=ram:SIZE|file:PATH|null:SIZE)");
  for (const auto& spec : opts.exports) {
    impl_->backends.push_back(open_backend(spec, spec.read_only));
    const Backend& b = *impl_->backends.back();
    log::server()->info("export '{}': {} ({} bytes, {}-byte blocks{})", spec.name, describe(spec), b.size(),
                        b.block_size(), b.read_only() ? ", read-only" : "");
  }
  if (transport::rdma_device_names().empty())
    throw_setup("no RDMA device found (load a driver, e.g. `modprobe rdma_rxe` and "
                "`rdma link add rxe0 type rxe netdev IFACE`)");
  impl_->listener = std::make_unique<transport::Listener>(opts.listen_addr, opts.port);
  log::server()->info("listening on {}:{}", opts.listen_addr.empty() ? "*" : opts.listen_addr, port());
}

RdmaServer::~RdmaServer() = default;

uint16_t RdmaServer::port() const { return impl_->listener->port(); }

std::string RdmaServer::stats_json() const { return impl_->stats(); }

void RdmaServer::run(const std::atomic<bool>& stop) {
  auto next_stats = Clock::now() + impl_->opts.stats_interval;
  while (!stop.load()) {
    try {
      if (auto req = impl_->listener->next_request(std::chrono::milliseconds(100))) impl_->handle(std::move(*req), stop);
    } catch (const SetupError& e) {
      log::server()->error("listener: {}", e.what());
      ::usleep(100000);
    }
    impl_->reap_finished();
    if (Clock::now() >= next_stats) {
      impl_->write_stats();
      next_stats = Clock::now() + impl_->opts.stats_interval;
    }
  }
  log::server()->info("stopping: draining {} connection(s)", impl_->conns.size());
  for (;;) {
    impl_->reap_finished();
    {
      std::lock_guard lk(impl_->mu);
      if (impl_->conns.empty()) break;
    }
    ::usleep(10000);
  }
  impl_->write_stats();
  log::server()->info("stopped");
}

int run_server(const ServerOptions& opts, std::atomic<bool>& stop) {
  try {
    RdmaServer server(opts);
    server.run(stop);
    return 0;
  } catch (const SetupError& e) {
    log::server()->error("{}", e.what());
    return 1;
  }
}

}  // namespace ublkrdma::server
