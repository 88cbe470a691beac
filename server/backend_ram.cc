#include "server/backend_ram.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "base/log.h"
#include "base/mapped_region.h"
#include "base/size.h"
#include "server/backend_immediate.h"

namespace ublkrdma::server {
namespace {

uint64_t huge_page_size() {
  uint64_t kib = 0;
  if (FILE* f = std::fopen("/proc/meminfo", "re")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f)) {
      unsigned long long v;
      if (std::sscanf(line, "Hugepagesize: %llu kB", &v) == 1) kib = v;
    }
    std::fclose(f);
  }
  return kib ? kib * 1024 : 2ull << 20;
}

uint64_t round_up(uint64_t v, uint64_t to) { return (v + to - 1) / to * to; }

class RamQueue final : public ImmediateQueue {
 public:
  RamQueue(std::span<std::byte> memory, bool read_only, uint16_t depth)
      : ImmediateQueue(depth, /*may_defer=*/true), memory_(memory), read_only_(read_only),
        zeroing_(depth ? depth : 1) {}

 private:
  // A range still to be zeroed by advance_st().
  struct Zeroing {
    uint16_t tag;
    uint64_t offset;
    uint64_t remaining;
  };

  int execute_st(uint16_t tag, wire::Opcode op, uint64_t offset, uint32_t length, std::byte* buffer, uint32_t,
                 int* result) override {
    switch (op) {
      case wire::Opcode::kRead:
      case wire::Opcode::kWrite:
        if (!within_export(memory_.size(), offset, length)) return -EINVAL;
        if (op == wire::Opcode::kWrite && read_only_) return -EROFS;
        // The data already moved by RDMA to or from the export itself; anything else would
        // need a copy, which this design does not do.
        if (buffer != memory_.data() + offset) {
          SPDLOG_LOGGER_DEBUG(log::server(), "ram: refusing buffer {} for offset {}: not the export's own memory",
                              static_cast<void*>(buffer), offset);
          return -EINVAL;
        }
        *result = int(length);
        return 0;
      case wire::Opcode::kFlush:
        *result = 0;
        return 0;
      case wire::Opcode::kDiscard:
      case wire::Opcode::kWriteZeroes:
        if (!within_export(memory_.size(), offset, length)) return -EINVAL;
        if (read_only_) return -EROFS;
        // memset, not MADV_DONTNEED: the memory is pinned by an RDMA memory region, and
        // dropping the pages would leave the NIC on the old ones and the CPU on new zero pages.
        if (length <= kRamZeroChunk) {
          std::memset(memory_.data() + offset, 0, length);
          *result = 0;
          return 0;
        }
        // Up to 4 GiB: done a chunk per poll() so the connection's other commands are not held
        // up behind it for seconds.
        zeroing_[(zero_head_ + zero_count_++) % zeroing_.size()] = Zeroing{tag, offset, length};
        return kDeferred;
      case wire::Opcode::kKeepAlive:
        break;  // the connection answers it; it never reaches a backend
    }
    return -EINVAL;
  }

  void advance_st() override {
    uint64_t budget = kRamZeroChunk;
    while (budget > 0 && zero_count_ > 0) {
      Zeroing& z = zeroing_[zero_head_];
      uint64_t n = std::min(z.remaining, budget);
      std::memset(memory_.data() + z.offset, 0, n);
      z.offset += n;
      z.remaining -= n;
      budget -= n;
      if (z.remaining > 0) break;
      const uint16_t tag = z.tag;
      zero_head_ = uint32_t((zero_head_ + 1) % zeroing_.size());
      --zero_count_;
      complete_deferred_st(tag, 0);
    }
  }

  std::span<std::byte> memory_;
  bool read_only_;
  std::vector<Zeroing> zeroing_;  // FIFO ring of depth entries (one command per tag)
  uint32_t zero_head_ = 0, zero_count_ = 0;
};

class RamBackend final : public Backend {
 public:
  RamBackend(MappedRegion region, uint64_t size, bool read_only)
      : region_(std::move(region)), size_(size), read_only_(read_only) {
    std::random_device rd;
    do instance_id_ = rd();
    while (instance_id_ == 0);
  }
  uint32_t instance_id() const override { return instance_id_; }

  uint64_t size() const override { return size_; }
  uint32_t block_size() const override { return kRamBlockSize; }
  bool read_only() const override { return read_only_; }
  uint32_t supported_ops() const override {
    return kSupportsFlush | kSupportsFua | kSupportsDiscard | kSupportsWriteZeroes;
  }
  std::span<std::byte> direct_memory() const override { return region_.bytes().first(size_); }
  std::unique_ptr<BackendQueue> open_queue(std::span<std::byte>, uint16_t depth) const override {
    return std::make_unique<RamQueue>(direct_memory(), read_only_, depth);
  }

 private:
  MappedRegion region_;
  uint64_t size_;
  bool read_only_;
  uint32_t instance_id_ = 0;  // its data lives and dies with this process
};

}  // namespace

std::unique_ptr<Backend> open_ram_backend(const ExportSpec& spec, bool read_only) {
  if (spec.size == 0 || spec.size % kRamBlockSize != 0)
    throw_setup("export '{}': ram size {} is not a positive multiple of {}", spec.name, spec.size, kRamBlockSize);
  uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  MappedRegion region;
  if (spec.hugepages) {
    uint64_t huge = huge_page_size();
    try {
      region = MappedRegion::anonymous(round_up(spec.size, huge), spec.populate, true);
    } catch (const SetupError& e) {
      log::server()->warn("export '{}': no hugetlb pages ({}); using ordinary pages with transparent huge pages",
                          spec.name, e.what());
    }
    if (!region.get()) {
      region = MappedRegion::anonymous(round_up(spec.size, huge), false, false);
      if (::madvise(region.get(), region.size(), MADV_HUGEPAGE) != 0)
        log::server()->warn("export '{}': madvise(MADV_HUGEPAGE): {}", spec.name, errno_text(errno));
      if (spec.populate && ::madvise(region.get(), region.size(), MADV_POPULATE_WRITE) != 0)
        log::server()->warn("export '{}': madvise(MADV_POPULATE_WRITE): {}", spec.name, errno_text(errno));
    }
  } else {
    region = MappedRegion::anonymous(round_up(spec.size, page), spec.populate, false);
  }
  log::server()->info("export '{}': {} of memory at {}{}", spec.name, format_size(spec.size), region.get(),
                      read_only ? ", read-only" : "");
  return std::make_unique<RamBackend>(std::move(region), spec.size, read_only);
}

}  // namespace ublkrdma::server
