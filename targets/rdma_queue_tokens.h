#pragma once
// The tokens an rdma queue watches its fds under (QueueContext::watch_fd_st): the kind in the low
// two bits, and for a connection's fds the connection's index above them.
#include <cstddef>
#include <cstdint>

#include "targets/rdma_target.h"

namespace ublkrdma::targets {

inline constexpr uint8_t kTokenCq = 1;     // a connection's completion channel
inline constexpr uint8_t kTokenCm = 2;     // a connection's rdma_cm event channel
inline constexpr uint8_t kTokenQueue = 3;  // one of the queue's own fds, named by the bits above:
inline constexpr uint8_t kTokenIoTimer = kTokenQueue | 0 << 2;
inline constexpr uint8_t kTokenRecoveryTimer = kTokenQueue | 1 << 2;
inline constexpr uint8_t kTokenReconnected = kTokenQueue | 2 << 2;  // the reconnector's results
inline constexpr uint8_t kTokenKeepAliveTimer = kTokenQueue | 3 << 2;

constexpr uint8_t connection_token(uint8_t kind, size_t connection) { return uint8_t(kind | (connection << 2)); }
constexpr uint8_t token_kind(uint8_t token) { return token & 3; }
constexpr size_t token_index(uint8_t token) { return token >> 2; }
static_assert(kMaxConnsPerQueue <= 64, "a connection's fd tokens must fit in a byte");

}  // namespace ublkrdma::targets
