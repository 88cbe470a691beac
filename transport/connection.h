#pragma once
// One reliable-connected RDMA connection and everything it owns: its own rdma_cm event
// channel (so the owning thread can watch disconnects on a fd of its own), the cm id, a PD, a
// completion channel, one CQ shared by send and receive, the QP, and the memory regions
// registered on the PD.
//
// Teardown order (destructor or close()): disconnect -> QP to error and drained (flushed
// completions polled until our marker work requests come back) -> QP destroyed -> MRs
// deregistered -> CQ -> completion channel -> PD -> cm id -> event channel. Memory that MRs
// cover must outlive the connection or close() must be called first.
//
// Threading: built on one thread (the daemon's main thread, or the server's listener), then
// used by exactly one owner thread. Functions ending in _st are for that thread only.
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "transport/qp_quiesce.h"
#include "transport/verbs_handles.h"

namespace ublkrdma::transport {

struct QpSizes {
  uint32_t send_wrs = 0;     // send queue slots the user needs (one extra is added for draining)
  uint32_t recv_wrs = 0;     // receive queue slots the user needs (likewise)
  uint32_t max_inline = 64;  // wanted IBV_SEND_INLINE bytes; the device may grant less (see max_inline())
  uint32_t max_send_sge = 1;
};

// What one rdma_cm event said, copied out so the event can be acked at once.
struct CmEventInfo {
  rdma_cm_event_type type{};
  int status = 0;
  std::vector<uint8_t> private_data;
};

class Connection {
 public:
  // Takes ownership of a channel and an id bound to it (the id's context is not used).
  Connection(EventChannelPtr channel, CmIdPtr id);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Allocates PD, completion channel, CQ and QP on the id's device. Throws SetupError.
  void create_verbs(const QpSizes& sizes);

  // Registers [addr, addr + len) on this connection's PD. The MR is owned by the connection
  // and deregistered after the QP is destroyed. Throws SetupError naming `what`.
  ibv_mr* register_memory(void* addr, size_t len, int access, const std::string& what);
  // As register_memory, but the region's addresses start at 0 (ibv_reg_mr_iova): a peer given
  // its rkey addresses it by offset and learns nothing of our memory layout. Only for memory the
  // peer reaches; local work requests on it would have to use offsets too.
  ibv_mr* register_zero_based(void* addr, size_t len, int access, const std::string& what);

  // A type 2 memory window on this connection's PD, unbound: an IBV_WR_BIND_MW on this QP
  // grants a peer one range of an MR registered with IBV_ACCESS_MW_BIND, and an
  // IBV_WR_LOCAL_INV takes it back. Owned by the connection: deallocated once the QP is out of
  // service, before the MRs (a device refuses to deregister an MR a window is bound to).
  // Throws SetupError naming `what`.
  ibv_mw* allocate_window(const std::string& what);

  rdma_cm_id* id() const { return id_.get(); }
  ibv_pd* pd() const { return pd_.get(); }
  ibv_cq* cq() const { return cq_.get(); }
  ibv_qp* qp() const { return id_ ? id_->qp : nullptr; }
  int cm_fd() const { return channel_->fd; }
  int cq_fd() const { return comp_ ? comp_->fd : -1; }
  uint32_t max_inline() const { return max_inline_; }
  uint32_t send_wrs() const { return sizes_.send_wrs; }
  uint32_t recv_wrs() const { return sizes_.recv_wrs; }
  const ibv_device_attr& device_attr() const { return dev_attr_; }
  std::string peer_address() const;  // "a.b.c.d:port"
  std::string device_name() const;

