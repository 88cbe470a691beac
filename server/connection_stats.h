#pragma once
// The counters of one served connection: written by its thread only, read by the stats
// reporter (relaxed), exported as JSON.
#include <array>
#include <nlohmann/json.hpp>

#include "base/counter.h"
#include "server/command_validator.h"

namespace ublkrdma::server {

// Why a command was refused: the validator's checks, then what the validator does not know
// (a malformed command, a tag already in flight).
inline constexpr unsigned kRejectMalformed = kCommandCheckCount;
inline constexpr unsigned kRejectTagBusy = kCommandCheckCount + 1;
inline constexpr unsigned kRejectReasons = kCommandCheckCount + 2;
const char* reject_reason_name(unsigned reason);

struct ConnectionStats {
  RelaxedCounter commands;
  RelaxedCounter keep_alives;  // KEEP_ALIVEs answered (not commands)
  RelaxedCounter peer_probes;  // zero-length RDMA WRITEs probing a silent client
  RelaxedCounter reads, writes, flushes, discards, write_zeroes;
  RelaxedCounter rdma_bytes;          // READ data RDMA-written + WRITE data RDMA-read or pushed
  RelaxedCounter pushed_writes;       // WRITEs whose data the client put into the export (PUSH_WRITES)
  RelaxedCounter copied_bytes;        // IO data copied in userspace: no such path, stays 0
  RelaxedCounter errors;              // responses with a non-zero status
  RelaxedCounter rejected;            // commands refused by validation (subset of errors)
  std::array<RelaxedCounter, kRejectReasons> rejected_by;
  RelaxedCounter backend_errors;
  RelaxedCounter polls, idle_polls, sleeps;
  RelaxedCounter serial_commands;  // commands that came as part of a serial stream
  RelaxedCounter doorbells, max_post_batch, sq_depth_max, rdma_reads_max;
  RelaxedCounter read_done_imm;  // READs answered by RDMA WRITE WITH IMMEDIATE alone
  RelaxedCounter answer_sends;   // SENDs carrying Responses to commands (fewer than Responses with BATCH)
  RelaxedCounter parked_max;  // most commands held back at once because answers could not leave
  RelaxedCounter unanswered_at_stop;  // commands that came while the server stopped (reissued by the client)

  nlohmann::json to_json() const;
};

}  // namespace ublkrdma::server
