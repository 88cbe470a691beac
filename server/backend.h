#pragma once
// The storage behind one export, as the server's poll groups see it.
//
// Backend: one per export, opened at startup, shared by all connections. Immutable after
// open but for its size (refresh_size()), and thread-safe (all accessors const;
// open_queue may be called from any thread).
//
// BackendQueue: one per connection (functions run on its poll group's thread only; no locks). The
// server hands it commands that passed validate_command() (command_validator.h). A backend
// re-checks only what keeps memory safe (tag, buffer, range, read-only), not alignment,
// limits or flags, so never submit an unvalidated command. A Backend outlives its queues.
//
// The data path, per backend:
//  - ram:  direct_memory() is the export itself. The server registers it as an RDMA memory
//          region once and moves data with RDMA READ/WRITE straight between the client's buffer
//          and direct_memory() + offset. submit(READ/WRITE) must then be given exactly that
//          buffer and completes at once without touching the data (zero copy). Any other
//          buffer is refused with -EINVAL (a copy would hide a server bug). DISCARD and
//          WRITE_ZEROES zero the range in place with memset: the memory is pinned by the NIC,
//          so MADV_DONTNEED would make the CPU's and the NIC's views of it diverge. Up to
//          kRamZeroChunk (backend_ram.h) inside submit(); a larger range that much per poll(),
//          between the other commands, with event_fd() readable until it is done.
//  - file: io_uring per queue, O_DIRECT where the file system allows it. The buffers given to
//          open_queue() (the server's RDMA-registered buffers) become io_uring fixed buffers,
//          so data goes disk <-> NIC memory without a copy; a buffer outside them still works
//          (plain READ/WRITE). FLUSH = fdatasync, FUA = write with RWF_DSYNC, DISCARD = punch
//          hole / BLKDISCARD, WRITE_ZEROES = zero range (punch hole where unsupported) /
//          BLKZEROOUT. Short transfers are resubmitted; a read past EOF fails with -EIO.
//  - null: everything completes at once; reads leave the buffer as it is (whatever the server
//          last had there: the server should give each connection its own buffers), writes
//          are dropped.
//
// Completion contract: submit() only queues. poll() pushes everything queued since the last
// poll() to the kernel (one syscall per pass) and then reaps without blocking. So call poll()
// after each batch of submit()s, and always before sleeping on event_fd(): completions that
// finish inside submit() (ram, null, block-device ioctls, immediate errors) are only handed
// out by poll() and do not make event_fd() readable. Work that only poll() advances (a ram
// export's large zeroing) keeps event_fd() readable until it is done, so sleeping on it never
// stalls that work.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "base/log.h"
#include "base/size.h"
#include "server/export_spec.h"
#include "transport/protocol.h"

namespace ublkrdma::server {

// Ops are wire::Opcode and submit() flags wire::kCmdFlag* (transport/protocol.h): a validated
// command is handed to the backend as it was decoded. Of the flags a backend acts on FUA only.

// supported_ops() bits. READ and WRITE are always supported.
inline constexpr uint32_t kSupportsFlush = 1u << 0;
inline constexpr uint32_t kSupportsFua = 1u << 1;
inline constexpr uint32_t kSupportsDiscard = 1u << 2;
inline constexpr uint32_t kSupportsWriteZeroes = 1u << 3;

struct BackendCompletion {
  uint16_t tag;
  int32_t result;  // READ/WRITE: bytes transferred (== length); others: 0; or -errno
};

class BackendQueue {
 public:
  virtual ~BackendQueue() = default;

  // Queues one command for `tag` (< depth, at most one command per tag in flight). `buffer`
  // holds `length` bytes (READ/WRITE only; null otherwise). Returns 0 if queued (its
  // completion comes from poll(), possibly already on the next call), or -errno if refused
  // outright (-EINVAL bad tag/buffer/range, -EBUSY tag in flight, -EROFS on a read-only
  // export, -EAGAIN if the kernel ring stays full); a refused command produces no completion.
  virtual int submit(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
                     uint32_t flags) = 0;

