#pragma once
// Shared memory buffers for zero copy (add --shmem-buf, UBLK_F_SHMEM_ZC, 7.1+): files on tmpfs
// or hugetlbfs (a memfd by /proc/PID/fd/N) that the application maps for its O_DIRECT IO and the
// daemon maps too. Registered with the device, they make the driver hand a request whose pages
// all lie in one of them to the daemon as (buffer index, offset) instead of copying it into the
// tag's buffer; the target then works on the application's own pages.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/mapped_region.h"
#include "ublk/queue_target.h"

namespace ublkrdma::ublk {

class ControlDevice;

// At most this many per device (kublk's limit too; the driver's is 65536).
inline constexpr size_t kMaxSharedBuffers = 256;

struct SharedBufferSpec {
  std::string path;
  bool read_only = false;  // the daemon only reads it: it serves WRITEs alone
  // `recover`: the registration the device still holds from the daemon that died.
  int32_t index = -1;
  uint64_t dev = 0, ino = 0;  // the file registered then: the same one must be mapped again
};

class SharedBuffers {
 public:
  // Opens and maps every buffer (shared, populated): a regular file on tmpfs or hugetlbfs, of a
  // whole number of pages, at most 4 GiB. With a recorded registration the file must be the one
  // registered then. Throws SetupError naming the file.
  explicit SharedBuffers(std::vector<SharedBufferSpec> specs);
  SharedBuffers(const SharedBuffers&) = delete;
  SharedBuffers& operator=(const SharedBuffers&) = delete;

  // What the constructor checks before it maps anything (for the CLI, before anything else is
  // touched): how many, each file as above, and no file twice. Throws SetupError.
  static void check(const std::vector<SharedBufferSpec>& specs);

  bool empty() const { return bufs_.empty(); }
  size_t size() const { return bufs_.size(); }
  // REG_BUF of each with device `dev_id`. Throws SetupError (what is registered stays so until
  // DEL_DEV, which frees it).
  void register_all(ControlDevice& ctrl, uint32_t dev_id);
  // `recover`: the buffers are registered under their recorded indices (a registration outlives
  // its daemon); nothing is asked of the driver.
  void adopt_recorded();
  // UNREG_BUF of each registered buffer; returns how many the driver released (failures are
  // logged at debug level: DEL_DEV releases what is left).
  size_t unregister_all(ControlDevice& ctrl, uint32_t dev_id);

  // By the driver's buffer index (the index of a kIoFShmemZc request).
  const std::vector<SharedRegion>& regions() const { return regions_; }
  // For the state file (what `recover` needs) and `list`.
  nlohmann::json describe() const;
  static std::vector<SharedBufferSpec> from_description(const nlohmann::json& j);

 private:
  struct Buffer {
    SharedBufferSpec spec;
    MappedRegion map;
    uint64_t dev = 0, ino = 0;
    int32_t index = -1;  // the driver's, once registered
  };
  void index_regions();

  std::vector<Buffer> bufs_;
  std::vector<SharedRegion> regions_;
};

}  // namespace ublkrdma::ublk
