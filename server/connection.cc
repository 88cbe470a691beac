#include "server/connection.h"

#include <endian.h>

#include <array>
#include <cerrno>

#include "base/errors.h"
#include "base/log.h"
#include "base/work_id.h"
#include "server/received_commands.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMsgSlot = 64;  // one cache line per receive / response slot
static_assert(wire::kCommandSize <= kMsgSlot && wire::kResponseSize <= kMsgSlot);
// With authentication every receive can take the AUTH_REQUEST (whole cache lines).
constexpr size_t kAuthRecvSlot = (wire::kAuthRequestSize + kMsgSlot - 1) / kMsgSlot * kMsgSlot;
static_assert(wire::kAuthResultSize <= kMsgSlot, "the AUTH_RESULT goes out of tag 0's answer slot");
constexpr int kPollBatch = 32;
constexpr uint32_t kCmCheckEvery = 4096;  // passes between cm-channel checks while spinning
constexpr std::chrono::seconds kEstablishTimeout{10};
// While the port is down, the goodbye is retried this often.
constexpr std::chrono::milliseconds kGoodbyeEvery{200};
// A peer silent for this long is probed; a client with keepalive on sends more often than this.
// One that vanished without a disconnect (host or link gone) fails the probe after the QP's
// retries (transport/connection.cc: about 2 s), so its connection is freed within ~7.5 s.
constexpr std::chrono::seconds kProbeSilentPeerAfter{5};

}  // namespace

transport::QpSizes Connection::qp_sizes(const wire::AcceptData& accepted) {
  transport::QpSizes sizes;
  sizes.send_wrs = SendQueue::capacity(accepted.queue_depth);
  sizes.recv_wrs = accepted.queue_depth + (accepted.keep_alive() ? 1 : 0);
  sizes.max_inline = 64;
  if (accepted.batch()) sizes.max_send_sge = wire::kMaxBatch;  // a batched answer: one entry per Response
  return sizes;
}

Connection::Connection(std::unique_ptr<transport::Connection> rdma, const Backend& backend, std::string export_name,
                       const wire::AcceptData& acc, uint8_t max_reads, uint16_t queue_id, const ServerOptions& opts,
                       std::optional<ConnectionAuth> auth)
    : export_name_(std::move(export_name)), queue_id_(queue_id), peer_(rdma->peer_address()), backend_(backend),
      depth_(acc.queue_depth), max_io_(acc.max_io_bytes), max_reads_(max_reads), read_imm_(acc.read_imm()),
      batch_(acc.batch()), push_writes_(acc.push_writes()), push_slots_(acc.push_slots()),
      pull_reads_(acc.pull_reads()), keep_alive_(acc.keep_alive()), zero_based_window_(acc.version >= 9), size_in_keep_alive_(acc.version >= 10), recv_slots_(uint16_t(depth_ + (keep_alive_ ? 1 : 0))),
      recv_slot_bytes_(std::max(batch_ ? wire::kMaxBatch * wire::kCommandSize : kMsgSlot,
                                auth ? kAuthRecvSlot : size_t(0))),
      auth_(std::move(auth)),
      spin_(opts.spin), serial_spin_(std::max(opts.spin, opts.serial_spin)),
      rdma_(std::move(rdma)), recvs_(recv_slots_) {}

Connection::~Connection() = default;

void Connection::fill_window(uint32_t& rkey, uint64_t& addr) const {
  rkey = window_mr_->rkey;
  addr = zero_based_window_ ? 0 : reinterpret_cast<uint64_t>(push_slots_ ? pool_.get() : static_cast<void*>(direct_.data()));
}

void Connection::open_window() {
  if (!push_writes_ && !pull_reads_) return;
  int access = IBV_ACCESS_LOCAL_WRITE | (push_writes_ ? IBV_ACCESS_REMOTE_WRITE : 0) |
               (pull_reads_ ? IBV_ACCESS_REMOTE_READ : 0);
  void* base = push_slots_ ? pool_.get() : static_cast<void*>(direct_.data());
  size_t len = push_slots_ ? pool_.size() : direct_.size();
  window_mr_ = rdma_->register_zero_based(base, len, access, fmt::format("export '{}' window", export_name_));
}