  // --- owner thread
  // Asks for a completion event on the next CQE; -errno on failure.
  int arm_cq_st();
  // Takes one pending completion event off the channel (non-blocking) and acks it.
  // Returns true if there was one.
  bool consume_cq_event_st();
  // Next rdma_cm event without blocking, or nullopt. Throws nothing; errors are logged and
  // reported as nullopt.
  std::optional<CmEventInfo> poll_cm_event_st();
  // rdma_disconnect (once; sends DREQ and moves the QP to error). Safe to call repeatedly.
  // Not while the port is down: the DREQ would be a send that fails on the spot, and rxe then
  // moves the device's QP1 (all of its rdma_cm traffic) to the error state for good. It then
  // waits: disconnect_pending() says so, and the owner calls this again once port_active().
  void disconnect_st();
  // Destroying the connection now would send a DREQ (connected, not yet disconnected).
  bool disconnect_pending() const { return established_ && !disconnected_ && id_; }
  // Whether the id's RDMA port is ACTIVE and the interface holding its local address up (each
  // true when it cannot be asked).
  bool port_active() const;
  // Takes the QP out of service (qp_quiesce.h): moves it to error and polls the CQ until the
  // marker work requests posted after the transition come back flushed, or `timeout` passes;
  // if that fails, destroys the QP. Every other completion is handed to `on_wc` (they carry
  // flush errors). kLive means the device may still move data for the QP: buffers it could
  // reach must stay held. Idempotent (later calls return the first result, or kDestroyed).
  Quiesced quiesce_st(const std::function<void(const ibv_wc&)>& on_wc,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  // disconnect + quiesce (dropping completions) + destroy the QP + deregister the MRs. After
  // this, nothing the connection registered is touched by the device, unless it returns kLive
  // (destroying the QP failed: the MRs are then kept too). Idempotent.
  Quiesced close_st();
  bool closed() const { return closed_; }

  // Marks the QP as having been connected (so draining posts markers).
  void mark_established() { established_ = true; }

  // wr_id of the drain markers (WorkKind::kControl, op 0xfe recv / 0xff send).
  static uint64_t drain_marker_wr_id(bool send);

 private:
  // ibv_destroy_qp; true once the QP is gone.
  bool destroy_qp();
  // The drain half of quiesce_st: true when both markers came back.
  bool post_drain_markers_st();
  bool wait_drain_markers_st(const std::function<void(const ibv_wc&)>& on_wc, std::chrono::milliseconds timeout);

  EventChannelPtr channel_;
  CmIdPtr id_;
  PdPtr pd_;
  CompChannelPtr comp_;
  CqPtr cq_;
  std::vector<MrPtr> mrs_;  // deregistered after the QP is destroyed, before the PD
  std::vector<MwPtr> mws_;  // deallocated once the QP is quiesced, before the MRs
  QpSizes sizes_{};
  uint32_t max_inline_ = 0;
  ibv_device_attr dev_attr_{};
  bool qp_created_ = false;
  bool established_ = false;
  bool disconnected_ = false;
  std::optional<Quiesced> quiesced_;
  bool want_send_marker_ = false, want_recv_marker_ = false;
  bool closed_ = false;
};

// Makes a fd non-blocking; throws SetupError naming `what`.
void set_nonblocking(int fd, const char* what);

// ------------------------------------------------------------------------- client side
struct ClientConnectParams {
  std::string address;  // server IPv4/IPv6 address or host name
  uint16_t port = 0;
  std::chrono::milliseconds resolve_timeout{5000};
  std::chrono::milliseconds connect_timeout{10000};
  QpSizes sizes;
  std::span<const uint8_t> private_data;  // CONNECT private data (<= 56 bytes)
  uint8_t responder_resources = 16;       // RDMA READs the peer may have outstanding against us
  uint8_t initiator_depth = 0;            // RDMA READs we issue
};

struct ConnectOutcome {
  std::unique_ptr<Connection> conn;   // set when the connection is established
  std::vector<uint8_t> private_data;  // the ACCEPT or REJECT private data
  bool rejected = false;
  int reject_status = 0;              // the rdma_cm REJECTED status (IB CM reason)
};

// Resolves, creates the verbs objects, lets `before_connect` register memory and post
// receives, then connects. Throws SetupError for resolution failures, unreachable peers and
// timeouts, with the address in the message; a refusal is returned (rejected = true).
ConnectOutcome connect_client(const ClientConnectParams& p, const std::function<void(Connection&)>& before_connect);

// ------------------------------------------------------------------------- server side
// A CONNECT_REQUEST taken off the listener's channel, owning the new id until it is either
// rejected or turned into a Connection.
class IncomingRequest {
 public:
  IncomingRequest(rdma_cm_id* id, std::vector<uint8_t> private_data, uint8_t initiator_depth,
                  uint8_t responder_resources);
  std::span<const uint8_t> private_data() const { return private_data_; }
  const sockaddr* peer() const;
  std::string peer_address() const;
  // The request's RDMA READ depths as rdma_cm reports them to the passive side: already from
  // our point of view (the IB CM swaps the two fields of the client's REQ). Accept with an
  // initiator_depth of at most initiator_depth() and responder_resources of at least
  // responder_resources() (rdma_accept(3)).
  // RDMA READs we may have outstanding against the client: its responder_resources, what it
  // will serve.
  uint8_t initiator_depth() const { return initiator_depth_; }
  // RDMA READs the client will have outstanding against us: its initiator_depth, what it will
  // issue.
  uint8_t responder_resources() const { return responder_resources_; }

  // rdma_reject with `private_data`, then releases the id.
  void reject(std::span<const uint8_t> private_data);
  // Moves the id to an event channel of its own and creates the verbs objects.
  // Throws SetupError (the id is then rejected by the destructor).
  std::unique_ptr<Connection> take(const QpSizes& sizes);

 private:
  CmIdPtr id_;
  std::vector<uint8_t> private_data_;
  uint8_t initiator_depth_;
  uint8_t responder_resources_;
};

// rdma_accept on a connection made by IncomingRequest::take. Throws SetupError.
void accept_connection(Connection& conn, std::span<const uint8_t> private_data, uint8_t initiator_depth,
                       uint8_t responder_resources);

class Listener {
 public:
  // Binds and listens on address:port ("" or "0.0.0.0" = any). Throws SetupError.
  Listener(const std::string& address, uint16_t port, int backlog = 64);
  int fd() const { return channel_->fd; }
  uint16_t port() const;
  // Waits up to `timeout` for the next CONNECT_REQUEST; other events on the listening id are
  // logged and skipped. nullopt on timeout, or once the device went away.
  std::optional<IncomingRequest> next_request(std::chrono::milliseconds timeout);
  // The RDMA device the listener is bound to is being removed (DEVICE_REMOVAL): it listens no
  // more, and the removal waits until the listener is destroyed.
  bool device_removed() const { return device_removed_; }

 private:
  EventChannelPtr channel_;
  CmIdPtr id_;
  bool device_removed_ = false;
};

// "a.b.c.d:port" / "[v6]:port" of a sockaddr.
std::string sockaddr_text(const sockaddr* sa);
// Its address alone: "a.b.c.d" / "v6" ("?" for another family).
std::string sockaddr_host_text(const sockaddr* sa);

// Names of the RDMA devices present (empty if none or if the verbs library finds none).
std::vector<std::string> rdma_device_names();

// Brings librdmacm's device list up to date: a removed device's context, which librdmacm keeps
// open while it lists the device and which the device's removal waits for, is closed once no
// rdma_cm id uses it; a device added since is found. Call after every id on a removed device
// is gone, until the removal completes (its uverbs node disappears only after rdma_cm let go).
void rescan_rdma_devices();

}  // namespace ublkrdma::transport
