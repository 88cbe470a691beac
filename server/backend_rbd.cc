#include "server/backend_rbd.h"

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <cerrno>
#include <string>
#include <vector>

#include "base/errors.h"
#include "base/log.h"
#include "base/size.h"
#include "base/unique_fd.h"
#include "server/rbd_module_abi.h"

namespace ublkrdma::server {
namespace {

constexpr int32_t kNoTag = -1;

// A command's life in a queue.
enum class RbdStage : uint8_t {
  kIdle,      // free
  kRunning,   // the operation is with librbd
  kFlushing,  // a FUA write's data is written; the flush that makes it durable is with librbd
};

class RbdQueue;

struct RbdSlot {
  RbdQueue* queue = nullptr;
  uint16_t tag = 0;
  RbdStage stage = RbdStage::kIdle;
  wire::Opcode op = wire::Opcode::kRead;
  uint32_t flags = 0;
  uint32_t length = 0;
  rbd_completion_t completion = nullptr;
  // Written by librbd's thread before it publishes the tag (release), read by ours after taking
  // the list (acquire).
  int64_t result = 0;
  int32_t next = kNoTag;  // the finished list's link
};

// One connection to a cluster, shared by the exports that reach it with the same configuration
// and client id: each connection has messenger threads of its own and a session to every OSD.
class RbdCluster {
 public:
  using Fail = std::function<void(int rc, std::string what, std::string hint)>;  // throws

  // The live connection for this configuration and id, or a new one. Setup path only.
  static std::shared_ptr<RbdCluster> get(const RbdLocation& at, const std::string& id, const Fail& fail) {
    std::string key = fmt::format("{}\n{}\n{}", at.ceph_conf, id, at.connect_timeout_s);
    std::lock_guard lk(mu_);
    if (auto live = clusters_[key].lock()) return live;
    auto c = std::shared_ptr<RbdCluster>(new RbdCluster);
    c->connect(at, id, fail);
    clusters_[key] = c;
    return c;
  }
  static size_t live() {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (const auto& [key, weak] : clusters_) n += !weak.expired();
    return n;
  }

  ~RbdCluster() {
    if (cluster_) rados_shutdown(cluster_);
  }
  rados_t handle() const { return cluster_; }

 private:
  RbdCluster() = default;

  void connect(const RbdLocation& at, const std::string& id, const Fail& fail) {
    int rc = rados_create2(&cluster_, "ceph", ("client." + id).c_str(), 0);
    if (rc < 0) fail(rc, "cannot create a cluster handle", "");
    rc = rados_conf_read_file(cluster_, at.ceph_conf.empty() ? nullptr : at.ceph_conf.c_str());
    if (rc < 0)
      fail(rc, at.ceph_conf.empty() ? std::string("no Ceph configuration found")
                                    : fmt::format("cannot read the Ceph configuration {}", at.ceph_conf),
           at.ceph_conf.empty() ? " (give serve --ceph-conf FILE or ?conf=FILE)" : "");
    rados_conf_parse_env(cluster_, nullptr);  // CEPH_ARGS, as the ceph tools read it
    std::string timeout = std::to_string(at.connect_timeout_s);
    rados_conf_set(cluster_, "client_mount_timeout", timeout.c_str());
    rados_conf_set(cluster_, "rados_mon_op_timeout", timeout.c_str());
    // No write-back cache in the gateway: a write is acknowledged once the cluster has it, so a
    // gateway that dies (or a client that moves to another one) loses no acknowledged write.
    rados_conf_set(cluster_, "rbd_cache", "false");
    rc = rados_connect(cluster_);
    if (rc == -ETIMEDOUT || rc == -ENOTCONN)
      fail(rc, fmt::format("the cluster did not answer within {} s", at.connect_timeout_s),
           " (are its monitors up and reachable?)");
    if (rc == -EACCES || rc == -EPERM) fail(rc, "the cluster refused the key", " (check the keyring of this id)");
    if (rc < 0) fail(rc, "cannot connect to the cluster", "");
  }

