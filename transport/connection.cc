#include "transport/connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>

#include <cstring>

#include "base/errors.h"
#include "base/log.h"
#include "base/work_id.h"

namespace ublkrdma::transport {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

// Waits for the next event on a non-blocking channel until `deadline`. Returns the event
// (acked when the pointer is released) or null on timeout.
CmEventPtr wait_event(rdma_event_channel* ch, Clock::time_point deadline) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ch, &ev) == 0) return CmEventPtr(ev);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      throw_errno(errno, "rdma_get_cm_event");
    int left = remaining_ms(deadline);
    if (left == 0) return nullptr;
    pollfd pfd{ch->fd, POLLIN, 0};
    int rc = ::poll(&pfd, 1, left);
    if (rc < 0 && errno != EINTR) throw_errno(errno, "poll on the rdma_cm event channel");
  }
}

bool same_ip(const sockaddr* a, const sockaddr* b) {
  if (a->sa_family != b->sa_family) return false;
  if (a->sa_family == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr ==
           reinterpret_cast<const sockaddr_in*>(b)->sin_addr.s_addr;
  return a->sa_family == AF_INET6 && std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr,
                                                 &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr,
                                                 sizeof(in6_addr)) == 0;
}

// Whether the interface holding `local` is up and running (true when that cannot be told).
bool interface_up(const sockaddr* local) {
  if (!local || (local->sa_family != AF_INET && local->sa_family != AF_INET6)) return true;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return true;
  bool up = true;
  for (const ifaddrs* a = list; a; a = a->ifa_next) {
    if (a->ifa_addr && same_ip(a->ifa_addr, local)) {
      up = (a->ifa_flags & IFF_UP) && (a->ifa_flags & IFF_RUNNING);
      break;
    }
  }
  freeifaddrs(list);
  return up;
}

CmEventInfo info_of(const rdma_cm_event& ev) {
  CmEventInfo info;
  info.type = ev.event;
  info.status = ev.status;
  const auto* pd = static_cast<const uint8_t*>(ev.param.conn.private_data);
  // Only connection events carry private data; for the others the union holds other things.
  bool has_pd = ev.event == RDMA_CM_EVENT_CONNECT_REQUEST || ev.event == RDMA_CM_EVENT_ESTABLISHED ||
                ev.event == RDMA_CM_EVENT_REJECTED || ev.event == RDMA_CM_EVENT_CONNECT_RESPONSE;
  if (has_pd && pd && ev.param.conn.private_data_len) info.private_data.assign(pd, pd + ev.param.conn.private_data_len);
  return info;
}

EventChannelPtr make_channel() {
  EventChannelPtr ch(rdma_create_event_channel());
  if (!ch) {
    int err = errno;
    if (err == ENODEV || err == ENOENT)
      throw_errno(err, "rdma_create_event_channel (is rdma_ucm loaded and an RDMA device present?)");
    throw_errno(err, "rdma_create_event_channel");
  }
  set_nonblocking(ch->fd, "rdma_cm event channel");
  return ch;
}

// Resolves `address:port` (numeric or host name) to a sockaddr.
sockaddr_storage resolve_ip(const std::string& address, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  const char* node = (address.empty() || (passive && address == "*")) ? nullptr : address.c_str();
  int rc = ::getaddrinfo(node, service.c_str(), &hints, &res);
  if (rc != 0) throw_setup("cannot resolve '{}': {}", address, gai_strerror(rc));
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  return ss;
}

// The QP's ACK timeout, 4.096 us x 2^16 = 268 ms per try: with retry_count 7 a peer that stops
// acknowledging (link down, host gone) fails our next work request after 8 tries, about 2 s.
// Far above a round trip, even in an emulated guest (a late ACK only costs a retransmission),
// and well inside the client's keepalive period, so the transport fails first and says why.
// Without it rdma_cm takes the path's packet lifetime, which for RoCE is a compile-time guess.
constexpr uint8_t kAckTimeout = 16;
constexpr uint8_t kRetryCount = 7;

void set_ack_timeout(rdma_cm_id* id) {
  uint8_t timeout = kAckTimeout;
  if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &timeout, sizeof(timeout)) != 0)
    log::rdma()->debug("rdma_set_option(ACK_TIMEOUT): {}; keeping rdma_cm's default", errno_text(errno));
}

}  // namespace

