#include "targets/loop_target.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "base/errors.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ublk/uapi.h"

namespace ublkrdma::targets {
namespace {

// Sub-operations encoded in the target user_data's op field.
enum LoopOp : uint8_t { kRw = 1, kFsync = 2, kFallocate = 3, kZeroRange = 4 };

constexpr int kPunchHole = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
constexpr int kZeroRangeMode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;

class LoopQueue final : public ublk::QueueTarget {
 public:
  explicit LoopQueue(int fd) : fd_(fd) {}

  void start_st(ublk::QueueContext& ctx) override {
    ctx_ = &ctx;
    reqs_.resize(ctx.depth());
  }

  void submit_st(const ublk::IoRequest& req) override {
    reqs_[req.tag] = InFlight{req, 0};
    switch (req.op) {
      case ublk::kOpRead:
      case ublk::kOpWrite:
        issue_rw_st(req.tag);
        break;
      case ublk::kOpFlush: {
        io_uring_sqe* sqe = ctx_->get_sqe_st();
        if (!sqe) return ctx_->complete_st(req.tag, -EIO);  // the ring is full (logged)
        io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
        sqe->user_data = ublk::QueueContext::target_user_data(ctx_->queue_id(), req.tag, kFsync);
        break;
      }
      case ublk::kOpDiscard:
        issue_fallocate_st(req, kPunchHole, kFallocate);
        break;
      case ublk::kOpWriteZeroes:
        // Some file systems (tmpfs) lack ZERO_RANGE: then punching a hole reads back zeros too.
        issue_fallocate_st(req, zero_range_ok_ ? kZeroRangeMode : kPunchHole, kZeroRange);
        break;
      default:
        ctx_->complete_st(req.tag, -EOPNOTSUPP);
    }
  }

  void on_ring_cqe_st(uint16_t tag, uint8_t op, int res) override {
    InFlight& f = reqs_[tag];
    if (op == kZeroRange && res == -EOPNOTSUPP && zero_range_ok_) {
      zero_range_ok_ = false;
      issue_fallocate_st(f.req, kPunchHole, kZeroRange);
      return;
    }
    if (op != kRw) {
      // fallocate returns 0; the request's result is its length.
      ctx_->complete_st(tag, res < 0 ? res : int(f.req.length));
      return;
    }
    if (res < 0) {
      SPDLOG_LOGGER_DEBUG(log::target(), "loop q{} tag {}: {} failed: {}", ctx_->queue_id(), tag,
                          f.req.op == ublk::kOpRead ? "read" : "write", errno_text(res));
      ctx_->complete_st(tag, res);
      return;
    }
    if (res == 0) {  // EOF inside the device: the backing file shrank under us
      ctx_->complete_st(tag, -EIO);
      return;
    }
    f.done += uint32_t(res);
    if (f.done < f.req.length) {
      issue_rw_st(tag);  // short transfer: continue with the rest
    } else {
      ctx_->complete_st(tag, int(f.req.length));
    }
  }

 private:
  struct InFlight {
    ublk::IoRequest req;
    uint32_t done;
  };

  void issue_fallocate_st(const ublk::IoRequest& req, int mode, uint8_t op) {
    io_uring_sqe* sqe = ctx_->get_sqe_st();
    if (!sqe) return ctx_->complete_st(req.tag, -EIO);  // the ring is full (logged)
    io_uring_prep_fallocate(sqe, fd_, mode, off_t(req.offset), off_t(req.length));
    sqe->user_data = ublk::QueueContext::target_user_data(ctx_->queue_id(), req.tag, op);
  }

  void issue_rw_st(uint16_t tag) {
    InFlight& f = reqs_[tag];
    io_uring_sqe* sqe = ctx_->get_sqe_st();
    if (!sqe) return ctx_->complete_st(tag, -EIO);  // the ring is full (logged)
    void* buf = f.req.buffer + f.done;
    unsigned len = f.req.length - f.done;
    off_t off = off_t(f.req.offset + f.done);
    if (f.req.op == ublk::kOpRead) {
      io_uring_prep_read(sqe, fd_, buf, len, uint64_t(off));
    } else {
      io_uring_prep_write(sqe, fd_, buf, len, uint64_t(off));
      if (f.req.flags & ublk::kIoFFua) sqe->rw_flags = RWF_DSYNC;
    }
    sqe->user_data = ublk::QueueContext::target_user_data(ctx_->queue_id(), tag, kRw);
  }

  int fd_;
  bool zero_range_ok_ = true;
  ublk::QueueContext* ctx_ = nullptr;
  std::vector<InFlight> reqs_;
};

class LoopFactory final : public ublk::TargetFactory {
 public:
  explicit LoopFactory(const LoopTargetOptions& opts) : opts_(opts) {
    struct stat st;
    if (::stat(opts.path.c_str(), &st) < 0) throw_errno(errno, "loop backing file {}", opts.path);
    is_block_ = S_ISBLK(st.st_mode);
    if (!is_block_ && !S_ISREG(st.st_mode))
      throw_setup("loop backing file {} is neither a regular file nor a block device", opts.path);
    int fd = -1;
    if (opts.direct_io) {
      fd = ::open(opts.path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
      if (fd < 0 && errno == EINVAL)
        log::target()->warn("{}: O_DIRECT refused by the file system, using buffered IO", opts.path);
      direct_ = fd >= 0;
    }
    if (fd < 0) fd = ::open(opts.path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "cannot open loop backing file {} read-write", opts.path);
    fd_.reset(fd);
    if (is_block_) {
      if (::ioctl(fd, BLKGETSIZE64, &size_) < 0) throw_errno(errno, "BLKGETSIZE64 on {}", opts.path);
      int lbs = 512;
      if (::ioctl(fd, BLKSSZGET, &lbs) == 0) lbs_shift_ = uint8_t(__builtin_ctz(unsigned(lbs)));
    } else {
      size_ = uint64_t(st.st_size);
    }
    if (size_ < 4096) throw_setup("loop backing file {} is too small ({} bytes)", opts.path, size_);
    size_ &= ~uint64_t(4095);  // whole 4 KiB blocks
  }

  std::string type_name() const override { return "loop"; }
  ublk::DeviceGeometry geometry() const override {
    ublk::DeviceGeometry g;
    g.size_bytes = size_;
    g.logical_bs_shift = lbs_shift_;
    g.physical_bs_shift = std::max<uint8_t>(12, lbs_shift_);
    g.volatile_cache = true;
    g.fua = true;
    g.discard = true;
    g.write_zeroes = true;
    return g;
  }
  std::unique_ptr<ublk::QueueTarget> make_queue_target(uint16_t) override {
    return std::make_unique<LoopQueue>(fd_.get());
  }
  std::string describe_json() const override {
    return nlohmann::json{{"type", "loop"},
                          {"file", opts_.path},
                          {"size", size_},
                          {"direct_io", direct_},
                          {"block_device", is_block_}}
        .dump();
  }

 private:
  LoopTargetOptions opts_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  uint8_t lbs_shift_ = 9;
  bool direct_ = false;
  bool is_block_ = false;
};

}  // namespace

std::unique_ptr<ublk::TargetFactory> make_loop_target_factory(const LoopTargetOptions& opts) {
  return std::make_unique<LoopFactory>(opts);
}

}  // namespace ublkrdma::targets