void Connection::setup() {
  msgs_ = MappedRegion::anonymous(size_t(recv_slots_) * recv_slot_bytes_ + size_t(depth_) * kMsgSlot +
                                      scratch_slots() * kMsgSlot,
                                  true);
  msgs_mr_ = rdma_->register_memory(msgs_.get(), msgs_.size(), IBV_ACCESS_LOCAL_WRITE, "message slots");
  std::span<std::byte> direct = backend_.direct_memory();
  std::span<std::byte> registered;
  if (!direct.empty()) {
    // RDMA straight into the export: RDMA READ lands there (local write), RDMA WRITE reads it;
    // with PUSH_WRITES the client's RDMA WRITEs land there too (remote write, this export only:
    // the MR covers exactly its bytes, and negotiation never grants it for a read-only one);
    // with PULL_READS the client's RDMA READs read it (remote read, the same bounds).
    direct_ = direct;
    // A v9 client's window is a zero-based region of its own (open_window); an older client's is
    // this one, addressed by our virtual addresses.
    int access = IBV_ACCESS_LOCAL_WRITE;
    if (!zero_based_window_)
      access |= (push_writes_ ? IBV_ACCESS_REMOTE_WRITE : 0) | (pull_reads_ ? IBV_ACCESS_REMOTE_READ : 0);
    data_mr_ = rdma_->register_memory(direct.data(), direct.size(), access,
                                      fmt::format("export '{}' memory", export_name_));
    registered = direct;
  } else {
    if ((push_writes_ && !push_slots_) || pull_reads_)
      throw_setup("PUSH_WRITES into or PULL_READS from the export need an export served from memory");
    // With PUSH_SLOTS the client's RDMA WRITEs land in its tags' slots: this pool is the
    // connection's own, and holds nothing but that client's data in flight.
    pool_ = MappedRegion::anonymous(size_t(depth_) * max_io_, true);
    int access = IBV_ACCESS_LOCAL_WRITE | (push_slots_ && !zero_based_window_ ? IBV_ACCESS_REMOTE_WRITE : 0);
    data_mr_ = rdma_->register_memory(pool_.get(), pool_.size(), access, "buffer pool");
    registered = pool_.bytes();
  }
  if (!zero_based_window_) {
    window_mr_ = data_mr_;
  } else if (!auth_) {
    open_window();  // with authentication: once the client has proved its key
  }
  bq_ = backend_.open_queue(registered, depth_);

  PipelineConfig pc;
  pc.peer = peer_;
  pc.depth = depth_;
  pc.max_reads = max_reads_;
  pc.direct = !direct_.empty();
  pc.read_imm = read_imm_;
  pc.keep_alive = keep_alive_;
  pc.limits = CommandLimits{backend_.size(), backend_.block_size(), backend_.read_only(), backend_.supported_ops(),
                            max_io_, depth_, push_writes_};
  // DISCARD and WRITE_ZEROES move no data: the negotiated max IO (a buffer size) does not
  // bound them, only the export does.
  pc.limits_nodata = pc.limits;
  pc.limits_nodata.max_io_bytes = UINT32_MAX;
  pc.limits_nodata.push_writes = false;
  pipeline_.emplace(std::move(pc), static_cast<CommandIo&>(*this), stats_);

  SendQueueConfig sc;
  sc.depth = depth_;
  sc.queue_id = queue_id_;
  sc.batch = batch_;
  sc.max_inline = rdma_->max_inline();
  sc.answer_lkey = msgs_mr_->lkey;
  sends_.emplace(
      sc, [this](ibv_send_wr* first, ibv_send_wr** bad) { return ibv_post_send(rdma_->qp(), first, bad); }, stats_);

  parked_.resize(recv_slots_);
  for (uint16_t i = 0; i < recv_slots_; ++i) queue_recv(i);
  post_recvs();
  if (failed_) throw_setup("posting {} receives for {} failed", recv_slots_, peer_);
}

