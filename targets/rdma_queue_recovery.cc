// An rdma queue's lost connections: their requests held and reissued, the reconnect attempts,
// the timeouts that fail held IO (RecoveryPolicy), the IO timer, and what `list --json` shows.
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "base/log.h"
#include "targets/rdma_queue_target.h"
#include "targets/rdma_queue_tokens.h"

namespace ublkrdma::targets {
namespace {

// While a connection recovers, the queue checks its deadlines this often.
constexpr std::chrono::milliseconds kRecoveryTick{100};

// A static text for an errno (ConnectionRecovery keeps the last error as a static string).
const char* attempt_error(int err) {
  const char* s = err > 0 ? ::strerrordesc_np(err) : nullptr;
  return s ? s : "connecting failed";
}

}  // namespace

void RdmaQueueTarget::handle_cm_events_st(size_t index) {
  RdmaConnection& c = *connections_[index];
  if (c.failed()) return;  // released; a new connection gets its own channel
  while (auto ev = c.poll_cm_event_st()) {
    switch (ev->type) {
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        // Its removal waits for everything we hold on it: nothing of the connection may stay.
        return connection_lost_st(index, rdma_event_str(ev->type), true);
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_CONNECT_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_ADDR_CHANGE:
      case RDMA_CM_EVENT_TIMEWAIT_EXIT:
        // The connection object is released by this: no more events to read from it.
        return connection_lost_st(index, rdma_event_str(ev->type));
      default:
        log::rdma()->debug("queue {}: connection {}: rdma_cm event {}", queue_id_, index, rdma_event_str(ev->type));
    }
  }
}

void RdmaQueueTarget::handle_io_timer_st() {
  uint64_t expirations = 0;
  if (::read(io_timer_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return;
  tick_ += uint32_t(expirations);
  if (stopped_ || inflight_ == held_.size()) return;
  for (uint16_t tag = 0; tag < depth_; ++tag) {
    const RdmaRequest& t = requests_[tag];
    if ((t.state == RequestState::kQueued || t.state == RequestState::kInFlight || t.state == RequestState::kClosing) &&
        tick_ - t.tick > kTicksPerTimeout && !connections_[t.connection]->failed()) {
      counters_.timeouts.add_st();
      log::rdma()->error("queue {}: tag {} got no response within {} ms on connection {}: taking it as lost",
                         queue_id_, tag, opts_.io_timeout.count(), t.connection);
      connection_lost_st(t.connection, "IO timeout");  // reissues the tag, with a fresh tick
    }
  }
}

// Every live connection gets a KEEP_ALIVE per tick: a server whose process stopped still
// acknowledges our RDMA in its kernel, and a pulled READ or fenced WRITE never reaches it, so
// only an answer from the server itself proves it alive.
void RdmaQueueTarget::handle_keep_alive_timer_st() {
  uint64_t expirations = 0;
  if (::read(keep_alive_timer_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return;
  if (stopped_) return;
  for (size_t i = 0; i < connections_.size(); ++i) {
    RdmaConnection& c = *connections_[i];
    if (!recovery_[i].live() || c.failed()) continue;
    if (!c.keep_alive_tick_st(kTicksPerKeepAlive, *this)) {
      counters_.keep_alive_timeouts.add_st();
      log::rdma()->error("queue {}: connection {} to {}: no answer to a keepalive within {} ms (server stopped or "
                         "unreachable)",
                         queue_id_, i, c.peer_address(), opts_.keep_alive_tmo.count());
      connection_lost_st(i, "keepalive timeout");
    }
  }
}

void RdmaQueueTarget::housekeeping_st() {
  for (size_t i = 0; i < connections_.size(); ++i) handle_cm_events_st(i);
  if (io_timer_) handle_io_timer_st();
  if (keep_alive_timer_) handle_keep_alive_timer_st();
  handle_recovery_timer_st();
  handle_reconnected_st();
}

void RdmaQueueTarget::connection_lost_st(size_t index, const char* why, bool device_removed) {
  RdmaConnection& c = *connections_[index];
  if (stopped_ || c.failed()) return;
  ConnectionRecovery& r = recovery_[index];
  counters_.connection_lost.add_st();
  pending_ -= c.pending();
  std::string peer = c.peer_address();
  bool safe = c.fail_st();
  r.lost(RecoveryClock::now(), why);
  --live_;
  if (!safe) {
    r.give_up("its QP could be neither drained nor destroyed");
    log::rdma()->error("queue {}: connection {} to {} lost ({}), and its QP could be neither drained nor destroyed: "
                       "its requests stay held (the device may still write their buffers) until the device is deleted",
                       queue_id_, index, peer, why);
    return;
  }
  // Its QP is out of service: no answer, READ data or RDMA READ of ours can land any more, so
  // its requests may go out again on another connection, with new generations.
  size_t taken = 0;
  for (uint16_t tag = 0; tag < depth_; ++tag) {
    RdmaRequest& t = requests_[tag];
    if (t.connection != index) continue;
    if (t.state == RequestState::kQueued || t.state == RequestState::kInFlight) {
      c.release_slot_st(t.slot);
      hold_st(tag);
      ++taken;
    } else if (t.state == RequestState::kClosing) {
      complete_tag_st(tag, t.result);  // answered, and its window died with the QP
    }
  }
  counters_.reissued.add_st(taken);
  choose_active_path_st();
  // Nothing of it survives the loss: its QP, CQ, channels and registrations go now (a removed
  // device waits for them).
  ctx_->watch_fd_st(-1, connection_token(kTokenCq, index));
  ctx_->watch_fd_st(-1, connection_token(kTokenCm, index));
  if (auto held = c.release_st(device_removed)) {
    log::rdma()->warn("queue {}: connection {}: the port of {} is down: it disconnects once the port is up",
                      queue_id_, index, held->device_name());
    parked_.push_back(std::move(held));
  }
  if (r.state() == ConnectionState::kFailed) {
    log::rdma()->warn("queue {}: connection {} to {} lost ({}); not reconnecting (--ctrl-loss-tmo 0)", queue_id_,
                      index, peer, why);
  } else {
    log::rdma()->warn("queue {}: connection {} to {} lost ({}): {} request(s) taken back; reconnecting every {} ms",
                      queue_id_, index, peer, why, taken, opts_.recovery.reconnect_delay.count());
  }
  if (r.state() != ConnectionState::kFailed || !parked_.empty()) arm_recovery_timer_st(true);
  drain_held_st();
  if (pending_) post_all_st();
}

void RdmaQueueTarget::drain_held_st() {
  size_t index;
  while (!held_.empty() && pick_connection_st(index)) {
    uint16_t tag = held_.front();
    held_.pop_front();
    send_on_st(tag, index);
  }
  held_gauge_.store(uint32_t(held_.size()), std::memory_order_relaxed);
  if (!held_.empty() && live_ == 0 && fails_io_st(RecoveryClock::now()))
    fail_held_st("no connection is live and the queue fails IO");
}

void RdmaQueueTarget::fail_held_st(const char* why) {
  if (held_.empty()) return;
  log::rdma()->warn("queue {}: failing {} held request(s) with EIO: {}", queue_id_, held_.size(), why);
  std::deque<uint16_t> tags;
  tags.swap(held_);
  held_gauge_.store(0, std::memory_order_relaxed);
  for (uint16_t tag : tags) complete_tag_st(tag, -EIO);
}

void RdmaQueueTarget::on_device_stopping_st() {
  deleting_ = true;
  if (live_ == 0) fail_held_st("the device is being deleted and no connection is live");
}

bool RdmaQueueTarget::fails_io_st(RecoveryClock::time_point now) const {
  if (deleting_) return true;
  for (size_t i = 0; i < connections_.size(); ++i)
    if (!recovery_[i].fails_io(now)) return false;
  return true;
}

void RdmaQueueTarget::handle_recovery_timer_st() {
  uint64_t expirations = 0;
  if (::read(recovery_timer_.get(), &expirations, sizeof(expirations)) != sizeof(expirations)) return;
  if (stopped_) return;
  auto now = RecoveryClock::now();
  bool recovering = false, all_failed = true;
  for (size_t i = 0; i < connections_.size(); ++i) {
    ConnectionRecovery& r = recovery_[i];
    if (r.live()) {
      all_failed = false;
      continue;
    }
    if (r.state() == ConnectionState::kReconnecting) {
      if (r.expire(now)) {
        log::rdma()->warn("queue {}: connection {}: giving up after --ctrl-loss-tmo ({} attempt(s) failed)", queue_id_,
                          i, r.failed_attempts());
      } else if (r.attempt_due(now)) {
        r.attempt_started();
        reconnector_st().request_st(i);
      }
    }
    if (r.state() != ConnectionState::kFailed) recovering = true, all_failed = false;
  }
  if (live_ == 0 && !held_.empty() && fails_io_st(now))
    fail_held_st(all_failed ? "every connection is given up" : "--fast-io-fail-tmo passed");
  release_parked_st();
  if (!recovering && parked_.empty()) arm_recovery_timer_st(false);
}

void RdmaQueueTarget::release_parked_st() {
  for (size_t i = 0; i < parked_.size();) {
    bool removed = false;
    while (auto ev = parked_[i]->poll_cm_event_st()) removed |= ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL;
    if (!removed && !parked_[i]->port_active()) {
      ++i;
      continue;
    }
    if (!removed) parked_[i]->disconnect_st();
    parked_[i] = std::move(parked_.back());
    parked_.pop_back();
  }
}

void RdmaQueueTarget::handle_reconnected_st() {
  if (!reconnector_ || stopped_) return;
  auto now = RecoveryClock::now();
  for (Reconnector::Result& res : reconnector_->take_results_st()) {
    size_t i = res.index;
    ConnectionRecovery& r = recovery_[i];
    if (r.state() != ConnectionState::kConnecting) continue;  // given up meanwhile: it closes with res
    if (!res.connection) {
      const char* was = r.last_error();
      r.attempt_failed(now, attempt_error(res.errno_value));
      // The first failure of an outage at warn, and each change of reason (the port came up, but
      // now the connect times out); the rest at debug.
      if (r.failed_attempts() == 1 || r.last_error() != was) {
        log::rdma()->warn("queue {}: connection {}: reconnecting failed: {} (trying again every {} ms)", queue_id_,
                          i, res.error, opts_.recovery.reconnect_delay.count());
      } else {
        log::rdma()->debug("queue {}: connection {}: reconnect attempt {} failed: {}", queue_id_, i,
                           r.failed_attempts(), res.error);
      }
      if (r.state() == ConnectionState::kFailed)
        log::rdma()->warn("queue {}: connection {}: giving up after --ctrl-loss-tmo ({} attempt(s) failed)", queue_id_,
                          i, r.failed_attempts());
      continue;
    }
    if (uint32_t was = accepted_.instance_id, now_id = res.connection->accepted().instance_id; was != now_id) {
      r.give_up("the export was recreated: its data is gone");
      log::rdma()->error("queue {}: connection {}: export '{}' is a new instance (id {:#x}, was {:#x}): the server "
                         "lost the data this device had (a ram export of a restarted server?); failing IO rather "
                         "than reading another export's data",
                         queue_id_, i, opts_.export_name, now_id, was);
      continue;
    }
    if (!same_export(res.connection->accepted())) {
      r.give_up("the server describes the export differently");
      log::rdma()->error("queue {}: connection {}: the server now describes export '{}' differently (block size, "
                         "limits or features): not using it",
                         queue_id_, i, opts_.export_name);
      continue;
    }
    uint64_t size = res.connection->accepted().export_size;
    replace_connection_st(i, std::move(res.connection));
    on_export_size_st(size);  // resized while the connection was down
  }
  drain_held_st();  // out on what came back, or failed if every connection is given up now
}

void RdmaQueueTarget::replace_connection_st(size_t index, std::unique_ptr<RdmaConnection> c) {
  ConnectionRecovery& r = recovery_[index];
  try {
    c->start_st(setup_, index, counters_);
  } catch (const SetupError& e) {
    r.attempt_failed(RecoveryClock::now(), "starting the new connection failed");
    log::rdma()->warn("queue {}: connection {}: {}", queue_id_, index, e.what());
    return;
  }
  connections_[index] = std::move(c);  // the old one's resources went when it was lost
  RdmaConnection& n = *connections_[index];
  ctx_->watch_fd_st(n.cq_fd(), connection_token(kTokenCq, index));
  ctx_->watch_fd_st(n.cm_fd(), connection_token(kTokenCm, index));
  uint32_t failed = r.failed_attempts();
  r.connected();
  ++live_;
  choose_active_path_st();
  log::rdma()->info("queue {}: connection {} to {} re-established after {} failed attempt(s); reissuing {} held "
                    "request(s)",
                    queue_id_, index, n.peer_address(), failed, held_.size());
  drain_held_st();
  if (pending_) post_all_st();
}

bool RdmaQueueTarget::same_export(const wire::AcceptData& a) const {
  const wire::AcceptData& b = accepted_;
  // The size may differ: the export was resized (an rbd image), and the device follows it.
  return a.block_shift == b.block_shift && a.export_flags == b.export_flags &&
         a.features == b.features && a.queue_depth == b.queue_depth && a.max_io_bytes == b.max_io_bytes;
}

void RdmaQueueTarget::arm_recovery_timer_st(bool on) {
  if (on == recovery_timer_armed_) return;
  itimerspec its{};
  if (on) {
    its.it_interval.tv_nsec = std::chrono::nanoseconds(kRecoveryTick).count();
    its.it_value = its.it_interval;
  }
  if (::timerfd_settime(recovery_timer_.get(), 0, &its, nullptr) != 0) {
    log::rdma()->error("queue {}: timerfd_settime: {}", queue_id_, errno_text(errno));
    return;
  }
  recovery_timer_armed_ = on;
}

Reconnector& RdmaQueueTarget::reconnector_st() {
  if (!reconnector_) {
    auto connect = [o = opts_, q = queue_id_, n = conns_per_path_, s = session_id_](size_t index) {
      return connect_rdma_connection(o, o.paths[std::min(index / n, o.paths.size() - 1)], q, n, s);
    };
    reconnector_ = std::make_unique<Reconnector>(connect, fmt::format("ublkrdma-rc{}", queue_id_));
    ctx_->watch_fd_st(reconnector_->event_fd(), kTokenReconnected);
  }
  return *reconnector_;
}

// Read by the stats thread: only what start_st fixed (before the loop published the target),
// counters and atomics.
std::string RdmaQueueTarget::stats_json() const {
  const wire::AcceptData& a = accepted_;
  nlohmann::json j = counters_.to_json();
  j["read_imm"] = a.read_imm();
  j["batch"] = a.batch();
  j["push_writes"] = push_writes_;
  j["push_slots"] = a.push_slots();
  j["connections"] = connections_.size();
  j["connection_depth"] = a.queue_depth;
  j["pull_reads"] = pull_reads_;
  j["fence_writes"] = fence_writes_;
  j["mr_per_io"] = opts_.mr_per_io;
  j["held"] = held_gauge_.load(std::memory_order_relaxed);
  size_t live = 0, failed = 0;
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < connections_.size(); ++i) {
    const ConnectionRecovery& r = recovery_[i];
    ConnectionState s = r.state();
    live += s == ConnectionState::kLive;
    failed += s == ConnectionState::kFailed;
    nlohmann::json c = {{"connection", i},
                        {"state", connection_state_name(s)},
                        {"path", opts_.paths[std::min(path_of(i), opts_.paths.size() - 1)].text()},
                        {"losses", r.losses()},
                        {"attempts", r.attempts()},
                        {"reconnects", r.successes()}};
    if (const char* e = r.last_error()) {
      c["last_error"] = e;
      c["last_error_unix_ms"] = r.last_error_unix_ms();
    }
    list.push_back(std::move(c));
  }
  j["connection_states"] = std::move(list);
  // Per path: live (every connection), degraded, reconnecting or failed, as for the queue.
  nlohmann::json paths = nlohmann::json::array();
  for (size_t p = 0; p < opts_.paths.size(); ++p) {
    size_t n = 0, up = 0, down = 0;
    for (size_t i = 0; i < connections_.size(); ++i) {
      if (path_of(i) != p) continue;
      ConnectionState s = recovery_[i].state();
      ++n;
      up += s == ConnectionState::kLive;
      down += s == ConnectionState::kFailed;
    }
    paths.push_back({{"path", opts_.paths[p].text()},
                     {"state", up == n ? "live" : up > 0 ? "degraded" : down == n ? "failed" : "reconnecting"},
                     {"live_connections", up},
                     {"active", active_path_gauge_.load(std::memory_order_relaxed) == p ||
                                    opts_.multipath == MultipathPolicy::kRoundRobin}});
  }
  j["paths"] = std::move(paths);
  // The queue: every connection live, some (degraded), none but some recovering, or none ever.
  size_t n = connections_.size();
  j["state"] = live == n ? "live" : live > 0 ? "degraded" : failed == n ? "failed" : "reconnecting";
  return j.dump();
}

}  // namespace ublkrdma::targets
