#include "server/backend_file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "base/io_ring.h"
#include "base/log.h"
#include "base/size.h"
#include "base/unique_fd.h"
#include "base/work_id.h"

namespace ublkrdma::server {
namespace {

// io_uring refuses a single fixed buffer above 1 GiB.
constexpr size_t kMaxFixedBufferBytes = size_t(1) << 30;
// A deeper queue shares SQ slots (prep_st() flushes a full SQ); the CQ is sized for depth.
constexpr unsigned kMaxRingEntries = 4096;

struct FileInfo {
  std::string name;  // export name, for logs
  int fd = -1;
  bool block_device = false;
  bool read_only = false;
  uint64_t size = 0;  // at open; the backend's refresh_size() follows a resize
  uint32_t block_size = 512;
  uint32_t instance_id = 1;  // from the file's identity (device and inode, or the block device)
};

// A block device is its device number, a file its file system and inode: the same data for
// every server process that opens it, another for a file that replaced it.
uint32_t file_instance_id(const struct stat& st, bool block_device) {
  uint64_t x = block_device ? uint64_t(st.st_rdev) : (uint64_t(st.st_dev) << 32) ^ uint64_t(st.st_ino);
  // splitmix64's finalizer: every input bit reaches the 32 bits kept.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  uint32_t id = uint32_t(x ^ (x >> 32));
  return id ? id : 1;
}

class FileQueue final : public FileBackendQueue {
 public:
  FileQueue(const FileInfo& info, const std::atomic<uint64_t>& size, std::span<std::byte> registered, uint16_t depth)
      : info_(info), size_(size), slots_(depth) {
    if (depth == 0) throw_setup("export '{}': queue depth 0", info.name);
    local_.reserve(depth);
    unsigned entries = std::min<unsigned>(depth, kMaxRingEntries);
    ring_.init(entries, 0, std::max<unsigned>(2 * entries, depth));
    for (size_t at = 0; at < registered.size(); at += kMaxFixedBufferBytes) {
      size_t len = std::min(kMaxFixedBufferBytes, registered.size() - at);
      fixed_.push_back(iovec{registered.data() + at, len});
    }
    if (!fixed_.empty()) {
      int rc = io_uring_register_buffers(ring_.get(), fixed_.data(), unsigned(fixed_.size()));
      if (rc < 0) {
        log::server()->warn("export '{}': cannot register {} as io_uring fixed buffers ({}); using plain reads "
                            "and writes (check RLIMIT_MEMLOCK)",
                            info.name, format_size(registered.size()), errno_text(rc));
        fixed_.clear();
      }
    }
  }

  ~FileQueue() override { drain(); }

  bool fixed_buffers() const override { return !fixed_.empty(); }
  int event_fd() const override { return ring_.fd(); }
  bool busy() const override { return active_ > 0; }

  int submit(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
             uint32_t flags) override {
    if (tag >= slots_.size()) return -EINVAL;
    Slot& s = slots_[tag];
    if (s.active) return -EBUSY;
    if (int rc = refuse_unsafe(size_.load(std::memory_order_relaxed), info_.read_only, op, offset, length, buffer);
        rc < 0)
      return rc;

    s = Slot{};
    s.op = op;
    s.flags = flags;
    s.offset = offset;
    s.length = length;
    s.buffer = buffer;
    s.generation = (next_generation_++) & WorkId::kGenMask;

    int rc = 0;
    switch (op) {
      case wire::Opcode::kRead:
      case wire::Opcode::kWrite:
        s.fixed_index = fixed_index(buffer, length);
        rc = prep_transfer_st(tag);
        break;
      case wire::Opcode::kFlush:
        rc = prep_st(tag, [&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, info_.fd, IORING_FSYNC_DATASYNC); });
        break;
      case wire::Opcode::kDiscard:
      case wire::Opcode::kWriteZeroes:
        if (info_.block_device) return block_device_ioctl_st(tag, op, offset, length);
        s.punch = op == wire::Opcode::kDiscard || zero_range_unsupported_;
        rc = prep_fallocate_st(tag);
        break;
      default:
        return -EINVAL;
    }
    if (rc < 0) return rc;
    s.active = true;
    ++active_;
    return 0;
  }