  rados_t cluster_ = nullptr;
  static inline std::mutex mu_;
  static inline std::map<std::string, std::weak_ptr<RbdCluster>> clusters_;
};

// The cluster connection, the pool's I/O context and the image, closed in the reverse order.
struct RbdHandles {
  std::shared_ptr<RbdCluster> cluster;
  rados_ioctx_t ioctx = nullptr;
  rbd_image_t image = nullptr;

  RbdHandles() = default;
  RbdHandles(const RbdHandles&) = delete;
  RbdHandles& operator=(const RbdHandles&) = delete;
  ~RbdHandles() {
    if (image) rbd_close(image);  // flushes what librbd still caches
    if (ioctx) rados_ioctx_destroy(ioctx);
  }
};

class RbdQueue final : public BackendQueue {
 public:
  RbdQueue(rbd_image_t image, std::string_view name, const std::atomic<uint64_t>& size, bool read_only, uint16_t depth)
      : image_(image), name_(name), size_(size), read_only_(read_only), slots_(depth) {
    if (depth == 0) throw_setup("export '{}': queue depth 0", name);
    event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!event_fd_) throw_errno(errno, "export '{}': eventfd", name);
    for (uint16_t t = 0; t < depth; ++t) {
      slots_[t].queue = this;
      slots_[t].tag = t;
    }
    ready_.reserve(depth);
  }

  // librbd's callbacks point into slots_: every command must have come back first.
  ~RbdQueue() override {
    for (RbdSlot& s : slots_) {
      if (s.completion == nullptr) continue;
      rbd_aio_wait_for_complete(s.completion);
      rbd_aio_release(s.completion);
      s.completion = nullptr;
    }
  }

  int event_fd() const override { return event_fd_.get(); }
  bool busy() const override { return active_ > 0; }

  int submit(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer,
             uint32_t flags) override {
    if (tag >= slots_.size()) return -EINVAL;
    RbdSlot& s = slots_[tag];
    if (s.stage != RbdStage::kIdle) return -EBUSY;
    if (int rc = refuse_unsafe(size_.load(std::memory_order_relaxed), read_only_, op, offset, length, buffer); rc < 0)
      return rc;

    s.op = op;
    s.flags = flags;
    s.length = length;
    s.result = 0;
    int rc = rbd_aio_create_completion(&s, &RbdQueue::on_complete, &s.completion);
    if (rc < 0) return rc;
    iovec iov{buffer, length};
    switch (op) {
      case wire::Opcode::kRead:
        rc = rbd_aio_readv(image_, &iov, 1, offset, s.completion);
        break;
      case wire::Opcode::kWrite:
        rc = rbd_aio_writev(image_, &iov, 1, offset, s.completion);
        break;
      case wire::Opcode::kFlush:
        rc = rbd_aio_flush(image_, s.completion);
        break;
      case wire::Opcode::kDiscard:
      case wire::Opcode::kWriteZeroes:
        rc = rbd_aio_write_zeroes(image_, offset, length, s.completion, 0, 0);
        break;
      default:
        rc = -EINVAL;
    }
    if (rc < 0) {
      rbd_aio_release(s.completion);
      s.completion = nullptr;
      return rc;
    }
    s.stage = RbdStage::kRunning;
    ++active_;
    return 0;
  }

  int poll(std::span<BackendCompletion> out) override {
    // Read the eventfd before taking the list: a tag pushed after the take has its write still
    // to come (or already counted), so the fd stays readable for it.
    uint64_t count;
    (void)!::read(event_fd_.get(), &count, sizeof(count));
    int32_t tag = finished_.exchange(kNoTag, std::memory_order_acquire);
    size_t first_new = ready_.size();
    for (; tag != kNoTag; tag = slots_[size_t(tag)].next) ready_.push_back(uint16_t(tag));
    // The list is last-in first-out: answer in completion order.
    std::reverse(ready_.begin() + ptrdiff_t(first_new), ready_.end());

    size_t n = 0, taken = 0;
    for (; taken < ready_.size() && n < out.size(); ++taken) {
      RbdSlot& s = slots_[ready_[taken]];
      rbd_aio_release(s.completion);
      s.completion = nullptr;
      if (advance_st(s)) continue;  // a FUA write's flush is now with librbd
      out[n++] = BackendCompletion{s.tag, answer(s)};
      s.stage = RbdStage::kIdle;
      --active_;
    }
    ready_.erase(ready_.begin(), ready_.begin() + ptrdiff_t(taken));
    if (!ready_.empty()) wake();  // what did not fit in `out` is handed out by the next poll()
    return int(n);
  }

