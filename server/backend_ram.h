#pragma once
// ram:SIZE[,hugepages][,populate]: the export is anonymous memory the server RDMAs into.
#include <memory>

#include "server/backend.h"

namespace ublkrdma::server {

inline constexpr uint32_t kRamBlockSize = 512;

// DISCARD / WRITE_ZEROES up to this size are done inside submit(); larger ones this much per
// poll() (a memset of 1 MiB takes tens of microseconds, 4 GiB seconds).
inline constexpr uint32_t kRamZeroChunk = 1u << 20;

// Throws SetupError. With hugepages, tries MAP_HUGETLB and falls back (with a warning) to
// ordinary pages advised as transparent huge pages.
std::unique_ptr<Backend> open_ram_backend(const ExportSpec& spec, bool read_only);

}  // namespace ublkrdma::server
