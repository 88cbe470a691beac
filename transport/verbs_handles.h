#pragma once
// RAII owners for the rdma_cm and verbs handles. Each deleter logs a failure with its errno
// and never throws (a destructor cannot report otherwise). The QP is not here: it belongs to
// its rdma_cm_id (rdma_create_qp / rdma_destroy_qp) and is owned by Connection, which
// destroys it first.
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cerrno>
#include <memory>

#include "base/errors.h"
#include "base/log.h"

namespace ublkrdma::transport {

namespace detail {
inline void log_release_failure(const char* what, int rc) {
  // verbs return a positive errno, librdmacm returns -1 with errno set.
  int err = rc > 0 ? rc : errno;
  log::rdma()->warn("{} failed: {}", what, errno_text(err));
}
}  // namespace detail

struct EventChannelDeleter {
  void operator()(rdma_event_channel* c) const { rdma_destroy_event_channel(c); }
};
struct CmIdDeleter {
  void operator()(rdma_cm_id* id) const {
    if (int rc = rdma_destroy_id(id)) detail::log_release_failure("rdma_destroy_id", rc);
  }
};
struct PdDeleter {
  void operator()(ibv_pd* pd) const {
    if (int rc = ibv_dealloc_pd(pd)) detail::log_release_failure("ibv_dealloc_pd", rc);
  }
};
struct CompChannelDeleter {
  void operator()(ibv_comp_channel* c) const {
    if (int rc = ibv_destroy_comp_channel(c)) detail::log_release_failure("ibv_destroy_comp_channel", rc);
  }
};
struct CqDeleter {
  void operator()(ibv_cq* cq) const {
    if (int rc = ibv_destroy_cq(cq)) detail::log_release_failure("ibv_destroy_cq", rc);
  }
};
struct MrDeleter {
  void operator()(ibv_mr* mr) const {
    if (int rc = ibv_dereg_mr(mr)) detail::log_release_failure("ibv_dereg_mr", rc);
  }
};
struct MwDeleter {
  void operator()(ibv_mw* mw) const {
    if (int rc = ibv_dealloc_mw(mw)) detail::log_release_failure("ibv_dealloc_mw", rc);
  }
};
struct CmEventAcker {
  void operator()(rdma_cm_event* e) const {
    if (int rc = rdma_ack_cm_event(e)) detail::log_release_failure("rdma_ack_cm_event", rc);
  }
};
struct DeviceListDeleter {
  void operator()(ibv_device** l) const { ibv_free_device_list(l); }
};

using EventChannelPtr = std::unique_ptr<rdma_event_channel, EventChannelDeleter>;
using CmIdPtr = std::unique_ptr<rdma_cm_id, CmIdDeleter>;
using PdPtr = std::unique_ptr<ibv_pd, PdDeleter>;
using CompChannelPtr = std::unique_ptr<ibv_comp_channel, CompChannelDeleter>;
using CqPtr = std::unique_ptr<ibv_cq, CqDeleter>;
using MrPtr = std::unique_ptr<ibv_mr, MrDeleter>;
using MwPtr = std::unique_ptr<ibv_mw, MwDeleter>;
using CmEventPtr = std::unique_ptr<rdma_cm_event, CmEventAcker>;  // acked on release
using DeviceListPtr = std::unique_ptr<ibv_device*, DeviceListDeleter>;

}  // namespace ublkrdma::transport