 private:
  // librbd's thread: the result goes into the slot, the tag onto the finished list.
  static void on_complete(rbd_completion_t completion, void* arg) {
    auto* s = static_cast<RbdSlot*>(arg);
    s->result = rbd_aio_get_return_value(completion);
    RbdQueue* q = s->queue;
    int32_t head = q->finished_.load(std::memory_order_relaxed);
    do s->next = head;
    while (!q->finished_.compare_exchange_weak(head, int32_t(s->tag), std::memory_order_release,
                                               std::memory_order_relaxed));
    q->wake();
  }

  void wake() {
    uint64_t one = 1;
    (void)!::write(event_fd_.get(), &one, sizeof(one));
  }

  // A successful FUA write goes on to its flush; true if that was submitted.
  bool advance_st(RbdSlot& s) {
    if (s.stage != RbdStage::kRunning || s.op != wire::Opcode::kWrite || !(s.flags & wire::kCmdFlagFua) ||
        s.result < 0)
      return false;
    s.stage = RbdStage::kFlushing;
    int rc = rbd_aio_create_completion(&s, &RbdQueue::on_complete, &s.completion);
    if (rc == 0) rc = rbd_aio_flush(image_, s.completion);
    if (rc == 0) return true;
    if (s.completion) rbd_aio_release(s.completion);
    s.completion = nullptr;
    s.result = rc;
    return false;
  }

  int32_t answer(const RbdSlot& s) const {
    if (s.result < 0) {
      log::server()->debug("export '{}': tag {} (opcode {}) failed: {}", name_, s.tag, int(s.op),
                           errno_text(int(s.result)));
      return int32_t(s.result);
    }
    // librbd answers a write with 0 (or its length), a read with the bytes read.
    if (s.op == wire::Opcode::kWrite) return int32_t(s.length);
    if (s.op == wire::Opcode::kRead) return s.result == int64_t(s.length) ? int32_t(s.length) : -EIO;
    return 0;
  }

  rbd_image_t image_;
  std::string name_;
  const std::atomic<uint64_t>& size_;  // the backend's: follows a resized image
  bool read_only_;
  std::vector<RbdSlot> slots_;
  std::atomic<int32_t> finished_{kNoTag};  // head of the tags librbd finished, linked by next
  std::vector<uint16_t> ready_;            // taken from finished_, not yet handed out
  uint32_t active_ = 0;
  UniqueFd event_fd_;
};

class RbdBackend final : public Backend {
 public:
  RbdBackend(const ExportSpec& spec, bool read_only)
      : name_(spec.name), read_only_(read_only || !spec.rbd.snapshot.empty()) {
    const RbdLocation& at = spec.rbd;
    std::string where = rbd_image_spec(at);
    std::string id = at.ceph_id.empty() ? "admin" : at.ceph_id;
    auto fail = [&](int rc, std::string_view what, std::string_view hint = {}) {
      throw SetupError(fmt::format("export '{}' (rbd {} as client.{}): {}: {}{}", name_, where, id, what,
                                   errno_text(rc), hint),
                       -rc);
    };

    h_.cluster = RbdCluster::get(at, id, [&](int rc, std::string what, std::string hint) { fail(rc, what, hint); });

    int rc = rados_ioctx_create(h_.cluster->handle(), at.pool.c_str(), &h_.ioctx);
    if (rc == -ENOENT) fail(rc, fmt::format("no pool '{}'", log::escaped(at.pool)));
    if (rc < 0) fail(rc, "cannot open the pool");
    if (!at.rbd_namespace.empty()) rados_ioctx_set_namespace(h_.ioctx, at.rbd_namespace.c_str());

    const char* snap = at.snapshot.empty() ? nullptr : at.snapshot.c_str();
    rc = read_only_ ? rbd_open_read_only(h_.ioctx, at.image.c_str(), &h_.image, snap)
                    : rbd_open(h_.ioctx, at.image.c_str(), &h_.image, nullptr);
    if (rc == -ENOENT)
      fail(rc, snap ? "no such image or snapshot" : "no such image", " (rbd ls / rbd snap ls show what exists)");
    if (rc == -EPERM || rc == -EACCES) fail(rc, "not permitted to open the image", " (the id's caps on the pool)");
    if (rc < 0) fail(rc, "cannot open the image");

    uint64_t features = 0;
    rc = rbd_get_features(h_.image, &features);
    if (rc < 0) fail(rc, "cannot read the image's features");
    if (!read_only_ && !(features & RBD_FEATURE_EXCLUSIVE_LOCK))
      fail(-EINVAL, "the image lacks the exclusive-lock feature, which keeps two gateways from writing it at once",
           fmt::format(" (rbd feature enable {} exclusive-lock, or serve --read-only {})", where, name_));
    uint64_t bytes = 0;
    rc = rbd_get_size(h_.image, &bytes);
    if (rc < 0) fail(rc, "cannot read the image's size");
    bytes -= bytes % kBlockSize;
    if (bytes == 0) fail(-EINVAL, "the image is smaller than one block");
    size_.store(bytes);

    // The same image (and snapshot) has the same id on every gateway: a client that moves to
    // another one keeps its data; a recreated image gets a new id.
    char image_id[64] = {};
    rc = rbd_get_id(h_.image, image_id, sizeof(image_id));
    if (rc < 0) fail(rc, "cannot read the image's id");
    instance_id_ = derive_instance_id(std::string(image_id) + "@" + at.snapshot);
    log::server()->info("export '{}': rbd {} as client.{}, {}{}", name_, where, id, format_size(bytes),
                        read_only_ ? ", read-only" : ", exclusive lock");
  }

