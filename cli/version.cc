#include "cli/version.h"

#include "git_commit.h"  // generated at build time (cmake/git_commit.cmake)

namespace ublkrdma::cli {

std::string git_commit() { return UBLK_RDMA_GIT_COMMIT; }

std::string version_text() { return std::string(UBLK_RDMA_VERSION) + " (git " + git_commit() + ")"; }

}  // namespace ublkrdma::cli