void set_nonblocking(int fd, const char* what) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) throw_errno(errno, "making the {} fd non-blocking", what);
}

std::string sockaddr_host_text(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa && sa->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
  else if (sa && sa->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
  return buf;
}

std::string sockaddr_text(const sockaddr* sa) {
  if (!sa) return "?";
  if (sa->sa_family == AF_INET)
    return fmt::format("{}:{}", sockaddr_host_text(sa), ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port));
  if (sa->sa_family == AF_INET6)
    return fmt::format("[{}]:{}", sockaddr_host_text(sa), ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port));
  return fmt::format("(family {})", sa->sa_family);
}

std::vector<std::string> rdma_device_names() {
  std::vector<std::string> names;
  int n = 0;
  DeviceListPtr list(ibv_get_device_list(&n));
  if (!list) return names;
  for (int i = 0; i < n; ++i) names.emplace_back(ibv_get_device_name(list.get()[i]));
  return names;
}

void rescan_rdma_devices() {
  int n = 0;
  if (ibv_context** list = rdma_get_devices(&n)) rdma_free_devices(list);
}

// ------------------------------------------------------------------------- Connection

Connection::Connection(EventChannelPtr channel, CmIdPtr id) : channel_(std::move(channel)), id_(std::move(id)) {}

Connection::~Connection() {
  close_st();
  // Members go in reverse declaration order: MRs, CQ, completion channel, PD, id, channel.
  // The CQ and MRs must go before the PD, which the declaration order guarantees.
  mws_.clear();
  mrs_.clear();
  cq_.reset();
  comp_.reset();
  pd_.reset();
}

uint64_t Connection::drain_marker_wr_id(bool send) {
  return WorkId{WorkKind::kControl, 0, 0, uint8_t(send ? 0xff : 0xfe), 0}.encode();
}

void Connection::create_verbs(const QpSizes& sizes) {
  ibv_context* ctx = id_->verbs;
  if (!ctx) throw_setup("rdma_cm id has no device (address not resolved)");
  if (int rc = ibv_query_device(ctx, &dev_attr_)) throw_errno(rc, "ibv_query_device({})", device_name());
  sizes_ = sizes;
  uint32_t send = sizes.send_wrs + 1, recv = sizes.recv_wrs + 1;  // +1: the drain markers
  if (send > uint32_t(dev_attr_.max_qp_wr) || recv > uint32_t(dev_attr_.max_qp_wr))
    throw_setup("{}: needs {} send / {} receive work requests, the device allows {} per queue", device_name(), send,
                recv, dev_attr_.max_qp_wr);
  uint32_t cqe = send + recv;
  if (cqe > uint32_t(dev_attr_.max_cqe))
    throw_setup("{}: needs a CQ of {} entries, the device allows {}", device_name(), cqe, dev_attr_.max_cqe);

  pd_.reset(ibv_alloc_pd(ctx));
  if (!pd_) throw_errno(errno, "ibv_alloc_pd({})", device_name());
  comp_.reset(ibv_create_comp_channel(ctx));
  if (!comp_) throw_errno(errno, "ibv_create_comp_channel({})", device_name());
  set_nonblocking(comp_->fd, "completion channel");
  cq_.reset(ibv_create_cq(ctx, int(cqe), nullptr, comp_.get(), 0));
  if (!cq_) throw_errno(errno, "ibv_create_cq({} entries on {})", cqe, device_name());

  ibv_qp_init_attr attr{};
  attr.send_cq = cq_.get();
  attr.recv_cq = cq_.get();
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;  // we signal selectively
  attr.cap.max_send_wr = send;
  attr.cap.max_recv_wr = recv;
  attr.cap.max_send_sge = sizes.max_send_sge;
  attr.cap.max_recv_sge = 1;
  attr.cap.max_inline_data = sizes.max_inline;
  if (rdma_create_qp(id_.get(), pd_.get(), &attr) != 0) {
    int err = errno;
    if (sizes.max_inline == 0) throw_errno(err, "rdma_create_qp({} send, {} recv WRs on {})", send, recv, device_name());
    // Some devices refuse inline data altogether: fall back to plain sends.
    log::rdma()->debug("rdma_create_qp with {} inline bytes failed ({}); retrying without inline data",
                       sizes.max_inline, errno_text(err));
    attr.cap.max_inline_data = 0;
    if (rdma_create_qp(id_.get(), pd_.get(), &attr) != 0)
      throw_errno(errno, "rdma_create_qp({} send, {} recv WRs on {})", send, recv, device_name());
  }
  qp_created_ = true;
  max_inline_ = attr.cap.max_inline_data;
}