  // Pushes queued commands to the kernel, then copies up to out.size() finished commands into
  // `out` without blocking. Returns how many (>= 0), or -errno if the ring failed.
  virtual int poll(std::span<BackendCompletion> out) = 0;

  // -1 if every command completes synchronously (poll() right after submit() finds them).
  // Otherwise an fd that is readable (level-triggered: POLLIN) while completions wait to be
  // reaped by poll() or work waits for poll() to advance it; watch it with epoll or an
  // IORING_OP_POLL_ADD. Never read it. The same fd for the queue's lifetime.
  virtual int event_fd() const = 0;

  // True while any submitted command has not yet been returned by poll().
  virtual bool busy() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Bytes, a multiple of block_size(). It follows the storage when that is resized (refresh_size():
  // an rbd image, a file, a block device); a ram or null export's is fixed at open.
  virtual uint64_t size() const = 0;
  virtual uint32_t block_size() const = 0;  // logical block size: 512 or 4096
  virtual bool read_only() const = 0;
  virtual uint32_t supported_ops() const = 0;  // kSupports* bits

  // Names the export's data across connections and server restarts (never 0): a client that
  // reconnects checks it (protocol v7) so that it never reads a recreated export's zeros as its
  // data. A ram export's is random per process; a file's is derived from the file itself.
  virtual uint32_t instance_id() const = 0;

  // The export's own memory when the server may RDMA straight into it (ram), else empty.
  virtual std::span<std::byte> direct_memory() const = 0;

  // True when a command's completion is a network round trip away (a cluster: milliseconds),
  // delivered by the backend's own threads. A poll group then does not keep polling for it:
  // the CPU is better left to those threads.
  virtual bool completes_remotely() const { return false; }

  // Reads the size anew where the storage can change under the server (`rbd resize`, an LV
  // extended, a file truncated); the server calls it every second from one thread. Its queues
  // check ranges against the new size at once.
  virtual void refresh_size() const {}

  // A queue for one connection. `registered_buffers` is the server's RDMA-registered
  // memory that will be passed to submit() (file backends register it as io_uring fixed
  // buffers; empty is allowed). `depth` bounds the tags. Throws SetupError.
  virtual std::unique_ptr<BackendQueue> open_queue(std::span<std::byte> registered_buffers,
                                                   uint16_t depth) const = 0;
};

// offset + length <= size without overflow.
inline bool within_export(uint64_t export_size, uint64_t offset, uint64_t length) {
  return offset <= export_size && length <= export_size - offset;
}

// What a queue's submit() refuses whatever the backend (memory safety and read-only, not the
// validator's checks): -EINVAL for a range beyond the export or a READ/WRITE without a buffer,
// -EROFS for a writing command on a read-only export; else 0.
inline int refuse_unsafe(uint64_t export_size, bool read_only, wire::Opcode op, uint64_t offset, uint32_t length,
                         const std::byte* buffer) {
  if (op != wire::Opcode::kFlush && !within_export(export_size, offset, length)) return -EINVAL;
  if (op != wire::Opcode::kRead && op != wire::Opcode::kFlush && read_only) return -EROFS;
  if ((op == wire::Opcode::kRead || op == wire::Opcode::kWrite) && (buffer == nullptr || length == 0)) return -EINVAL;
  return 0;
}

// refresh_size()'s common part: `bytes`, the storage's size as just read, in whole blocks
// becomes `size` (logged) unless it is what `size` holds or less than one block.
inline void follow_storage_size(std::atomic<uint64_t>& size, uint64_t bytes, uint32_t block_size,
                                std::string_view export_name) {
  bytes -= bytes % block_size;
  uint64_t was = size.load(std::memory_order_relaxed);
  if (bytes == was || bytes == 0) return;
  log::server()->info("export '{}': resized from {} to {}", export_name, format_size(was), format_size(bytes));
  size.store(bytes, std::memory_order_relaxed);
}

// Opens the storage of `spec`, read-only if `read_only` or spec.read_only. Throws SetupError
// with the export name and path in the message.
std::unique_ptr<Backend> open_backend(const ExportSpec& spec, bool read_only = false);

}  // namespace ublkrdma::server