nlohmann::json Connection::to_json() const {
  nlohmann::json j = stats_.to_json();
  j["peer"] = peer_;
  j["export"] = export_name_;
  j["queue"] = queue_id_;
  j["depth"] = depth_;
  j["memory_bytes"] = memory_bytes_;
  j["poll_group"] = poll_group_;
  j["max_io_bytes"] = max_io_;
  j["direct"] = !direct_.empty();
  j["read_imm"] = read_imm_;
  j["batch"] = batch_;
  j["push_writes"] = push_writes_;
  j["push_slots"] = push_slots_;
  j["pull_reads"] = pull_reads_;
  j["keep_alive"] = keep_alive_;
  if (auth_) j["host"] = authenticated_.load(std::memory_order_acquire) ? host_id_ : std::string();
  return j;
}

uint8_t* Connection::recv_slot(uint16_t i) const {
  return static_cast<uint8_t*>(msgs_.get()) + size_t(i) * recv_slot_bytes_;
}
uint8_t* Connection::resp_slot(uint16_t tag) const {
  return static_cast<uint8_t*>(msgs_.get()) + size_t(recv_slots_) * recv_slot_bytes_ + size_t(tag) * kMsgSlot;
}
// Answers to refused commands: their tag may be out of range or busy, so they never use a
// tag's slot. They leave inline, one per SEND (the slot is copied when posted), and no more
// answers than the send queue's bound (SendQueue::has_room) wait unposted at once: a slot is
// posted before the ring comes back to it, however fast a client floods bad commands. (On a
// device without inline sends such a flood can still garble the flooder's own answers.)
size_t Connection::scratch_slots() const { return size_t(depth_) * kWrsPerTag + kWrsPerTag; }
uint8_t* Connection::scratch_slot() {
  size_t i = scratch_next_++ % scratch_slots();
  return static_cast<uint8_t*>(msgs_.get()) + size_t(recv_slots_) * recv_slot_bytes_ + size_t(depth_) * kMsgSlot +
         i * kMsgSlot;
}
std::byte* Connection::data_buffer(const wire::Command& cmd) const {
  if (!direct_.empty()) return direct_.data() + cmd.offset;  // validated: within the export
  return static_cast<std::byte*>(pool_.get()) + size_t(cmd.tag) * max_io_;
}

// ------------------------------------------------------------------ phases

int Connection::step(bool stopping) {
  switch (phase_) {
    case ConnectionPhase::kEstablishing: return establish_step(stopping);
    case ConnectionPhase::kAuthenticating: return authenticate_step(stopping);
    case ConnectionPhase::kServing: return serve_step(stopping);
    case ConnectionPhase::kClosing: return close_step();
    case ConnectionPhase::kDisconnecting: return disconnect_step(stopping);
    case ConnectionPhase::kDone: return 0;
  }
  return 0;
}

int Connection::establish_step(bool stopping) {
  cm_ready_ = false;
  if (deadline_ == Clock::time_point{}) deadline_ = Clock::now() + kEstablishTimeout;
  while (auto ev = rdma_->poll_cm_event_st()) {
    if (ev->type == RDMA_CM_EVENT_ESTABLISHED) {
      log::server()->debug("{}: serving export '{}' queue {} (depth {}, max IO {}, {} RDMA READs, {})", peer_,
                           export_name_, queue_id_, depth_, max_io_, max_reads_,
                           direct_.empty() ? "buffer pool" : "direct to export memory");
      phase_ = auth_ ? ConnectionPhase::kAuthenticating : ConnectionPhase::kServing;
      deadline_ = Clock::now() + kAuthTimeout;
      return 1;
    }
    log::server()->warn("{}: connection not established: {} (status {})", peer_, rdma_event_str(ev->type),
                        ev->status);
    phase_ = ConnectionPhase::kClosing;
    return 1;
  }
  if (stopping || Clock::now() >= deadline_) {
    if (!stopping) log::server()->warn("{}: connection not established within {} s", peer_, kEstablishTimeout.count());
    phase_ = ConnectionPhase::kClosing;
    return 1;
  }
  return 0;
}