ibv_mr* Connection::register_zero_based(void* addr, size_t len, int access, const std::string& what) {
  MrPtr mr(ibv_reg_mr_iova(pd_.get(), addr, len, 0, access));
  if (!mr) throw_errno(errno, "ibv_reg_mr_iova of {} ({} bytes) on {}", what, len, device_name());
  mrs_.push_back(std::move(mr));
  return mrs_.back().get();
}

ibv_mw* Connection::allocate_window(const std::string& what) {
  MwPtr mw(ibv_alloc_mw(pd_.get(), IBV_MW_TYPE_2));
  if (!mw) throw_errno(errno, "ibv_alloc_mw (type 2) for {} on {}", what, device_name());
  mws_.push_back(std::move(mw));
  return mws_.back().get();
}

ibv_mr* Connection::register_memory(void* addr, size_t len, int access, const std::string& what) {
  MrPtr mr(ibv_reg_mr(pd_.get(), addr, len, access));
  if (!mr) throw_errno(errno, "ibv_reg_mr of {} ({} bytes at {}) on {}", what, len, addr, device_name());
  mrs_.push_back(std::move(mr));
  return mrs_.back().get();
}

std::string Connection::peer_address() const {
  return id_ ? sockaddr_text(rdma_get_peer_addr(id_.get())) : "?";
}

std::string Connection::device_name() const {
  return (id_ && id_->verbs) ? ibv_get_device_name(id_->verbs->device) : "?";
}

int Connection::arm_cq_st() {
  int rc = ibv_req_notify_cq(cq_.get(), 0);
  return rc > 0 ? -rc : rc;
}

bool Connection::consume_cq_event_st() {
  ibv_cq* cq = nullptr;
  void* ctx = nullptr;
  if (ibv_get_cq_event(comp_.get(), &cq, &ctx) != 0) return false;  // EAGAIN: nothing pending
  ibv_ack_cq_events(cq, 1);
  return true;
}

std::optional<CmEventInfo> Connection::poll_cm_event_st() {
  rdma_cm_event* ev = nullptr;
  if (rdma_get_cm_event(channel_.get(), &ev) != 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      log::rdma()->warn("rdma_get_cm_event on the connection to {}: {}", peer_address(), errno_text(errno));
    return std::nullopt;
  }
  CmEventPtr owned(ev);
  return info_of(*ev);
}

bool Connection::port_active() const {
  if (!id_ || !id_->verbs) return true;
  ibv_port_attr attr{};
  if (ibv_query_port(id_->verbs, id_->port_num, &attr) == 0 && attr.state != IBV_PORT_ACTIVE) return false;
  // `ip link set down` takes the interface down (and its routes) before rxe marks its port down:
  // a CM message sent in between fails all the same.
  return interface_up(rdma_get_local_addr(id_.get()));
}

void Connection::disconnect_st() {
  if (disconnected_ || !id_) return;
  if (established_ && !port_active()) {
    log::rdma()->debug("connection to {}: the port of {} is down: disconnecting once it is up", peer_address(),
                       device_name());
    return;
  }
  disconnected_ = true;
  if (!established_) return;
  // EINVAL here means the peer disconnected first; nothing to report.
  if (rdma_disconnect(id_.get()) != 0 && errno != EINVAL)
    log::rdma()->debug("rdma_disconnect from {}: {}", peer_address(), errno_text(errno));
}

