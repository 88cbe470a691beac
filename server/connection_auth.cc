// Protocol v9's authentication on the server's side of one connection: before it serves
// anything, a connection whose ACCEPT announced authentication takes exactly one message, the
// client's AUTH_REQUEST, answers it with an AUTH_RESULT, and opens its window for remote access
// only once the client has proved its key.
#include "base/errors.h"
#include "base/log.h"
#include "base/work_id.h"
#include "server/connection.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

// The exchange ends without a served connection: counted against the peer's address when the
// client is to blame (no AUTH_REQUEST in time, or a refused one).
int Connection::auth_failed(std::string_view why) {
  ConnectionAuth& a = *auth_;
  if (!why.empty()) {
    log::server()->warn("{}: {} (export '{}' queue {}): closing", peer_, why, export_name_, queue_id_);
    if (a.limiter) a.limiter->record_failure(a.peer_ip, Clock::now());
  }
  phase_ = ConnectionPhase::kClosing;
  return 1;
}

// One look at the exchange: the AUTH_REQUEST must be the first completion, then the send of
// our AUTH_RESULT; anything else (a second message before the first was answered) breaks it.
int Connection::authenticate_step(bool stopping) {
  if (cm_ready_) {
    cm_ready_ = false;
    handle_cm_events();
  }
  // Revoked: the exchange started against keys a reload replaced; the client's next attempt
  // meets the new ones.
  if (failed_ || stopping || revoked_.load(std::memory_order_relaxed)) return auth_failed({});
  const WorkKind want = verdict_ ? WorkKind::kRdmaSend : WorkKind::kRdmaRecv;
  ibv_wc wc{};
  int n = ibv_poll_cq(rdma_->cq(), 1, &wc);
  if (n < 0) {
    log::server()->error("{}: ibv_poll_cq: {}", peer_, errno_text(-n));
    return auth_failed({});
  }
  if (n == 0) {
    if (Clock::now() < deadline_) return 0;
    if (verdict_) return auth_failed({});  // our answer did not leave: the client's doing nothing wrong
    return auth_failed(fmt::format("no authentication within {} s", kAuthTimeout.count()));
  }
  if (wc.status != IBV_WC_SUCCESS) {
    log::server()->warn("{}: authentication: {} failed: {}", peer_, want == WorkKind::kRdmaRecv ? "receive" : "send",
                        ibv_wc_status_str(wc.status));
  } else if (WorkId::decode(wc.wr_id).kind != want) {
    log::server()->warn("{}: authentication: the client sent a second message before it was answered", peer_);
  }
  bool expected = wc.status == IBV_WC_SUCCESS && WorkId::decode(wc.wr_id).kind == want;

  if (!verdict_) {  // the AUTH_REQUEST
    if (!expected) return auth_failed({});
    auth_slot_ = WorkId::decode(wc.wr_id).tag;
    if (auth_slot_ >= recv_slots_) return auth_failed({});
    AuthVerdict v = check_auth_request(std::span<const uint8_t>(recv_slot(auth_slot_), wc.byte_len), auth_->context);
    if (v.ok()) {
      try {
        open_window();
      } catch (const SetupError& e) {
        log::server()->error("{}: {}", peer_, e.what());
        return auth_failed({});
      }
      if (window_mr_) fill_window(v.result.window_rkey, v.result.window_addr);
    }
    auto bytes = wire::encode(v.result);
    uint8_t* p = resp_slot(0);  // no command is in flight yet: tag 0's answer slot is free
    std::copy(bytes.begin(), bytes.end(), p);
    ibv_sge sge{reinterpret_cast<uint64_t>(p), uint32_t(bytes.size()), msgs_mr_->lkey};
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = WorkId{WorkKind::kRdmaSend, queue_id_, 0, 0, 0}.encode();
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    verdict_ = std::move(v);
    if (int rc = ibv_post_send(rdma_->qp(), &wr, &bad)) {
      log::server()->error("{}: posting the authentication result: {}", peer_, errno_text(rc));
      expected = false;  // the verdict is still logged below
    } else {
      return 1;
    }
  }

  // The AUTH_RESULT has left (or could not).
  const AuthVerdict& v = *verdict_;
  if (!v.ok()) {
    log::server()->warn("{}: authentication of host '{}' for export '{}' queue {} refused: {}", peer_,
                        log::escaped(v.host_id), export_name_, queue_id_, v.reason);
    if (auth_->limiter) auth_->limiter->record_failure(auth_->peer_ip, Clock::now());
    return auth_failed({});
  }
  if (!expected) return auth_failed({});
  host_id_ = v.host_id;
  authenticated_.store(true, std::memory_order_release);
  log::server()->info("{}: host '{}' {} for export '{}' queue {}", peer_, host_id_, v.reason, export_name_, queue_id_);
  verdict_.reset();
  queue_recv(auth_slot_);
  post_recvs();
  phase_ = failed_ ? ConnectionPhase::kClosing : ConnectionPhase::kServing;
  return 1;
}

}  // namespace ublkrdma::server
