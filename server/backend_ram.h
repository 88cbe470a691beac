#pragma once
// ram:SIZE[,hugepages][,populate]: the export is anonymous memory the server RDMAs into.
#include <memory>

#include "server/backend.h"

namespace ublkrdma::server {

inline constexpr uint32_t kRamBlockSize = 512;

// Throws SetupError. With hugepages, tries MAP_HUGETLB and falls back (with a warning) to
// ordinary pages advised as transparent huge pages.
std::unique_ptr<Backend> open_ram_backend(const ExportSpec& spec, bool read_only);

}  // namespace ublkrdma::server