Quiesced Connection::quiesce_st(const std::function<void(const ibv_wc&)>& on_wc, std::chrono::milliseconds timeout) {
  if (quiesced_) return *quiesced_;
  if (!qp_created_) return *(quiesced_ = Quiesced::kDestroyed);
  auto poll_all = [&] {
    // Whatever is queued in the CQ belongs to the dead QP.
    ibv_wc wcs[32];
    int n;
    while ((n = ibv_poll_cq(cq_.get(), 32, wcs)) > 0)
      for (int i = 0; i < n; ++i)
        if (on_wc && wcs[i].wr_id != drain_marker_wr_id(true) && wcs[i].wr_id != drain_marker_wr_id(false))
          on_wc(wcs[i]);
  };
  struct Steps {
    Connection& c;
    const std::function<void(const ibv_wc&)>& on_wc;
    std::chrono::milliseconds timeout;
    bool to_error() {
      ibv_qp_attr attr{};
      attr.qp_state = IBV_QPS_ERR;
      if (int rc = ibv_modify_qp(c.qp(), &attr, IBV_QP_STATE)) {
        log::rdma()->warn("moving the QP to {} to the error state: {}", c.peer_address(), errno_text(rc));
        return false;
      }
      return true;
    }
    bool post_markers() { return c.post_drain_markers_st(); }
    bool wait_markers() { return c.wait_drain_markers_st(on_wc, timeout); }
    bool destroy() {
      bool ok = c.destroy_qp();
      if (ok) log::rdma()->warn("QP to {} not drained: destroyed instead", c.peer_address());
      return ok;
    }
  };
  quiesced_ = quiesce_qp(Steps{*this, on_wc, timeout});
  if (*quiesced_ != Quiesced::kLive) poll_all();
  return *quiesced_;
}

bool Connection::post_drain_markers_st() {
  // A QP that was never connected holds only receives, which no peer can reach: nothing to
  // wait for.
  if (!established_) return true;
  // Markers: posted after the transition to error, so they complete (flushed) after
  // everything posted before it.
  ibv_recv_wr rwr{}, *bad_r = nullptr;
  rwr.wr_id = drain_marker_wr_id(false);
  if (int rc = ibv_post_recv(qp(), &rwr, &bad_r)) {
    log::rdma()->warn("posting the receive drain marker to {}: {}", peer_address(), errno_text(rc));
    return false;
  }
  want_recv_marker_ = true;
  ibv_send_wr swr{}, *bad_s = nullptr;
  swr.wr_id = drain_marker_wr_id(true);
  swr.opcode = IBV_WR_SEND;
  swr.send_flags = IBV_SEND_SIGNALED;
  if (int rc = ibv_post_send(qp(), &swr, &bad_s)) {
    log::rdma()->warn("posting the send drain marker to {}: {}", peer_address(), errno_text(rc));
    return false;
  }
  want_send_marker_ = true;
  return true;
}

bool Connection::wait_drain_markers_st(const std::function<void(const ibv_wc&)>& on_wc,
                                       std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  ibv_wc wcs[32];
  unsigned idle_rounds = 0;
  while (want_send_marker_ || want_recv_marker_) {
    int n = ibv_poll_cq(cq_.get(), 32, wcs);
    if (n < 0) {
      log::rdma()->warn("ibv_poll_cq while draining the QP to {}: {}", peer_address(), errno_text(-n));
      return false;
    }
    for (int i = 0; i < n; ++i) {
      if (wcs[i].wr_id == drain_marker_wr_id(true)) {
        want_send_marker_ = false;
      } else if (wcs[i].wr_id == drain_marker_wr_id(false)) {
        want_recv_marker_ = false;
      } else if (on_wc) {
        on_wc(wcs[i]);
      }
    }
    if (n == 0) {
      if (Clock::now() > deadline) {
        log::rdma()->warn("draining the QP to {} timed out after {} ms (send marker {}, recv marker {})",
                          peer_address(), timeout.count(), want_send_marker_ ? "missing" : "seen",
                          want_recv_marker_ ? "missing" : "seen");
        return false;
      }
      if (++idle_rounds > 64) ::usleep(100);
    }
  }
  return true;
}

bool Connection::destroy_qp() {
  if (!qp_created_) return true;
  // ibv_destroy_qp, not rdma_destroy_qp, which cannot report a failure. The CQs are ours, not
  // rdma_cm's, so it has nothing else to release.
  if (int rc = ibv_destroy_qp(id_->qp)) {
    log::rdma()->error("ibv_destroy_qp (QP to {}): {}", peer_address(), errno_text(rc));
    return false;
  }
  id_->qp = nullptr;
  qp_created_ = false;
  return true;
}

Quiesced Connection::close_st() {
  if (closed_) return quiesced_.value_or(Quiesced::kDestroyed);
  disconnect_st();
  Quiesced q = quiesce_st(nullptr);
  // Windows before the QP: one still bound holds the QP (rxe then takes long to destroy it),
  // and deallocating one only takes access away, so they go even if the QP cannot.
  mws_.clear();
  if (!destroy_qp()) return Quiesced::kLive;  // try again later; the MRs stay registered
  closed_ = true;
  mrs_.clear();  // the device no longer touches them
  return q == Quiesced::kLive ? Quiesced::kDestroyed : q;
}

