#pragma once
// null:SIZE: completes every command at once and stores nothing. Reads leave the buffer as it
// is (no zeroing: the point is to measure the transport), writes are dropped.
#include <memory>

#include "server/backend.h"

namespace ublkrdma::server {

inline constexpr uint32_t kNullBlockSize = 512;

std::unique_ptr<Backend> open_null_backend(const ExportSpec& spec, bool read_only);

}  // namespace ublkrdma::server