int Connection::serve_step(bool stopping) {
  if (!draining_ && stopping) {
    draining_ = true;
    pipeline_->start_draining();
    log::server()->debug("{}: stopping: finishing {} commands in flight", peer_, pipeline_->inflight());
  }
  if (cm_ready_ || ++passes_ % kCmCheckEvery == 0) {
    cm_ready_ = false;
    handle_cm_events();
  }
  if (revoked_.load(std::memory_order_relaxed) && !failed_) {
    log::server()->warn("{}: host '{}' may no longer attach export '{}' (--auth-keys reloaded): closing queue {}",
                        peer_, host_id_, export_name_, queue_id_);
    fail("access revoked");
  }
  int work = poll_cq() + poll_backend();
  flush();
  work += resume_parked();
  // Every answer has been posted and every work request has completed: the QP may go. A
  // failed QP's work requests come back flushed; what the backend still holds waits for it.
  bool finished = (failed_ && pipeline_->inflight() == 0 && sends_->empty()) ||
                  (draining_ && pipeline_->inflight() == 0 && sends_->empty() && parked_len_ == 0 && sends_->drained()) ||
                  (failed_ && !bq_->busy());
  if (finished) {
    phase_ = ConnectionPhase::kClosing;
    return work + 1;
  }
  return work;
}

// Lets the backend finish what it holds (its buffers are ours), then tears down in order: QP
// drained and destroyed, MRs deregistered, then the backend queue and the buffers.
int Connection::close_step() {
  if (bq_ && bq_->busy()) {
    BackendCompletion done[kPollBatch];
    int n = bq_->poll(done);
    if (n >= 0 && bq_->busy()) return n;
  }
  rdma_->close_st();
  cq_armed_ = false;
  bq_.reset();
  // With the port down the disconnect waits (transport::Connection::disconnect_st); the client's
  // side may be parked the same way, so whichever comes first after the port is up says goodbye.
  if (rdma_->disconnect_pending())
    log::server()->info("{}: the port of {} is down: disconnecting once it is up", peer_, rdma_->device_name());
  phase_ = ConnectionPhase::kDisconnecting;
  deadline_ = Clock::now() + kGoodbyeEvery;
  return 1;
}

int Connection::disconnect_step(bool stopping) {
  if (rdma_->disconnect_pending() && !device_removed_ && !stopping) {
    if (!cm_ready_ && Clock::now() < deadline_) return 0;
    cm_ready_ = false;
    deadline_ = Clock::now() + kGoodbyeEvery;
    handle_cm_events();
    rdma_->disconnect_st();
    if (rdma_->disconnect_pending() && !device_removed_) return 0;
  }
  log::server()->info("{}: export '{}' queue {} closed ({} commands, {} errors, {} rejected)", peer_, export_name_,
                      queue_id_, stats_.commands.get(), stats_.errors.get(), stats_.rejected.get());
  phase_ = ConnectionPhase::kDone;
  return 1;
}

bool Connection::ready_to_sleep(bool stopping) {
  if (phase_ == ConnectionPhase::kServing) {
    if (!sends_->empty() || parked_len_ > 0) return false;  // waiting for send-queue room: keep polling
    probe_peer_if_silent();
    if (!sends_->empty()) return false;  // the probe goes out with the next pass
  }
  bool cq = phase_ == ConnectionPhase::kServing || phase_ == ConnectionPhase::kAuthenticating;
  if (cq && cq_armed_) {
    // Armed at an earlier sleep and no event taken since: a completion since then has raised
    // one, which poll() sees. (Arming is a system call on rxe; a group would pay it for
    // every idle connection at every sleep.)
    if (phase_ == ConnectionPhase::kServing) stats_.sleeps.add_st();
    return true;
  }
  if (cq) {
    if (int rc = rdma_->arm_cq_st(); rc < 0) {
      log::server()->error("{}: ibv_req_notify_cq: {}", peer_, errno_text(rc));
      if (phase_ == ConnectionPhase::kServing) fail("ibv_req_notify_cq failed");
      return false;
    }
    cq_armed_ = true;
  }
  if (step(stopping) > 0) return false;  // armed before this look: nothing arriving now is lost
  if (phase_ == ConnectionPhase::kServing) stats_.sleeps.add_st();
  return true;
}

