// A stand-in for the rbd module (server/rbd_module_abi.h) for the loader's tests
// (rbd_module_test.cc), without librbd: FAKE_RBD_MODULE_OF_THIS_BUILD=1 makes one with this build's
// stamp, whose open throws and which counts 7 cluster connections; 0 one from another build.
#include "base/errors.h"
#include "server/rbd_module_abi.h"

namespace {

std::unique_ptr<ublkrdma::server::Backend> fake_open(const ublkrdma::server::ExportSpec& spec, bool) {
  throw ublkrdma::SetupError("export '" + spec.name + "': the fake rbd module opens nothing", 5);
}

size_t fake_cluster_connections() { return 7; }

}  // namespace

#if FAKE_RBD_MODULE_OF_THIS_BUILD
const char ublk_rdma_rbd_module_stamp[] = UBLK_RDMA_RBD_MODULE_STAMP;
#else
const char ublk_rdma_rbd_module_stamp[] = "ublk-rdma 0.0.1 (git 000000000000)";
#endif

const ublkrdma::server::RbdModuleApi* ublk_rdma_rbd_module() {
  static constexpr ublkrdma::server::RbdModuleApi kApi{&fake_open, &fake_cluster_connections};
  return &kApi;
}