  int poll(std::span<BackendCompletion> out) override {
    if (io_uring_sq_ready(ring_.get()) > 0) {
      int rc = io_uring_submit(ring_.get());
      if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
        log::server()->error("export '{}': io_uring_submit: {}", info_.name, errno_text(rc));
        return rc;
      }
    }
    size_t n = 0;
    while (local_head_ < local_.size() && n < out.size()) {
      BackendCompletion c = local_[local_head_++];
      finish_st(c.tag, c.result, out, n);
    }
    if (local_head_ == local_.size()) {
      local_.clear();
      local_head_ = 0;
    }
    io_uring_cqe* cqe;
    while (n < out.size() && io_uring_peek_cqe(ring_.get(), &cqe) == 0) {
      uint64_t user_data = cqe->user_data;
      int res = cqe->res;
      io_uring_cqe_seen(ring_.get(), cqe);
      --in_ring_;
      on_cqe_st(user_data, res, out, n);
    }
    // Remainders of short transfers and write-zeroes fallbacks go out now, not next pass.
    if (io_uring_sq_ready(ring_.get()) > 0) io_uring_submit(ring_.get());
    return int(n);
  }

 private:
  struct Slot {
    bool active = false;
    bool punch = false;  // fallocate mode: punch hole instead of zero range
    wire::Opcode op = wire::Opcode::kRead;
    uint32_t flags = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
    uint32_t done = 0;  // bytes transferred so far (short reads/writes)
    std::byte* buffer = nullptr;
    int fixed_index = -1;
    uint32_t generation = 0;
  };

  int fixed_index(const std::byte* buffer, uint32_t length) const {
    for (size_t i = 0; i < fixed_.size(); ++i) {
      auto* base = static_cast<const std::byte*>(fixed_[i].iov_base);
      if (buffer >= base && size_t(buffer - base) <= fixed_[i].iov_len &&
          length <= fixed_[i].iov_len - size_t(buffer - base))
        return int(i);
    }
    return -1;
  }

  uint64_t user_data(uint16_t tag) const {
    return WorkId{WorkKind::kTargetIo, 0, tag, uint8_t(slots_[tag].op), slots_[tag].generation}.encode();
  }

