#include "transport/wire_protocol.h"

#include <cerrno>

namespace ublkrdma::wire {

const char* connect_status_text(ConnectStatus s) {
  switch (s) {
    case ConnectStatus::kOk: return "accepted";
    case ConnectStatus::kUnknownExport: return "unknown export name";
    case ConnectStatus::kAccessDenied: return "access denied for this client address";
    case ConnectStatus::kBadVersion: return "no common protocol version";
    case ConnectStatus::kBusy: return "server busy: at its connection or buffer memory limit, or shutting down";
    case ConnectStatus::kBadParams: return "queue depth or max IO size outside the server's limits";
    case ConnectStatus::kInternal: return "server-side setup failure";
    case ConnectStatus::kAuthRequired: return "the server requires authentication";
    case ConnectStatus::kAuthBackoff: return "too many failed authentications from this address: retry later";
    case ConnectStatus::kUnavailable: return "the export's storage is unavailable on the server now: retry later";
  }
  return "unknown reason";
}

int status_to_errno(int32_t s) {
  switch (Status(s)) {
    case Status::kOk: return 0;
    case Status::kIoError: return -EIO;
    case Status::kAccess: return -EACCES;
    case Status::kBusy: return -EBUSY;
    case Status::kInvalid: return -EINVAL;
    case Status::kNoSpace: return -ENOSPC;
    case Status::kReadOnly: return -EROFS;
    case Status::kRange: return -ERANGE;
    case Status::kNotSupported: return -EOPNOTSUPP;
    case Status::kTimedOut: return -ETIMEDOUT;
  }
  return -EIO;
}

int32_t errno_to_status(int neg_errno) {
  switch (neg_errno) {
    case 0: return int32_t(Status::kOk);
    case -EIO: return int32_t(Status::kIoError);
    case -EACCES: return int32_t(Status::kAccess);
    case -EBUSY: return int32_t(Status::kBusy);
    case -EINVAL: return int32_t(Status::kInvalid);
    case -ENOSPC: return int32_t(Status::kNoSpace);
    case -EROFS: return int32_t(Status::kReadOnly);
    case -ERANGE: return int32_t(Status::kRange);
    case -EOPNOTSUPP: return int32_t(Status::kNotSupported);
    case -ETIMEDOUT: return int32_t(Status::kTimedOut);
    default: return int32_t(Status::kIoError);
  }
}

const char* decode_error_text(DecodeError e) {
  switch (e) {
    case DecodeError::kOk: return "ok";
    case DecodeError::kTooShort: return "message too short";
    case DecodeError::kBadMagic: return "bad magic (not a ublk-rdma peer)";
    case DecodeError::kBadVersion: return "unsupported protocol version";
    case DecodeError::kBadOpcode: return "unknown opcode";
    case DecodeError::kBadFlags: return "unknown flag bits";
    case DecodeError::kReservedNonZero: return "reserved field not zero";
    case DecodeError::kBadName: return "malformed export name";
    case DecodeError::kBadParams: return "parameter out of range";
  }
  return "?";
}

}  // namespace ublkrdma::wire
