#include "server/connection_stats.h"

namespace ublkrdma::server {

const char* reject_reason_name(unsigned reason) {
  if (reason == kRejectMalformed) return "malformed";
  if (reason == kRejectTagBusy) return "tag_busy";
  return command_check_name(CommandCheck(reason));
}

nlohmann::json ConnectionStats::to_json() const {
  nlohmann::json by = nlohmann::json::object();
  for (unsigned i = 1; i < kRejectReasons; ++i)
    if (rejected_by[i].get()) by[reject_reason_name(i)] = rejected_by[i].get();
  return {{"commands", commands.get()},
          {"keep_alives", keep_alives.get()},
          {"peer_probes", peer_probes.get()},
          {"reads", reads.get()},
          {"writes", writes.get()},
          {"flushes", flushes.get()},
          {"discards", discards.get()},
          {"write_zeroes", write_zeroes.get()},
          {"rdma_bytes", rdma_bytes.get()},
          {"pushed_writes", pushed_writes.get()},
          {"copied_bytes", copied_bytes.get()},
          {"errors", errors.get()},
          {"rejected_commands", rejected.get()},
          {"rejected_by_reason", by},
          {"backend_errors", backend_errors.get()},
          {"polls", polls.get()},
          {"idle_polls", idle_polls.get()},
          {"sleeps", sleeps.get()},
          {"serial_commands", serial_commands.get()},
          {"doorbells", doorbells.get()},
          {"max_post_batch", max_post_batch.get()},
          {"sq_depth_max", sq_depth_max.get()},
          {"rdma_reads_max", rdma_reads_max.get()},
          {"read_done_imm", read_done_imm.get()},
          {"answer_sends", answer_sends.get()},
          {"parked_max", parked_max.get()},
          {"unanswered_at_stop", unanswered_at_stop.get()}};
}

}  // namespace ublkrdma::server