  uint64_t size() const override { return size_.load(std::memory_order_relaxed); }
  uint32_t block_size() const override { return kBlockSize; }

  // librbd refreshes the image's header when the cluster tells it of a change (its own watch
  // on the image), so this only reads what it already knows.
  void refresh_size() const override {
    uint64_t bytes = 0;
    if (int rc = rbd_get_size(h_.image, &bytes); rc < 0) {
      log::server()->warn("export '{}': cannot read the image's size: {}", name_, errno_text(rc));
      return;
    }
    follow_storage_size(size_, bytes, kBlockSize, name_);
  }
  bool read_only() const override { return read_only_; }
  uint32_t supported_ops() const override {
    return read_only_ ? kSupportsFlush : kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes;
  }
  uint32_t instance_id() const override { return instance_id_; }
  std::span<std::byte> direct_memory() const override { return {}; }
  bool completes_remotely() const override { return true; }

  std::unique_ptr<BackendQueue> open_queue(std::span<std::byte>, uint16_t depth) const override {
    return std::make_unique<RbdQueue>(h_.image, name_, size_, read_only_, depth);
  }

 private:
  static constexpr uint32_t kBlockSize = 512;

  static uint32_t derive_instance_id(const std::string& text) {
    uint64_t x = 0xcbf29ce484222325ull;  // FNV-1a
    for (unsigned char c : text) x = (x ^ c) * 0x100000001b3ull;
    uint32_t id = uint32_t(x ^ (x >> 32));
    return id ? id : 1;
  }

  std::string name_;
  bool read_only_;
  RbdHandles h_;
  mutable std::atomic<uint64_t> size_{0};  // refresh_size() follows a resize
  uint32_t instance_id_ = 1;
};

}  // namespace

namespace rbd_module {

std::unique_ptr<Backend> open_backend(const ExportSpec& spec, bool read_only) {
  return std::make_unique<RbdBackend>(spec, read_only);
}

size_t cluster_connections() { return RbdCluster::live(); }

}  // namespace rbd_module
}  // namespace ublkrdma::server

// The module's only exports (rbd_module_abi.h); it is compiled with hidden visibility.
const char ublk_rdma_rbd_module_stamp[] = UBLK_RDMA_RBD_MODULE_STAMP;

const ublkrdma::server::RbdModuleApi* ublk_rdma_rbd_module() {
  using namespace ublkrdma::server;
  static constexpr RbdModuleApi kApi{&rbd_module::open_backend, &rbd_module::cluster_connections};
  return &kApi;
}
