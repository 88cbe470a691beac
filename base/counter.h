#pragma once
// A counter with one writer (its owner thread) and any number of relaxed readers
// (the stats reporter). Cheaper than fetch_add: a plain load+store, no lock prefix.
#include <atomic>
#include <cstdint>

namespace ublkrdma {

class RelaxedCounter {
 public:
  void add_st(uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void max_st(uint64_t n) {
    if (n > v_.load(std::memory_order_relaxed)) v_.store(n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace ublkrdma
