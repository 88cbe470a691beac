#pragma once
// An rdma queue's counters (list --json): one writer, the queue thread.
#include <nlohmann/json.hpp>

#include "base/counter.h"

namespace ublkrdma::targets {

struct RdmaCounters {
  RelaxedCounter rdma_bytes;         // data the server moved by RDMA for completed READ/WRITE
  RelaxedCounter copied_bytes;       // IO data copied in userspace (no such path exists: stays 0)
  RelaxedCounter commands;           // commands sent
  RelaxedCounter completed;          // responses matched to a command
  RelaxedCounter errors;             // requests completed with an error
  RelaxedCounter stale_completions;  // responses for a tag/generation no longer in flight
  RelaxedCounter timeouts;           // requests that exceeded io_timeout
  RelaxedCounter keep_alives;        // KEEP_ALIVEs answered
  RelaxedCounter keep_alive_timeouts;  // ... not answered within the keepalive timeout (connection lost)
  RelaxedCounter connection_lost;    // connections lost (each loss of each connection)
  RelaxedCounter reissued;           // requests taken back from a lost connection, to go out again
  RelaxedCounter sq_depth_max;       // send-queue slots in use, high water
  RelaxedCounter recv_reposts;
  RelaxedCounter polls;              // ibv_poll_cq calls
  RelaxedCounter idle_polls;         // ... that found nothing
  RelaxedCounter max_poll_batch;     // most completions from one ibv_poll_cq
  RelaxedCounter doorbells;          // ibv_post_send calls
  RelaxedCounter max_post_batch;     // most commands in one ibv_post_send
  RelaxedCounter signaled_sends;
  RelaxedCounter inline_sends;
  RelaxedCounter command_sends;      // SENDs carrying commands (fewer than commands with BATCH)
  RelaxedCounter answers;            // Responses to commands received (with BATCH, several per receive)
  RelaxedCounter cq_arms;            // ibv_req_notify_cq calls
  RelaxedCounter cq_events;          // completion channel wakeups
  RelaxedCounter read_done_imm;      // READs completed by the server's RDMA WRITE WITH IMMEDIATE
  RelaxedCounter pushed_writes;      // WRITEs whose data we put into the export by RDMA WRITE
  RelaxedCounter pulled_reads;       // READs whose data we took from the export by RDMA READ
  RelaxedCounter pulled_bytes;       // ... and their bytes (in rdma_bytes, but moved by us, not the server)
  RelaxedCounter fenced_writes;      // pushed WRITEs with no command, done by an RDMA READ fence
  RelaxedCounter fenced_bytes;       // ... and their bytes (in rdma_bytes; the server never sees them)
  RelaxedCounter fences;             // those RDMA READ fences (one per chain that has fenced WRITEs)
  RelaxedCounter window_binds;       // --mr-per-io: memory windows bound, one per request the server moves
  RelaxedCounter window_invalidations;  // ... and invalidated again before the request completed

  nlohmann::json to_json() const {
    return {
        {"rdma_bytes", rdma_bytes.get()},
        {"copied_bytes", copied_bytes.get()},
        {"commands", commands.get()},
        {"completed", completed.get()},
        {"errors", errors.get()},
        {"stale_completions", stale_completions.get()},
        {"timeouts", timeouts.get()},
        {"keep_alives", keep_alives.get()},
        {"keep_alive_timeouts", keep_alive_timeouts.get()},
        {"connection_lost", connection_lost.get()},
        {"reissued", reissued.get()},
        {"sq_depth_max", sq_depth_max.get()},
        {"recv_reposts", recv_reposts.get()},
        {"polls", polls.get()},
        {"idle_polls", idle_polls.get()},
        {"max_poll_batch", max_poll_batch.get()},
        {"doorbells", doorbells.get()},
        {"max_post_batch", max_post_batch.get()},
        {"signaled_sends", signaled_sends.get()},
        {"inline_sends", inline_sends.get()},
        {"command_sends", command_sends.get()},
        {"answers", answers.get()},
        {"cq_arms", cq_arms.get()},
        {"cq_events", cq_events.get()},
        {"read_done_imm", read_done_imm.get()},
        {"pushed_writes", pushed_writes.get()},
        {"pulled_reads", pulled_reads.get()},
        {"pulled_bytes", pulled_bytes.get()},
        {"fenced_writes", fenced_writes.get()},
        {"fenced_bytes", fenced_bytes.get()},
        {"fences", fences.get()},
        {"window_binds", window_binds.get()},
        {"window_invalidations", window_invalidations.get()},
    };
  }
};

}  // namespace ublkrdma::targets