  template <typename Prep>
  int prep_st(uint16_t tag, Prep&& prep) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
    if (!sqe) {
      io_uring_submit(ring_.get());
      sqe = io_uring_get_sqe(ring_.get());
      if (!sqe) return -EAGAIN;
    }
    prep(sqe);
    io_uring_sqe_set_data64(sqe, user_data(tag));
    ++in_ring_;
    return 0;
  }

  int prep_transfer_st(uint16_t tag) {
    Slot& s = slots_[tag];
    std::byte* p = s.buffer + s.done;
    unsigned len = s.length - s.done;
    uint64_t off = s.offset + s.done;
    return prep_st(tag, [&](io_uring_sqe* sqe) {
      if (s.op == wire::Opcode::kRead) {
        if (s.fixed_index >= 0)
          io_uring_prep_read_fixed(sqe, info_.fd, p, len, off, s.fixed_index);
        else
          io_uring_prep_read(sqe, info_.fd, p, len, off);
      } else {
        if (s.fixed_index >= 0)
          io_uring_prep_write_fixed(sqe, info_.fd, p, len, off, s.fixed_index);
        else
          io_uring_prep_write(sqe, info_.fd, p, len, off);
        // FUA: the write itself is durable (O_DSYNC semantics) before it completes.
        if (s.flags & wire::kCmdFlagFua) sqe->rw_flags = RWF_DSYNC;
      }
    });
  }

  int prep_fallocate_st(uint16_t tag) {
    Slot& s = slots_[tag];
    int mode = (s.punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE;
    return prep_st(tag, [&](io_uring_sqe* sqe) { io_uring_prep_fallocate(sqe, info_.fd, mode, s.offset, s.length); });
  }

  // Block devices have no asynchronous discard in io_uring 2.3: the ioctls run here.
  int block_device_ioctl_st(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length) {
    uint64_t range[2] = {offset, length};
    int rc = ::ioctl(info_.fd, op == wire::Opcode::kDiscard ? BLKDISCARD : BLKZEROOUT, range);
    int result = rc == 0 ? 0 : -errno;
    Slot& s = slots_[tag];
    s.active = true;
    ++active_;
    local_.push_back(BackendCompletion{tag, result});
    return 0;
  }

  void on_cqe_st(uint64_t user_data, int res, std::span<BackendCompletion> out, size_t& n) {
    WorkId id = WorkId::decode(user_data);
    if (id.kind != WorkKind::kTargetIo || id.tag >= slots_.size() || !slots_[id.tag].active ||
        slots_[id.tag].generation != id.generation) {
      log::server()->warn("export '{}': dropping unexpected completion {:#x} (res {})", info_.name, user_data, res);
      return;
    }
    Slot& s = slots_[id.tag];
    switch (s.op) {
      case wire::Opcode::kRead:
      case wire::Opcode::kWrite:
        if (res < 0) break;
        if (res == 0) {  // EOF: the file shrank under us, or the device went away
          res = -EIO;
          break;
        }
        s.done += uint32_t(res);
        if (s.done < s.length) {
          SPDLOG_LOGGER_DEBUG(log::server(), "export '{}': short transfer on tag {}: {} of {}", info_.name, id.tag,
                              s.done, s.length);
          int rc = prep_transfer_st(id.tag);
          if (rc == 0) return;
          res = rc;
          break;
        }
        res = int(s.length);
        break;
      case wire::Opcode::kWriteZeroes:
        if (res == -EOPNOTSUPP && !s.punch) {
          // Some file systems (tmpfs) punch holes but cannot zero a range; a hole reads as zeros.
          SPDLOG_LOGGER_DEBUG(log::server(), "export '{}': no FALLOC_FL_ZERO_RANGE here; punching holes instead",
                              info_.name);
          zero_range_unsupported_ = true;
          s.punch = true;
          int rc = prep_fallocate_st(id.tag);
          if (rc == 0) return;
          res = rc;
        }
        break;
      default:
        break;
    }
    finish_st(id.tag, res, out, n);
  }

  void finish_st(uint16_t tag, int res, std::span<BackendCompletion> out, size_t& n) {
    Slot& s = slots_[tag];
    if (res < 0) {
      SPDLOG_LOGGER_DEBUG(log::server(), "export '{}': op {} tag {} offset {} length {}: {}", info_.name, int(s.op),
                          tag, s.offset, s.length, errno_text(res));
    }
    s.active = false;
    --active_;
    out[n++] = BackendCompletion{tag, res};
  }

  // The kernel may still be writing into the server's buffers: wait for it before they go.
  void drain() {
    if (in_ring_ == 0) return;
    io_uring_submit(ring_.get());
    unsigned waited_ms = 0;
    while (in_ring_ > 0 && waited_ms < 30000) {
      io_uring_cqe* cqe;
      __kernel_timespec ts{0, 100 * 1000 * 1000};
      int rc = io_uring_wait_cqe_timeout(ring_.get(), &cqe, &ts);
      if (rc == 0) {
        io_uring_cqe_seen(ring_.get(), cqe);
        --in_ring_;
      } else if (rc == -ETIME) {
        waited_ms += 100;
      } else if (rc != -EINTR) {
        log::server()->error("export '{}': draining the queue: {}", info_.name, errno_text(rc));
        return;
      }
    }
    if (in_ring_ > 0) log::server()->error("export '{}': {} operations still in flight at teardown", info_.name, in_ring_);
  }

  const FileInfo& info_;
  const std::atomic<uint64_t>& size_;  // the backend's: follows a resize
  IoRing ring_;
  std::vector<Slot> slots_;
  std::vector<iovec> fixed_;
  std::vector<BackendCompletion> local_;  // finished inside submit(), handed out by poll()
  size_t local_head_ = 0;
  unsigned active_ = 0;   // slots not yet returned by poll()
  unsigned in_ring_ = 0;  // SQEs prepared whose CQE has not been seen
  uint32_t next_generation_ = 0;
  bool zero_range_unsupported_ = false;
};