void Connection::watch(std::vector<pollfd>& fds) const {
  bool cm = phase_ != ConnectionPhase::kClosing && phase_ != ConnectionPhase::kDone;
  bool backend = bq_ && bq_->event_fd() >= 0 &&
                 (phase_ == ConnectionPhase::kServing || phase_ == ConnectionPhase::kClosing);
  fds.push_back({cq_armed_ ? rdma_->cq_fd() : -1, POLLIN, 0});  // poll() skips a negative fd
  fds.push_back({cm ? rdma_->cm_fd() : -1, POLLIN, 0});
  fds.push_back({backend ? bq_->event_fd() : -1, POLLIN, 0});
}

void Connection::woken(const pollfd* fds) {
  if (fds[0].revents) {
    rdma_->consume_cq_event_st();
    cq_armed_ = false;  // the event disarmed it
  }
  if (fds[1].revents) cm_ready_ = true;
}

void Connection::handle_cm_events() {
  while (auto ev = rdma_->poll_cm_event_st()) {
    switch (ev->type) {
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
      case RDMA_CM_EVENT_TIMEWAIT_EXIT:
        if (ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL) device_removed_ = true;
        if (!failed_) log::server()->info("{}: {}", peer_, rdma_event_str(ev->type));
        fail("peer disconnected");
        break;
      default:
        log::server()->debug("{}: rdma_cm event {}", peer_, rdma_event_str(ev->type));
    }
  }
}

void Connection::probe_peer_if_silent() {
  auto now = Clock::now();
  if (receives_ != receives_seen_ || last_heard_ == Clock::time_point{}) {
    receives_seen_ = receives_;
    last_heard_ = now;
    return;
  }
  if (probe_outstanding_ || failed_ || draining_ || now - last_heard_ < kProbeSilentPeerAfter) return;
  probe_outstanding_ = true;
  last_heard_ = now;  // the next probe, if the peer stays silent and alive, one period later
  stats_.peer_probes.add_st();
  sends_->probe();
}

// The QP is unusable: stop posting; flushed completions free the tags that wait on it.
void Connection::fail(const char* why) {
  if (failed_) return;
  failed_ = true;
  log::server()->debug("{}: connection failed ({}), {} commands in flight", peer_, why, pipeline_->inflight());
  rdma_->disconnect_st();
  sends_->clear();
  parked_len_ = 0;
  pipeline_->fail();
}

// ------------------------------------------------------------------ completions

int Connection::poll_cq() {
  ibv_wc wcs[kPollBatch];
  int n = ibv_poll_cq(rdma_->cq(), kPollBatch, wcs);
  stats_.polls.add_st();
  if (n <= 0) {
    if (n < 0) {
      log::server()->error("{}: ibv_poll_cq: {}", peer_, errno_text(-n));
      fail("poll_cq failed");
    }
    stats_.idle_polls.add_st();
    return 0;
  }
  size_t received = 0;  // commands
  uint64_t keep_alives = stats_.keep_alives.get();
  for (int i = 0; i < n; ++i) {
    const ibv_wc& wc = wcs[i];
    WorkId id = WorkId::decode(wc.wr_id);
    if (wc.status != IBV_WC_SUCCESS) {
      if (!failed_ && wc.status != IBV_WC_WR_FLUSH_ERR)
        log::server()->warn("{}: {} failed: {} (vendor error {:#x}){}", peer_,
                            id.kind == WorkKind::kRdmaRecv   ? "receive"
                            : id.kind == WorkKind::kRdmaRead ? "RDMA READ of write data"
                            : id.kind == WorkKind::kRdmaWrite && id.op == kProbeWriteOp ? "probe of a silent client"
                                                                                         : "send",
                            ibv_wc_status_str(wc.status), wc.vendor_err,
                            wc.status == IBV_WC_RETRY_EXC_ERR ? ": the client is gone; freeing its connection" : "");
      fail("work request failed");
      if (id.kind == WorkKind::kRdmaRead) pipeline_->on_read_done(id.tag, ReadKind(id.op), false);
      continue;
    }
    switch (id.kind) {
      case WorkKind::kRdmaRecv: {
        ++receives_;
        size_t commands = commands_in(wc.byte_len);
        received += commands;
        if (parked_len_ > 0 || !sends_->has_room(commands)) {
          park(id.tag, wc.byte_len);
        } else {
          on_message(id.tag, wc.byte_len);
        }
        break;
      }
      case WorkKind::kRdmaRead:
        sends_->retire();
        pipeline_->on_read_done(id.tag, ReadKind(id.op), true);
        break;
      case WorkKind::kRdmaWrite:
        if (id.op == kProbeWriteOp) probe_outstanding_ = false;
        sends_->retire();
        break;
      case WorkKind::kRdmaSend:
        sends_->retire();
        break;
      default:
        break;
    }
  }
  post_recvs();
  // A KEEP_ALIVE comes from an idle client: it is not part of a serial stream.
  if (received > 0) note_arrivals(received - std::min<uint64_t>(received, stats_.keep_alives.get() - keep_alives));
  return n;
}