// ------------------------------------------------------------------------- client side

ConnectOutcome connect_client(const ClientConnectParams& p, const std::function<void(Connection&)>& before_connect) {
  std::string where = fmt::format("{}:{}", p.address, p.port);
  rescan_rdma_devices();  // a device removed since the last attempt is let go, a new one found
  sockaddr_storage dst = resolve_ip(p.address, p.port, false);

  EventChannelPtr channel = make_channel();
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(channel.get(), &raw, nullptr, RDMA_PS_TCP) != 0) throw_errno(errno, "rdma_create_id");
  auto conn = std::make_unique<Connection>(std::move(channel), CmIdPtr(raw));
  rdma_event_channel* ch = conn->id()->channel;

  auto expect = [&](rdma_cm_event_type want, std::chrono::milliseconds timeout, const char* step) -> CmEventInfo {
    CmEventPtr ev = wait_event(ch, Clock::now() + timeout);
    if (!ev) throw SetupError(fmt::format("{} to {} timed out after {} ms", step, where, timeout.count()), ETIMEDOUT);
    CmEventInfo info = info_of(*ev);
    if (info.type != want && info.type != RDMA_CM_EVENT_REJECTED && info.type != RDMA_CM_EVENT_ESTABLISHED) {
      std::string hint;
      if (info.type == RDMA_CM_EVENT_ADDR_ERROR || info.type == RDMA_CM_EVENT_ROUTE_ERROR)
        hint = " (no RDMA device reaches this address: is an rxe/RoCE device bound to the interface that routes to it? "
               "rdma_cm cannot route over rxe on lo)";
      else if (info.type == RDMA_CM_EVENT_UNREACHABLE)
        hint = " (no answer: is `ublk-rdma serve` running there and reachable?)";
      throw SetupError(fmt::format("{} to {} failed: {} (status {}){}", step, where, rdma_event_str(info.type),
                                   info.status, hint),
                       info.status < 0 ? -info.status : EHOSTUNREACH);
    }
    return info;
  };

  if (rdma_resolve_addr(conn->id(), nullptr, reinterpret_cast<sockaddr*>(&dst), int(p.resolve_timeout.count())) != 0) {
    int err = errno;
    throw_errno(err, "rdma_resolve_addr({}){}", where,
                err == ENODEV || err == EADDRNOTAVAIL ? " (no RDMA device has an address that routes there)" : "");
  }
  expect(RDMA_CM_EVENT_ADDR_RESOLVED, p.resolve_timeout + std::chrono::milliseconds(1000), "address resolution");
  if (rdma_resolve_route(conn->id(), int(p.resolve_timeout.count())) != 0) throw_errno(errno, "rdma_resolve_route({})", where);
  expect(RDMA_CM_EVENT_ROUTE_RESOLVED, p.resolve_timeout + std::chrono::milliseconds(1000), "route resolution");
  // A CONNECT through a port that is down fails on the spot, and rxe then takes the device's
  // QP1 out of service for good: no rdma_cm connection on it would work again.
  if (!conn->port_active())
    throw SetupError(fmt::format("connecting to {}: the port of {} is down", where, conn->device_name()), ENETDOWN);

  conn->create_verbs(p.sizes);
  if (before_connect) before_connect(*conn);

  rdma_conn_param param{};
  param.private_data = p.private_data.data();
  param.private_data_len = uint8_t(p.private_data.size());
  const ibv_device_attr& da = conn->device_attr();
  param.responder_resources = uint8_t(std::min<int>(p.responder_resources, da.max_qp_rd_atom));
  param.initiator_depth = uint8_t(std::min<int>(p.initiator_depth, da.max_qp_init_rd_atom));
  param.retry_count = kRetryCount;
  param.rnr_retry_count = 7;  // the server always has receives posted; wait rather than fail
  set_ack_timeout(conn->id());
  if (rdma_connect(conn->id(), &param) != 0) throw_errno(errno, "rdma_connect({})", where);

  CmEventInfo info = expect(RDMA_CM_EVENT_ESTABLISHED, p.connect_timeout, "connecting");
  ConnectOutcome out;
  out.private_data = std::move(info.private_data);
  if (info.type == RDMA_CM_EVENT_REJECTED) {
    out.rejected = true;
    out.reject_status = info.status;
    return out;
  }
  conn->mark_established();
  out.conn = std::move(conn);
  return out;
}