class FileBackendImpl final : public FileBackend {
 public:
  FileBackendImpl(UniqueFd fd, FileInfo info, bool direct, uint32_t ops)
      : fd_(std::move(fd)), info_(std::move(info)), direct_(direct), ops_(ops), size_(info_.size) {
    info_.fd = fd_.get();
  }

  uint64_t size() const override { return size_.load(std::memory_order_relaxed); }

  // An LV extended, a file truncated longer (or shorter): the export follows, in whole blocks.
  void refresh_size() const override {
    uint64_t bytes = 0;
    struct stat st {};
    if (info_.block_device ? ::ioctl(fd_.get(), BLKGETSIZE64, &bytes) != 0 : ::fstat(fd_.get(), &st) != 0) {
      log::server()->warn("export '{}': cannot read its size: {}", info_.name, errno_text(errno));
      return;
    }
    if (!info_.block_device) bytes = uint64_t(st.st_size);
    follow_storage_size(size_, bytes, info_.block_size, info_.name);
  }
  uint32_t block_size() const override { return info_.block_size; }
  bool read_only() const override { return info_.read_only; }
  uint32_t supported_ops() const override { return ops_; }
  uint32_t instance_id() const override { return info_.instance_id; }
  std::span<std::byte> direct_memory() const override { return {}; }
  bool direct_io() const override { return direct_; }
  bool block_device() const override { return info_.block_device; }
  std::unique_ptr<BackendQueue> open_queue(std::span<std::byte> registered_buffers, uint16_t depth) const override {
    return std::make_unique<FileQueue>(info_, size_, registered_buffers, depth);
  }

 private:
  UniqueFd fd_;
  FileInfo info_;
  bool direct_;
  uint32_t ops_;
  mutable std::atomic<uint64_t> size_;  // refresh_size() follows a resize
};

// Reads discard_max_bytes of a block device (or of its parent disk for a partition).
bool block_device_discards(dev_t rdev) {
  std::string base = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
  for (const char* rel : {"/queue/discard_max_bytes", "/../queue/discard_max_bytes"}) {
    std::ifstream in(base + rel);
    uint64_t v;
    if (in >> v) return v > 0;
  }
  return false;
}

// Finds the smallest O_DIRECT granularity the file accepts (512 or 4096); 0 if none.
uint32_t probe_direct_block_size(int fd, const std::string& name) {
  void* buf = std::aligned_alloc(4096, 4096);
  if (!buf) throw_setup("export '{}': out of memory", name);
  uint32_t found = 0;
  for (uint32_t bs : {512u, 4096u}) {
    ssize_t rc = ::pread(fd, buf, bs, 0);
    if (rc >= 0) {
      found = bs;
      break;
    }
    if (errno != EINVAL) {
      int err = errno;
      std::free(buf);
      throw_errno(err, "export '{}': test read", name);
    }
  }
  std::free(buf);
  return found;
}

}  // namespace