// One command alone, with at most itself in flight: a serial stream if it keeps up. Large
// transfers at some depth also come one command at a time, but while the answers to the
// others still fill the send queue (used() counts unsignaled work requests until a later
// signaled one completes: up to kSignalEvery of them).
void Connection::note_arrivals(size_t commands) {
  bool alone = commands == 1 && pipeline_->inflight() <= 1 && sends_->used() <= kSignalEvery + kWrsPerTag;
  serial_streak_ = alone ? std::min(serial_streak_ + 1, kSerialStreak) : 0;
  if (serial_streak_ == kSerialStreak) stats_.serial_commands.add_st();
}

// A serial peer's next command comes one round trip after our answer, so polling for it pays.
// While that answer still waits on a remote backend (an rbd export's cluster: milliseconds away),
// polling would only take the CPU from the threads that bring it.
std::chrono::microseconds Connection::spin() const {
  if (serial_streak_ != kSerialStreak) return spin_;
  return backend_.completes_remotely() && bq_ && bq_->busy() ? spin_ : serial_spin_;
}

// Commands a receive of byte_len bytes holds (a malformed one counts as one, to be refused).
size_t Connection::commands_in(uint32_t byte_len) const {
  return std::max<size_t>(1, wire::messages_in(byte_len, wire::kCommandSize, batch_));
}

// One receive: a command, or with BATCH up to kMaxBatch of them back to back.
void Connection::on_message(uint16_t slot, uint32_t byte_len) {
  if (slot >= recv_slots_) return;
  ReceivedCommands r = decode_received(std::span<const uint8_t>(recv_slot(slot), recv_slot_bytes_), byte_len, batch_);
  queue_recv(slot);  // the commands are decoded: the slot may take the next message
  for (size_t i = 0; i < r.count; ++i) pipeline_->on_command(r.commands[i], r.malformed, byte_len);
}

void Connection::park(uint16_t slot, uint32_t byte_len) {
  if (slot >= recv_slots_ || parked_len_ >= parked_.size()) return;  // one receive per slot: cannot happen
  parked_[parked_len_++] = Parked{slot, byte_len};
  stats_.parked_max.max_st(parked_len_);
}

int Connection::resume_parked() {
  size_t done = 0;
  while (done < parked_len_ && sends_->has_room(commands_in(parked_[done].byte_len))) {
    on_message(parked_[done].slot, parked_[done].byte_len);
    ++done;
  }
  if (done == 0) return 0;
  std::copy(parked_.begin() + ptrdiff_t(done), parked_.begin() + ptrdiff_t(parked_len_), parked_.begin());
  parked_len_ -= done;
  post_recvs();
  return int(done);
}

int Connection::poll_backend() {
  BackendCompletion done[kPollBatch];
  int n = bq_->poll(done);
  if (n < 0) {
    log::server()->error("{}: backend queue failed: {}", peer_, errno_text(n));
    return 0;
  }
  for (int i = 0; i < n; ++i) {
    if (!pipeline_->on_backend_done(done[i].tag, done[i].result))
      log::server()->error("{}: backend completed tag {} that is not with it", peer_, done[i].tag);
  }
  return n;
}

