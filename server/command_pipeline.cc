#include "server/command_pipeline.h"

#include <cerrno>

#include "base/errors.h"
#include "base/log.h"

namespace ublkrdma::server {


const char* command_state_name(CommandState s) {
  switch (s) {
    case CommandState::kFree: return "free";
    case CommandState::kNew: return "new";
    case CommandState::kNeedReadCredit: return "need_read_credit";
    case CommandState::kReadingData: return "reading_data";
    case CommandState::kReadyToExecute: return "ready_to_execute";
    case CommandState::kBackend: return "backend";
    case CommandState::kAnswering: return "answering";
  }
  return "?";
}

CommandPipeline::CommandPipeline(PipelineConfig config, CommandIo& io, ConnectionStats& stats)
    : config_(std::move(config)), io_(io), stats_(stats), tags_(config_.depth), credit_wait_(config_.depth) {}

void CommandPipeline::on_command(const wire::Decoded<wire::Command>& d, bool malformed, uint32_t byte_len) {
  if (failed_) return;
  const wire::Command& cmd = d.value;
  if (d.ok() && !malformed && cmd.opcode == wire::Opcode::kKeepAlive) return keep_alive(cmd);
  stats_.commands.add_st();
  if (malformed || !d.ok()) {
    (void)byte_len;  // with debug logging compiled out
    SPDLOG_LOGGER_DEBUG(log::server(), "{}: malformed command ({} bytes): {}", config_.peer, byte_len,
                        wire::decode_error_text(d.error));
    return reject(cmd, kRejectMalformed, -EINVAL);
  }
  bool moves_data = cmd.opcode == wire::Opcode::kRead || cmd.opcode == wire::Opcode::kWrite;
  CommandToValidate what{uint8_t(cmd.opcode), cmd.flags, cmd.tag, cmd.offset, cmd.length};
  CommandCheck check = validate_command(what, moves_data ? config_.limits : config_.limits_nodata);
  // The export may have grown since (a resized image) and the client learned of it on another
  // connection first.
  if (check == CommandCheck::kOutOfRange && follow_export_size())
    check = validate_command(what, moves_data ? config_.limits : config_.limits_nodata);
  if (check != CommandCheck::kOk) {
    SPDLOG_LOGGER_DEBUG(log::server(), "{}: command tag {} refused: {}", config_.peer, cmd.tag,
                        command_check_name(check));
    return reject(cmd, unsigned(check), command_check_errno(check));
  }
  Tag& t = tags_[cmd.tag];
  if (t.state != CommandState::kFree) return reject(cmd, kRejectTagBusy, -EBUSY);
  if (draining_) {
    // Stopping: no new work, and no answer either. The connection closes once what is in
    // flight is answered, and the client holds a request left without an answer and reissues
    // it when it reconnects (to this server restarted, or another path), as after a crash; an
    // error answer would reach the application instead.
    stats_.unanswered_at_stop.add_st();
    return;
  }
  t.cmd = cmd;
  t.state = CommandState::kNew;
  t.fenced = false;
  t.result = 0;
  ++inflight_;
  switch (cmd.opcode) {
    case wire::Opcode::kRead: stats_.reads.add_st(); break;
    case wire::Opcode::kWrite: stats_.writes.add_st(); break;
    case wire::Opcode::kFlush: stats_.flushes.add_st(); break;
    case wire::Opcode::kDiscard: stats_.discards.add_st(); break;
    case wire::Opcode::kWriteZeroes: stats_.write_zeroes.add_st(); break;
    case wire::Opcode::kKeepAlive: break;  // answered before validation, never here
  }
  advance(t);
}

// The one transition function: runs a command until it waits (or is done).
void CommandPipeline::advance(Tag& t) {
  const wire::Command& cmd = t.cmd;
  for (;;) {
    switch (t.state) {
      case CommandState::kFree:
        return;

      case CommandState::kNew:
        if (cmd.opcode == wire::Opcode::kRead && config_.direct) {
          // ram: the RDMA WRITE out of the export is the IO.
          t.state = CommandState::kAnswering;
        } else if (cmd.opcode == wire::Opcode::kWrite && (cmd.flags & wire::kCmdFlagPushed)) {
          // PUSH_WRITES / PUSH_SLOTS: the data came before the command (RC order on the
          // client's QP), into the export or into the tag's slot.
          stats_.pushed_writes.add_st();
          stats_.rdma_bytes.add_st(cmd.length);
          t.state = config_.direct ? CommandState::kAnswering : CommandState::kReadyToExecute;
        } else if (cmd.opcode == wire::Opcode::kWrite && config_.direct) {
          // ram: RDMA READ into the export, and an answer that leaves, fenced, once the data
          // is in. The server never waits for the READ's completion: one pass and one doorbell
          // serve the command, and the tag is free at once (the client reuses it only after the
          // answer, which follows the data).
          stats_.rdma_bytes.add_st(cmd.length);
          io_.queue_rdma_read(cmd, ReadKind::kDirect);
          t.fenced = true;
          t.state = CommandState::kAnswering;
        } else if (cmd.opcode == wire::Opcode::kWrite) {
          t.state = CommandState::kNeedReadCredit;
          credit_wait_[(wait_head_ + wait_len_++) % credit_wait_.size()] = cmd.tag;
        } else {
          t.state = CommandState::kReadyToExecute;
        }
        break;

      case CommandState::kNeedReadCredit:
        // Credits go in arrival order: only the oldest waiter may take one.
        if (reads_ >= config_.max_reads || wait_len_ == 0 || credit_wait_[wait_head_] != cmd.tag) return;
        wait_head_ = (wait_head_ + 1) % credit_wait_.size();
        --wait_len_;
        ++reads_;
        stats_.rdma_reads_max.max_st(reads_);
        t.state = CommandState::kReadingData;
        io_.queue_rdma_read(cmd, ReadKind::kCredited);
        return;

      case CommandState::kReadingData:
        return;

      case CommandState::kReadyToExecute: {
        t.state = CommandState::kBackend;
        int rc = io_.submit_backend(cmd);
        if (rc >= 0) return;
        stats_.backend_errors.add_st();
        t.result = rc;
        t.state = CommandState::kAnswering;
        break;
      }

      case CommandState::kBackend:
        return;

      case CommandState::kAnswering: {
        const wire::Command c = cmd;
        int err = t.result;
        bool fenced = t.fenced;
        release(t);
        if (failed_) return;
        if (err < 0) stats_.errors.add_st();
        if (err == 0 && c.opcode == wire::Opcode::kRead) {
          // The data, then the answer (or with READ_IMM the data alone, carrying ReadDone).
          io_.queue_rdma_write(c, config_.read_imm);
          stats_.rdma_bytes.add_st(c.length);
          if (config_.read_imm) {
            stats_.read_done_imm.add_st();
            return;
          }
        }
        io_.queue_answer(c, err, fenced ? AnswerKind::kFenced : AnswerKind::kAnswer);
        return;
      }
    }
  }
}

void CommandPipeline::on_read_done(uint16_t tag, ReadKind kind, bool ok) {
  // A direct READ took no credit and holds no tag (its answer is fenced behind it): its
  // completion, when the send budget signaled it, only retires send-queue slots.
  if (kind != ReadKind::kCredited || tag >= config_.depth) return;
  Tag& t = tags_[tag];
  if (t.state != CommandState::kReadingData) return;  // cannot happen: one credited READ per command
  --reads_;
  if (!ok) return release(t);
  stats_.rdma_bytes.add_st(t.cmd.length);
  t.state = CommandState::kReadyToExecute;
  advance(t);
  grant_read_credits();
}

void CommandPipeline::grant_read_credits() {
  while (!failed_ && wait_len_ > 0 && reads_ < config_.max_reads) {
    Tag& t = tags_[credit_wait_[wait_head_]];
    if (t.state != CommandState::kNeedReadCredit) {  // cannot happen: waiters leave only here or in fail()
      wait_head_ = (wait_head_ + 1) % credit_wait_.size();
      --wait_len_;
      continue;
    }
    advance(t);
  }
}

bool CommandPipeline::on_backend_done(uint16_t tag, int result) {
  if (tag >= config_.depth || tags_[tag].state != CommandState::kBackend) return false;
  Tag& t = tags_[tag];
  if (result < 0) {
    stats_.backend_errors.add_st();
    SPDLOG_LOGGER_DEBUG(log::server(), "{}: backend error on tag {}: {}", config_.peer, tag, errno_text(result));
  }
  t.result = result < 0 ? result : 0;
  t.state = CommandState::kAnswering;
  advance(t);
  return true;
}

void CommandPipeline::fail() {
  if (failed_) return;
  failed_ = true;
  // Their RDMA READ will never be posted.
  for (Tag& t : tags_)
    if (t.state == CommandState::kNeedReadCredit) release(t);
  wait_len_ = 0;
}

void CommandPipeline::release(Tag& t) {
  if (t.state == CommandState::kFree) return;
  t.state = CommandState::kFree;
  --inflight_;
}

// Answered in this pass, whatever else is in flight or draining: the client takes a late answer
// for a dead server. Only in the form the protocol defines; anything else is refused.
void CommandPipeline::keep_alive(const wire::Command& cmd) {
  if (!config_.keep_alive || cmd.tag != config_.depth || cmd.flags != 0 || cmd.offset != 0 || cmd.length != 0 ||
      cmd.rkey != 0 || cmd.addr != 0) {
    stats_.commands.add_st();
    return reject(cmd, kRejectMalformed, -EINVAL);
  }
  stats_.keep_alives.add_st();
  follow_export_size();  // the answer tells the client the size: ranges are checked against it
  io_.queue_answer(cmd, 0, AnswerKind::kKeepAlive);
}

bool CommandPipeline::follow_export_size() {
  uint64_t now = io_.export_size();
  if (now == 0 || now == config_.limits.export_size) return false;
  config_.limits.export_size = now;
  config_.limits_nodata.export_size = now;
  return true;
}

void CommandPipeline::reject(const wire::Command& cmd, unsigned reason, int err) {
  stats_.rejected.add_st();
  stats_.rejected_by[reason].add_st();
  stats_.errors.add_st();
  io_.queue_answer(cmd, err, AnswerKind::kRefusal);
}

}  // namespace ublkrdma::server
