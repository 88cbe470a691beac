#pragma once
// Little-endian reads for the fuzz targets' own reading of the wire layouts (docs/protocol.md),
// kept apart from transport/wire_protocol.h so that a target can tell the decoder is wrong.
#include <cstddef>
#include <cstdint>

namespace ublkrdma::fuzz {

inline uint64_t le(const uint8_t* p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

inline bool all_zero(const uint8_t* p, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace ublkrdma::fuzz