// ------------------------------------------------------------------------- server side

IncomingRequest::IncomingRequest(rdma_cm_id* id, std::vector<uint8_t> private_data, uint8_t initiator_depth,
                                 uint8_t responder_resources)
    : id_(id), private_data_(std::move(private_data)), initiator_depth_(initiator_depth),
      responder_resources_(responder_resources) {}

const sockaddr* IncomingRequest::peer() const { return id_ ? rdma_get_peer_addr(id_.get()) : nullptr; }
std::string IncomingRequest::peer_address() const { return sockaddr_text(peer()); }

void IncomingRequest::reject(std::span<const uint8_t> private_data) {
  if (!id_) return;
  if (rdma_reject(id_.get(), private_data.data(), uint8_t(private_data.size())) != 0)
    log::rdma()->warn("rdma_reject of {}: {}", peer_address(), errno_text(errno));
  id_.reset();
}

std::unique_ptr<Connection> IncomingRequest::take(const QpSizes& sizes) {
  EventChannelPtr channel = make_channel();
  if (rdma_migrate_id(id_.get(), channel.get()) != 0) throw_errno(errno, "rdma_migrate_id({})", peer_address());
  auto conn = std::make_unique<Connection>(std::move(channel), std::move(id_));
  conn->create_verbs(sizes);
  return conn;
}

void accept_connection(Connection& conn, std::span<const uint8_t> private_data, uint8_t initiator_depth,
                       uint8_t responder_resources) {
  rdma_conn_param param{};
  param.private_data = private_data.data();
  param.private_data_len = uint8_t(private_data.size());
  const ibv_device_attr& da = conn.device_attr();
  param.initiator_depth = uint8_t(std::min<int>(initiator_depth, da.max_qp_init_rd_atom));
  param.responder_resources = uint8_t(std::min<int>(responder_resources, da.max_qp_rd_atom));
  param.retry_count = kRetryCount;
  param.rnr_retry_count = 7;
  set_ack_timeout(conn.id());
  if (rdma_accept(conn.id(), &param) != 0) throw_errno(errno, "rdma_accept({})", conn.peer_address());
  conn.mark_established();  // the QP is in RTS now; the ESTABLISHED event confirms the peer
}

Listener::Listener(const std::string& address, uint16_t port, int backlog) : channel_(make_channel()) {
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(channel_.get(), &raw, nullptr, RDMA_PS_TCP) != 0) throw_errno(errno, "rdma_create_id");
  id_.reset(raw);
  sockaddr_storage ss = resolve_ip(address, port, true);
  if (rdma_bind_addr(id_.get(), reinterpret_cast<sockaddr*>(&ss)) != 0) {
    int err = errno;
    throw_errno(err, "binding the RDMA listener to {}{}", sockaddr_text(reinterpret_cast<sockaddr*>(&ss)),
                err == EADDRNOTAVAIL || err == ENODEV ? " (no RDMA device has this address)"
                : err == EADDRINUSE                   ? " (port in use: another server?)"
                                                      : "");
  }
  if (rdma_listen(id_.get(), backlog) != 0) throw_errno(errno, "rdma_listen on {}", sockaddr_text(reinterpret_cast<sockaddr*>(&ss)));
}

uint16_t Listener::port() const { return ntohs(rdma_get_src_port(id_.get())); }

std::optional<IncomingRequest> Listener::next_request(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    CmEventPtr ev = wait_event(channel_.get(), deadline);
    if (!ev) return std::nullopt;
    if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
      CmEventInfo info = info_of(*ev);
      rdma_cm_id* id = ev->id;
      uint8_t init = ev->param.conn.initiator_depth, resp = ev->param.conn.responder_resources;
      ev.reset();  // ack before the id may be migrated (rdma_migrate_id waits for acks)
      return IncomingRequest(id, std::move(info.private_data), init, resp);
    }
    if (ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL && ev->id == id_.get()) {
      device_removed_ = true;
      return std::nullopt;
    }
    log::rdma()->debug("listener: ignoring rdma_cm event {} (status {})", rdma_event_str(ev->event), ev->status);
  }
}

}  // namespace ublkrdma::transport
