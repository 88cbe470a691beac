// Protocol v9's authentication on the server's side of one connection: before it serves
// anything, a connection whose ACCEPT announced authentication takes exactly one message, the
// client's AUTH_REQUEST, answers it with an AUTH_RESULT, and opens its window for remote access
// only once the client has proved its key.
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/work_id.h"
#include "server/connection.h"

namespace ublkrdma::server {
namespace {

using Clock = std::chrono::steady_clock;

// A client has this long after establishment to authenticate; a silent one holds a connection
// (within --max-connections) no longer than that.
constexpr std::chrono::seconds kAuthTimeout{5};

}  // namespace

// Waits for the next completion, which must be of `kind`: anything else (a second message
// before the first was answered) breaks the exchange.
bool Connection::wait_auth_completion(WorkKind kind, ibv_wc& wc, Clock::time_point deadline) {
  for (;;) {
    int n = ibv_poll_cq(rdma_->cq(), 1, &wc);
    if (n < 0) {
      log::server()->error("{}: ibv_poll_cq: {}", peer_, errno_text(-n));
      return false;
    }
    if (n == 1) {
      WorkId id = WorkId::decode(wc.wr_id);
      if (wc.status != IBV_WC_SUCCESS) {
        log::server()->warn("{}: authentication: {} failed: {}", peer_, kind == WorkKind::kRdmaRecv ? "receive" : "send",
                            ibv_wc_status_str(wc.status));
        return false;
      }
      if (id.kind != kind) {
        log::server()->warn("{}: authentication: the client sent a second message before it was answered", peer_);
        return false;
      }
      return true;
    }
    handle_cm_events();
    if (failed_) return false;
    if (Clock::now() >= deadline) return false;
    ::usleep(1000);
  }
}

bool Connection::authenticate() {
  const auto deadline = Clock::now() + kAuthTimeout;
  ConnectionAuth& a = *auth_;
  ibv_wc wc{};
  if (!wait_auth_completion(WorkKind::kRdmaRecv, wc, deadline)) {
    if (!failed_) {
      log::server()->warn("{}: no authentication within {} s (export '{}' queue {}): closing", peer_,
                          kAuthTimeout.count(), export_name_, queue_id_);
      if (a.limiter) a.limiter->record_failure(a.peer_ip, Clock::now());
    }
    return false;
  }
  uint16_t slot = WorkId::decode(wc.wr_id).tag;
  if (slot >= recv_slots_) return false;
  AuthVerdict v = check_auth_request(std::span<const uint8_t>(recv_slot(slot), wc.byte_len), a.context);
  if (v.ok()) {
    try {
      open_window();
    } catch (const SetupError& e) {
      log::server()->error("{}: {}", peer_, e.what());
      return false;
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
  if (int rc = ibv_post_send(rdma_->qp(), &wr, &bad)) {
    log::server()->error("{}: posting the authentication result: {}", peer_, errno_text(rc));
    return false;
  }
  bool sent = wait_auth_completion(WorkKind::kRdmaSend, wc, deadline);
  if (!v.ok()) {
    log::server()->warn("{}: authentication of host '{}' for export '{}' queue {} refused: {}", peer_,
                        log::escaped(v.host_id), export_name_, queue_id_, v.reason);
    if (a.limiter) a.limiter->record_failure(a.peer_ip, Clock::now());
    return false;
  }
  if (!sent) return false;
  host_id_ = v.host_id;
  authenticated_.store(true, std::memory_order_release);
  log::server()->info("{}: host '{}' {} for export '{}' queue {}", peer_, host_id_, v.reason, export_name_, queue_id_);
  queue_recv(slot);
  post_recvs();
  return !failed_;
}

}  // namespace ublkrdma::server