std::unique_ptr<FileBackend> open_file_backend(const ExportSpec& spec, bool read_only, FileBackendOptions options) {
  const std::string& path = spec.path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno(errno, "export '{}': {}", spec.name, path);
  bool blk = S_ISBLK(st.st_mode);
  if (!blk && !S_ISREG(st.st_mode))
    throw_setup("export '{}': {} is neither a regular file nor a block device", spec.name, path);

  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (blk && !read_only ? O_EXCL : 0);
  bool direct = options.try_direct_io;
  UniqueFd fd;
  if (direct) {
    fd.reset(::open(path.c_str(), flags | O_DIRECT));
    if (!fd && errno == EINVAL) {
      log::server()->warn("export '{}': {} refuses O_DIRECT; using buffered IO (the page cache copies)", spec.name,
                          path);
      direct = false;
    }
  }
  if (!fd) fd.reset(::open(path.c_str(), flags));
  if (!fd) {
    int err = errno;
    throw_errno(err, "export '{}': open {}{}{}", spec.name, path, read_only ? " read-only" : " read-write",
                err == EBUSY ? " (mounted or in use?)" : "");
  }
  if (!blk && ::flock(fd.get(), (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    int err = errno;
    throw_errno(err, "export '{}': {} is in use (flock)", spec.name, path);
  }

  FileInfo info;
  info.name = spec.name;
  info.block_device = blk;
  info.read_only = read_only;
  info.instance_id = file_instance_id(st, blk);
  if (blk) {
    uint64_t bytes = 0;
    int sector = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) throw_errno(errno, "export '{}': BLKGETSIZE64 {}", spec.name, path);
    if (::ioctl(fd.get(), BLKSSZGET, &sector) != 0) throw_errno(errno, "export '{}': BLKSSZGET {}", spec.name, path);
    info.size = bytes;
    info.block_size = uint32_t(sector);
  } else {
    if (::fstat(fd.get(), &st) != 0) throw_errno(errno, "export '{}': fstat {}", spec.name, path);
    info.size = uint64_t(st.st_size);
    info.block_size = 512;
  }
  if (direct) {
    uint32_t bs = probe_direct_block_size(fd.get(), spec.name);
    if (bs == 0) {
      log::server()->warn("export '{}': {} accepts O_DIRECT at open but not for reads; using buffered IO",
                          spec.name, path);
      if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_DIRECT) != 0)
        throw_errno(errno, "export '{}': clearing O_DIRECT on {}", spec.name, path);
      direct = false;
    } else if (bs > info.block_size) {
      info.block_size = bs;
    }
  }
  if (info.block_size == 0 || (info.block_size & (info.block_size - 1)) != 0)
    throw_setup("export '{}': {} has an unusable block size {}", spec.name, path, info.block_size);
  if (uint64_t tail = info.size % info.block_size) {
    log::server()->warn("export '{}': {} is not a multiple of {} bytes; the last {} bytes are not exported",
                        spec.name, path, info.block_size, tail);
    info.size -= tail;
  }
  if (info.size == 0) throw_setup("export '{}': {} is empty (smaller than one {}-byte block)", spec.name, path,
                                  info.block_size);

  uint32_t ops = kSupportsFlush | kSupportsFua;
  if (!read_only) {
    if (blk) {
      ops |= kSupportsWriteZeroes;  // BLKZEROOUT writes zeros itself where the device cannot
      if (block_device_discards(st.st_rdev)) ops |= kSupportsDiscard;
    } else {
      // Punching past EOF changes nothing but tells whether the file system can punch holes.
      off_t probe = off_t((uint64_t(st.st_size) + 4095) / 4096 * 4096);
      if (::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, probe, 4096) == 0) {
        ops |= kSupportsDiscard | kSupportsWriteZeroes;
      } else {
        log::server()->warn("export '{}': {} cannot punch holes ({}); discard and write-zeroes are not offered",
                            spec.name, path, errno_text(errno));
      }
    }
  }
  log::server()->info("export '{}': {} {} of {}, block size {}, {}{}", spec.name, blk ? "block device" : "file", path,
                      format_size(info.size), info.block_size, direct ? "O_DIRECT" : "buffered",
                      read_only ? ", read-only" : "");
  return std::make_unique<FileBackendImpl>(std::move(fd), std::move(info), direct, ops);
}

}  // namespace ublkrdma::server
