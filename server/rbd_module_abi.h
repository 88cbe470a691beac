#pragma once
// What the server and its rbd module (ublk-rdma-rbd.so: backend_rbd.cc) agree on.
//
// The module is the only part of ublk-rdma that links librbd and librados, so that no other
// command pays for loading Ceph's libraries and a client host need not install them. It is
// compiled from this tree against the server's own headers (ExportSpec, Backend), so a module
// fits only the build that made it: it exports that build's stamp, which the loader
// (rbd_module.cc) compares with its own before it calls anything in the module.
//
// Needs the generated git_commit.h (link ublkrdma_git_commit).
#include <cstddef>
#include <memory>

#include "git_commit.h"
#include "server/backend.h"
#include "server/export_spec.h"

namespace ublkrdma::server {

// The file, the Debian package that installs it, and its two exported symbols.
inline constexpr const char* kRbdModuleFile = "ublk-rdma-rbd.so";
inline constexpr const char* kRbdModulePackage = "ublk-rdma-rbd";
inline constexpr const char* kRbdModuleStampSymbol = "ublk_rdma_rbd_module_stamp";
inline constexpr const char* kRbdModuleEntrySymbol = "ublk_rdma_rbd_module";

// This build: the project's version and the git commit it was built from ("-dirty" included).
#define UBLK_RDMA_RBD_MODULE_STAMP "ublk-rdma " UBLK_RDMA_VERSION " (git " UBLK_RDMA_GIT_COMMIT ")"
inline constexpr const char* kRbdModuleBuildStamp = UBLK_RDMA_RBD_MODULE_STAMP;

// The module's operations, valid for the life of the process (a module is never unloaded).
struct RbdModuleApi {
  // open_backend for an rbd export; throws SetupError (backend_rbd.h).
  std::unique_ptr<Backend> (*open)(const ExportSpec& spec, bool read_only);
  // The Ceph cluster connections the module's backends hold.
  size_t (*cluster_connections)();
};

}  // namespace ublkrdma::server

// Defined by the module only; the server finds them with dlsym (these declarations keep the
// module's definitions and the loader's casts the same).
extern "C" {
// kRbdModuleBuildStamp of the build that made the module.
[[gnu::visibility("default")]] extern const char ublk_rdma_rbd_module_stamp[];
// The module's table; called only once the stamp matched.
[[gnu::visibility("default")]] const ublkrdma::server::RbdModuleApi* ublk_rdma_rbd_module();
}