// ------------------------------------------------------------------ posting

void Connection::queue_recv(uint16_t slot) {
  recvs_.add(WorkId{WorkKind::kRdmaRecv, queue_id_, slot, 0, 0}.encode(), reinterpret_cast<uint64_t>(recv_slot(slot)),
             uint32_t(recv_slot_bytes_), msgs_mr_->lkey);
}

void Connection::post_recvs() {
  if (recvs_.empty()) return;
  if (failed_) return recvs_.clear();
  size_t n = recvs_.size();
  if (int rc = recvs_.post([this](ibv_recv_wr* first, ibv_recv_wr** bad) {
        return ibv_post_recv(rdma_->qp(), first, bad);
      })) {
    log::server()->error("{}: posting {} receives: {}", peer_, n, errno_text(rc));
    fail("post_recv failed");
  }
}

// Posts as much of the pass's work as the send queue has room for, with one doorbell.
void Connection::flush() {
  if (failed_) return;
  if (int rc = sends_->flush(draining_)) {
    log::server()->error("{}: ibv_post_send: {}", peer_, errno_text(rc));
    fail("post_send failed");
  }
}

void Connection::queue_rdma_read(const wire::Command& cmd, ReadKind kind) {
  ibv_send_wr& wr = sends_->rdma(WorkId{WorkKind::kRdmaRead, queue_id_, cmd.tag, uint8_t(kind), cmd.generation}.encode(),
                                 IBV_WR_RDMA_READ, reinterpret_cast<uint64_t>(data_buffer(cmd)), cmd.length,
                                 data_mr_->lkey, cmd.addr, cmd.rkey);
  // A credited READ's data must be here before the backend sees it; a direct one's answer is
  // fenced behind it instead.
  if (kind == ReadKind::kCredited) wr.send_flags = IBV_SEND_SIGNALED;
}

void Connection::queue_rdma_write(const wire::Command& cmd, bool read_done) {
  ibv_send_wr& wr = sends_->rdma(WorkId{WorkKind::kRdmaWrite, queue_id_, cmd.tag, 0, cmd.generation}.encode(),
                                 IBV_WR_RDMA_WRITE, reinterpret_cast<uint64_t>(data_buffer(cmd)), cmd.length,
                                 data_mr_->lkey, cmd.addr, cmd.rkey);
  if (read_done) {
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.imm_data = htobe32(wire::encode_read_done(cmd.tag, cmd.generation));
  }
}

void Connection::queue_answer(const wire::Command& cmd, int err, AnswerKind kind) {
  if (failed_) return;
  bool scratch = kind == AnswerKind::kRefusal || kind == AnswerKind::kKeepAlive;
  uint8_t* p = scratch ? scratch_slot() : resp_slot(cmd.tag);
  wire::Response r{cmd.tag, wire::is_known_opcode(uint8_t(cmd.opcode)) ? cmd.opcode : wire::Opcode::kRead,
                   cmd.generation, wire::errno_to_status(err)};
  // An export beyond what the field holds (512 TiB) says nothing: its clients keep their size.
  if (kind == AnswerKind::kKeepAlive && size_in_keep_alive_ && backend_.size() / 512 <= wire::kMaxExportSectors)
    r.export_sectors = backend_.size() / 512;
  wire::encode_into(r, std::span<uint8_t, wire::kResponseSize>(p, wire::kResponseSize));
  switch (kind) {
    case AnswerKind::kAnswer: return sends_->answer(p);
    case AnswerKind::kFenced: return sends_->fenced_answer(p);
    case AnswerKind::kRefusal: return sends_->scratch_answer(p);
    case AnswerKind::kKeepAlive: return sends_->keep_alive_answer(p);
  }
}

int Connection::submit_backend(const wire::Command& cmd) {
  bool data = cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite;
  uint32_t flags = cmd.flags & wire::kCmdFlagFua;  // PUSHED is the connection's business, not the backend's
  return bq_->submit(cmd.tag, cmd.opcode, cmd.offset, cmd.length, data ? data_buffer(cmd) : nullptr,
                     flags);
}

}  // namespace ublkrdma::server
