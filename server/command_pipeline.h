#pragma once
// The life of a command on a served connection, from its arrival to its answer. Each tag has
// one state (CommandState); one function, advance(), drives a command from state to state
// until it has to wait for something outside the pipeline (an RDMA READ credit, the RDMA
// READ's completion, the backend). The pipeline moves no bytes itself: it asks its connection
// (CommandIo) to queue RDMA work and answers and to hand commands to the backend, and the
// connection reports completions back. That seam is what the unit tests drive with a fake.
//
// Owner thread only (the connection's).
#include <cstdint>
#include <string>
#include <vector>

#include "server/command_validator.h"
#include "server/connection_stats.h"
#include "transport/wire_protocol.h"

namespace ublkrdma::server {

// How an RDMA READ of WRITE data was queued. Carried in its wr_id (WorkId::op), so that its
// completion gives back a credit only when it took one.
enum class ReadKind : uint8_t {
  kDirect = 0,    // straight into the export (ram): takes no credit; its answer is fenced
  kCredited = 1,  // into the tag's buffer: signaled, holds one of max_reads credits
};

enum class AnswerKind : uint8_t {
  kAnswer,   // a Response from the tag's slot, sent after everything queued before it
  kFenced,   // the same for a direct WRITE: its SEND waits for the RDMA READs before it
  kRefusal,  // to a refused command (its tag may be out of range or busy): a scratch slot
  kKeepAlive,  // to a KEEP_ALIVE (its tag is the one beyond the depth): a scratch slot
};

// What the pipeline needs from its connection.
class CommandIo {
 public:
  virtual ~CommandIo() = default;
  // Queues the RDMA READ of a WRITE's data (client buffer -> server).
  virtual void queue_rdma_read(const wire::Command& cmd, ReadKind kind) = 0;
  // Queues the RDMA WRITE of a READ's data (server -> client buffer); with `read_done` it
  // carries the ReadDone immediate and no answer follows.
  virtual void queue_rdma_write(const wire::Command& cmd, bool read_done) = 0;
  // Queues the answer to `cmd` (err: 0 or a negative errno).
  virtual void queue_answer(const wire::Command& cmd, int err, AnswerKind kind) = 0;
  // Hands the command to the backend; a negative errno if the backend refused it at once.
  virtual int submit_backend(const wire::Command& cmd) = 0;
  // The export's size now, which a resized rbd image changes (Backend::size()); 0: it stays
  // what the limits say.
  virtual uint64_t export_size() const { return 0; }
};

struct PipelineConfig {
  std::string peer;  // for log messages
  uint16_t depth = 0;
  uint32_t max_reads = 1;  // RDMA READ credits (the connection's initiator depth)
  bool direct = false;     // READ/WRITE data moves straight to and from the export's memory
  bool read_imm = false;   // successful READs complete as RDMA WRITE WITH IMMEDIATE (no SEND)
  bool keep_alive = false;  // KEEP_ALIVE negotiated: taken on tag `depth`, answered at once
  CommandLimits limits;         // READ and WRITE
  CommandLimits limits_nodata;  // FLUSH, DISCARD, WRITE_ZEROES
};

enum class CommandState : uint8_t {
  kFree,            // No command: the tag waits for the client to send one.
  kNew,             // Accepted this instant; routed by its opcode and the export (passes through).
  kNeedReadCredit,  // A WRITE waits for an RDMA READ credit: max_reads READs are in flight.
  kReadingData,     // The RDMA READ of a WRITE's data is queued: waits for its completion.
  kReadyToExecute,  // Its data, if any, is in the tag's buffer: goes to the backend (passes through).
  kBackend,         // With the backend: waits for its completion.
  kAnswering,       // Its result is known: data and answer are queued, the tag freed (passes through).
};
const char* command_state_name(CommandState s);

class CommandPipeline {
 public:
  CommandPipeline(PipelineConfig config, CommandIo& io, ConnectionStats& stats);

  // A command off the wire; `malformed`: the message around it was (it is refused).
  void on_command(const wire::Decoded<wire::Command>& d, bool malformed, uint32_t byte_len);
  // An RDMA READ of WRITE data completed (`ok` false: failed or flushed).
  void on_read_done(uint16_t tag, ReadKind kind, bool ok);
  // The backend finished a command. False if that tag was not with the backend.
  bool on_backend_done(uint16_t tag, int result);
  // Stop taking on work: new commands are left unanswered (the client reissues them).
  void start_draining() { draining_ = true; }
  // The connection is unusable: nothing more is queued; commands waiting for a credit are
  // freed now, the others when their RDMA READ or backend completion comes back.
  void fail();

  uint32_t inflight() const { return inflight_; }
  uint32_t read_credits_in_use() const { return reads_; }
  CommandState state(uint16_t tag) const { return tags_[tag].state; }
  bool draining() const { return draining_; }
  bool failed() const { return failed_; }

 private:
  struct Tag {
    wire::Command cmd{};
    CommandState state = CommandState::kFree;
    bool fenced = false;  // its answer waits for the RDMA READs queued before it
    int result = 0;
  };

  void advance(Tag& t);
  void release(Tag& t);
  void reject(const wire::Command& cmd, unsigned reason, int err);
  void keep_alive(const wire::Command& cmd);
  // Takes the export's current size into the limits; true if it changed.
  bool follow_export_size();
  void grant_read_credits();

  PipelineConfig config_;  // fixed but for the export size (follow_export_size)
  CommandIo& io_;
  ConnectionStats& stats_;
  std::vector<Tag> tags_;
  uint32_t inflight_ = 0;
  uint32_t reads_ = 0;  // RDMA READ credits in use
  // Tags in kNeedReadCredit, oldest first (a ring: each tag at most once).
  std::vector<uint16_t> credit_wait_;
  size_t wait_head_ = 0, wait_len_ = 0;
  bool draining_ = false;
  bool failed_ = false;
};

}  // namespace ublkrdma::server
