#pragma once
// The rbd backend, reached through its module (ublk-rdma-rbd.so, package ublk-rdma-rbd;
// rbd_module_abi.h says why it is one). The module is loaded on the first rbd export's open,
// once per process, and never unloaded; a process without rbd exports never loads it.
//
// Where it is looked for, in order: $UBLK_RDMA_MODULE_DIR (tests, other build trees), the
// directory of the running executable (a build tree: build/ublk-rdma next to
// build/ublk-rdma-rbd.so), then the directory it is installed into (LIBDIR/ublk-rdma). The
// first directory that has the file is the one used: a module there that does not load (librbd
// missing) or comes from another build is an error, not a reason to look further.
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/backend.h"
#include "server/export_spec.h"

namespace ublkrdma::server {

struct RbdModuleApi;

// Loads the module if any of `exports` is an rbd export. Throws SetupError naming the first of
// them, the paths tried, what the loader said, and the package to install. The server calls it
// before opening its exports: an rbd export without its module is a configuration error that
// stops the server, not an export to retry while the cluster is down.
void require_rbd_module(std::span<const ExportSpec> exports);

// open_backend for an rbd export, through the module (loading it if needed). Throws SetupError.
// Any thread (exports are opened at start and by the export set's retry thread).
std::unique_ptr<Backend> open_rbd_backend(const ExportSpec& spec, bool read_only);

// The Ceph cluster connections the rbd backends of this process hold; 0 if the module is not
// loaded.
size_t rbd_cluster_connections();

// The file the module was loaded from, or "" if it is not loaded.
std::string rbd_module_path();

// The directories looked in, in order (see above).
std::vector<std::string> rbd_module_search_path();

// One attempt to load the module from the first of `dirs` that has it, without the once-per-
// process memory of the functions above (for tests). Throws SetupError (without an export
// name); a module that loaded but was refused stays mapped.
const RbdModuleApi& load_rbd_module(std::span<const std::string> dirs, std::string* path = nullptr);

}  // namespace ublkrdma::server
