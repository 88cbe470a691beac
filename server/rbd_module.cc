#include "server/rbd_module.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "base/errors.h"
#include "base/log.h"
#include "server/rbd_module_abi.h"

#ifndef UBLK_RDMA_MODULE_INSTALL_DIR
#error "UBLK_RDMA_MODULE_INSTALL_DIR (where the rbd module is installed) comes from server/CMakeLists.txt"
#endif

namespace ublkrdma::server {
namespace {

// The process's module: loaded by the first caller, or why it could not be.
struct LoadedModule {
  std::once_flag once;
  std::atomic<const RbdModuleApi*> api{nullptr};  // published after `path`
  std::string path;
  std::string error;
};

LoadedModule& loaded() {
  static LoadedModule m;
  return m;
}

const RbdModuleApi& module_for(std::string_view export_name) {
  LoadedModule& m = loaded();
  std::call_once(m.once, [&m] {
    try {
      const RbdModuleApi& api = load_rbd_module(rbd_module_search_path(), &m.path);
      m.api.store(&api, std::memory_order_release);
    } catch (const SetupError& e) {
      m.error = e.what();
    }
  });
  const RbdModuleApi* api = m.api.load(std::memory_order_acquire);
  if (!api) throw SetupError(fmt::format("export '{}': {}", export_name, m.error));
  return *api;
}

std::string dl_error() {
  const char* e = ::dlerror();
  return e ? e : "unknown error";
}

}  // namespace

std::vector<std::string> rbd_module_search_path() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("UBLK_RDMA_MODULE_DIR"); env && *env) dirs.emplace_back(env);
  std::error_code ec;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec && exe.has_parent_path()) dirs.push_back(exe.parent_path().string());
  dirs.emplace_back(UBLK_RDMA_MODULE_INSTALL_DIR);
  return dirs;
}

const RbdModuleApi& load_rbd_module(std::span<const std::string> dirs, std::string* loaded_path) {
  // The module has its own copy of log::get (server/CMakeLists.txt), which finds a logger by name
  // in spdlog's registry (one per process, in libspdlog) before it would make one: make sure the
  // server's is there, with its level and sink.
  log::server();
  std::string tried;
  for (const std::string& dir : dirs) {
    if (dir.empty()) continue;
    std::string path = (std::filesystem::path(dir) / kRbdModuleFile).string();
    // RTLD_NOW: a missing symbol fails here, not in the middle of serving. RTLD_LOCAL: librbd's
    // symbols stay out of the way of everything else.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      std::string why = dl_error();
      if (::access(path.c_str(), F_OK) == 0)
        throw_setup("cannot load the rbd module: {} (package {} depends on the libraries it needs: librbd1, "
                    "librados2)",
                    why, kRbdModulePackage);
      tried += fmt::format("{}{}", tried.empty() ? "" : "; ", why);
      continue;
    }
    // Nothing of a refused module is called; it stays mapped (Ceph's libraries are not made to
    // be unloaded, and the server stops anyway).
    auto* stamp = static_cast<const char*>(::dlsym(handle, kRbdModuleStampSymbol));
    if (!stamp) throw_setup("{} is not an rbd module of ublk-rdma: it has no {}", path, kRbdModuleStampSymbol);
    if (std::strcmp(stamp, kRbdModuleBuildStamp) != 0)
      throw_setup("the rbd module {} is from another build ({}) than this program ({}): install the {} "
                  "package of the same version as ublk-rdma, or build both in one tree",
                  path, log::escaped(stamp), kRbdModuleBuildStamp, kRbdModulePackage);
    auto* entry = reinterpret_cast<decltype(&ublk_rdma_rbd_module)>(::dlsym(handle, kRbdModuleEntrySymbol));
    const RbdModuleApi* api = entry ? entry() : nullptr;
    if (!api || !api->open || !api->cluster_connections)
      throw_setup("the rbd module {} has no usable {}", path, kRbdModuleEntrySymbol);
    log::server()->info("rbd module: {}", path);
    if (loaded_path) *loaded_path = path;
    return *api;
  }
  throw_setup("rbd exports need the module {}, which the package {} installs (apt install {}); not found: {}",
              kRbdModuleFile, kRbdModulePackage, kRbdModulePackage, tried.empty() ? "no directory to look in" : tried);
}

void require_rbd_module(std::span<const ExportSpec> exports) {
  for (const ExportSpec& e : exports) {
    if (e.kind == BackendKind::kRbd) {
      module_for(e.name);
      return;
    }
  }
}

std::unique_ptr<Backend> open_rbd_backend(const ExportSpec& spec, bool read_only) {
  return module_for(spec.name).open(spec, read_only);
}

size_t rbd_cluster_connections() {
  const RbdModuleApi* api = loaded().api.load(std::memory_order_acquire);
  return api ? api->cluster_connections() : 0;
}

std::string rbd_module_path() {
  LoadedModule& m = loaded();
  return m.api.load(std::memory_order_acquire) ? m.path : std::string();
}

}  // namespace ublkrdma::server
