#pragma once
// rbd:POOL[/NAMESPACE]/IMAGE[@SNAP]: a Ceph RBD image served through librbd's asynchronous C API.
//
// One open image per export (one cluster connection per configuration and client id, shared by
// the exports that use the same), shared by the poll group threads
// (librbd's image handle takes aio calls from any thread). Each queue submits straight from the
// server's registered buffers (one iovec per command: librbd reads into and writes from them;
// the server copies nothing) and gets its completions through its own eventfd: librbd's
// callback, on a librbd thread, stores the result in the command's slot and pushes the tag on a
// lock-free list that the queue's thread takes whole in poll().
//
// librbd's write-back cache is off (as Ceph's iSCSI gateways run it): a write is acknowledged
// when the cluster has it, so a gateway that dies loses no acknowledged write.
// READ/WRITE/FLUSH as librbd does them; FUA = the write, then a flush of the image; DISCARD and
// WRITE_ZEROES = rbd write-zeroes (whole objects are discarded, partial ones zeroed), so a
// discarded range reads back as zeros, as the client's block layer is told.
//
// A snapshot, or an export made --read-only, is opened read-only (no exclusive lock taken).
// A writable export needs the image's exclusive-lock feature: librbd then lets one gateway
// write at a time and hands the lock over when another one writes (a dead holder's lock is
// broken, and the holder blocklisted, once its watch times out), so two servers exporting the
// same image never write it at the same time. An image without the feature is refused for
// writing, with the command that enables it.
//
// backend_rbd.cc is built into the rbd module (ublk-rdma-rbd.so, rbd_module_abi.h), the only
// code that links librbd and librados; the server reaches it through rbd_module.h, never directly.
#include <cstddef>
#include <memory>

#include "server/backend.h"

namespace ublkrdma::server::rbd_module {

// Connects as client.ID (spec.rbd.ceph_id, default "admin") with spec.rbd.ceph_conf (default:
// librados' search: $CEPH_CONF, /etc/ceph/ceph.conf, ...) and opens the image. Throws SetupError
// naming the export, the image and what failed (no such pool/image/snapshot, cluster not
// reachable within spec.rbd.connect_timeout_s, permission denied, no exclusive-lock).
std::unique_ptr<Backend> open_backend(const ExportSpec& spec, bool read_only);

// The cluster connections the rbd exports of this process hold: one per (configuration,
// client id, timeout), shared by the exports that use the same.
size_t cluster_connections();

}  // namespace ublkrdma::server::rbd_module
