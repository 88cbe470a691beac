#include "ublk/shared_buffers.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>

#include "base/errors.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "ublk/control_device.h"
#include "ublk/uapi.h"

namespace ublkrdma::ublk {

namespace {

UniqueFd open_checked(const SharedBufferSpec& spec, struct stat& st) {
  const std::string& path = spec.path;
  UniqueFd fd(::open(path.c_str(), (spec.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) throw_errno(errno, "shared buffer {}", log::escaped(path));
  struct statfs fs;
  if (::fstat(fd.get(), &st) < 0 || ::fstatfs(fd.get(), &fs) < 0)
    throw_errno(errno, "shared buffer {}: stat", log::escaped(path));
  // The driver pins the pages for as long as the buffer is registered: only memory that needs
  // no writeback can be pinned so (a regular file's pages cannot).
  if (!S_ISREG(st.st_mode) || (fs.f_type != TMPFS_MAGIC && fs.f_type != HUGETLBFS_MAGIC))
    throw_setup("shared buffer {}: not a file on tmpfs or hugetlbfs (e.g. /dev/shm/NAME, a file on a hugetlbfs "
                "mount, or a memfd as /proc/PID/fd/N)",
                log::escaped(path));
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const uint64_t size = uint64_t(st.st_size);
  if (size == 0 || size % page != 0 || size > kShmemBufMaxBytes)
    throw_setup("shared buffer {}: {} bytes; it must be a whole number of {}-byte pages, at most 4 GiB",
                log::escaped(path), size, page);
  return fd;
}

}  // namespace

void SharedBuffers::check(const std::vector<SharedBufferSpec>& specs) {
  if (specs.size() > kMaxSharedBuffers)
    throw_setup("{} shared buffers: at most {} per device", specs.size(), kMaxSharedBuffers);
  std::vector<std::pair<dev_t, ino_t>> files;
  for (const SharedBufferSpec& spec : specs) {
    struct stat st;
    open_checked(spec, st);
    files.emplace_back(st.st_dev, st.st_ino);
    if (std::count(files.begin(), files.end(), files.back()) > 1)
      throw_setup("shared buffer {} is given twice", log::escaped(spec.path));
  }
}

SharedBuffers::SharedBuffers(std::vector<SharedBufferSpec> specs) {
  check(specs);
  for (SharedBufferSpec& spec : specs) {
    const std::string& path = spec.path;
    struct stat st;
    UniqueFd fd = open_checked(spec, st);
    const uint64_t size = uint64_t(st.st_size);
    if (spec.index >= 0 && (uint64_t(st.st_dev) != spec.dev || uint64_t(st.st_ino) != spec.ino))
      throw_setup("shared buffer {} is not the file the device registered (it was replaced): the device's "
                  "requests would name the old file's pages; delete the device and add it again",
                  log::escaped(path));
    void* p = ::mmap(nullptr, size, spec.read_only ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     fd.get(), 0);
    if (p == MAP_FAILED) throw_errno(errno, "shared buffer {}: mmap of {} bytes", log::escaped(path), size);
    Buffer b;
    b.map = MappedRegion(p, size);
    b.dev = uint64_t(st.st_dev);
    b.ino = uint64_t(st.st_ino);
    b.spec = std::move(spec);
    bufs_.push_back(std::move(b));
  }
}

void SharedBuffers::register_all(ControlDevice& ctrl, uint32_t dev_id) {
  for (Buffer& b : bufs_) {
    int rc = ctrl.reg_buf(dev_id, b.map.bytes(), b.spec.read_only);
    if (rc < 0)
      throw_errno(rc, "REG_BUF of shared buffer {} ({} bytes) on device {}", log::escaped(b.spec.path), b.map.size(),
                  dev_id);
    b.index = rc;
    log::ctrl()->debug("device {}: shared buffer {} ({} bytes{}) registered as {}", dev_id, b.spec.path, b.map.size(),
                       b.spec.read_only ? ", read-only" : "", rc);
  }
  index_regions();
}

void SharedBuffers::adopt_recorded() {
  for (Buffer& b : bufs_) {
    if (b.spec.index < 0) throw_setup("shared buffer {}: no registration recorded", log::escaped(b.spec.path));
    b.index = b.spec.index;
  }
  index_regions();
}

size_t SharedBuffers::unregister_all(ControlDevice& ctrl, uint32_t dev_id) {
  size_t released = 0;
  for (Buffer& b : bufs_) {
    if (b.index < 0) continue;
    int rc = ctrl.unreg_buf(dev_id, uint32_t(b.index));
    if (rc < 0) {  // the caller reports the count; a device being deleted frees them itself
      log::ctrl()->debug("device {}: UNREG_BUF of shared buffer {} ({}): {}", dev_id, b.spec.path, b.index,
                         errno_text(rc));
      continue;
    }
    log::ctrl()->debug("device {}: shared buffer {} ({}) unregistered", dev_id, b.spec.path, b.index);
    b.index = -1;
    ++released;
  }
  return released;
}

void SharedBuffers::index_regions() {
  int32_t top = -1;
  for (const Buffer& b : bufs_) top = std::max(top, b.index);
  regions_.assign(size_t(top + 1), SharedRegion{});
  for (const Buffer& b : bufs_)
    regions_[size_t(b.index)] = SharedRegion{static_cast<std::byte*>(b.map.get()), b.map.size(), b.spec.read_only};
}

nlohmann::json SharedBuffers::describe() const {
  nlohmann::json arr = nlohmann::json::array();
  for (const Buffer& b : bufs_)
    arr.push_back({{"path", b.spec.path},
                   {"read_only", b.spec.read_only},
                   {"index", b.index},
                   {"bytes", b.map.size()},
                   {"dev", b.dev},
                   {"ino", b.ino}});
  return arr;
}

std::vector<SharedBufferSpec> SharedBuffers::from_description(const nlohmann::json& j) {
  std::vector<SharedBufferSpec> specs;
  if (!j.is_array()) return specs;
  for (const nlohmann::json& e : j)
    specs.push_back(SharedBufferSpec{e.value("path", std::string()), e.value("read_only", false),
                                     e.value("index", int32_t(-1)), e.value("dev", uint64_t(0)),
                                     e.value("ino", uint64_t(0))});
  return specs;
}

}  // namespace ublkrdma::ublk
