#pragma once
// Owner of one mmap'd region.
#include <sys/mman.h>

#include <cstddef>
#include <span>
#include <utility>

#include "base/errors.h"

namespace ublkrdma {

class MappedRegion {
 public:
  MappedRegion() = default;
  MappedRegion(void* addr, size_t len) : addr_(addr), len_(len) {}
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  MappedRegion(MappedRegion&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
  MappedRegion& operator=(MappedRegion&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      len_ = std::exchange(o.len_, 0);
    }
    return *this;
  }
  ~MappedRegion() { reset(); }

  // Anonymous private memory, page aligned (huge pages when asked and available).
  static MappedRegion anonymous(size_t len, bool populate = false, bool huge = false) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0) | (huge ? MAP_HUGETLB : 0);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) throw_errno(errno, "mmap of {} anonymous bytes{}", len, huge ? " (hugetlb)" : "");
    return MappedRegion(p, len);
  }

  void reset() {
    if (addr_) ::munmap(addr_, len_);
    addr_ = nullptr;
    len_ = 0;
  }
  void* get() const { return addr_; }
  size_t size() const { return len_; }
  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr_), len_}; }

 private:
  void* addr_ = nullptr;
  size_t len_ = 0;
};

}  // namespace ublkrdma
