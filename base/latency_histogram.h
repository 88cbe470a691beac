#pragma once
// Request latencies in log2 buckets, for `list --json` and `stats --prometheus`: one writer (the
// queue thread that owns it), any number of relaxed readers. Bucket i counts latencies of at
// most 2^i microseconds (1 us .. 2^25 us ~ 33.6 s); the last bucket counts the longer ones.
// Recording is a division by a constant, a bit scan and two counter stores: no lock, no
// allocation, cheap enough for every request.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "base/counter.h"

namespace ublkrdma {

class LatencyHistogram {
 public:
  static constexpr size_t kFiniteBuckets = 26;                 // upper bounds 2^0 .. 2^25 us
  static constexpr size_t kBuckets = kFiniteBuckets + 1;       // + the overflow bucket
  static constexpr uint64_t kMaxBoundUs = 1ull << (kFiniteBuckets - 1);

  // The bucket of a latency: the smallest i with ns <= 2^i us, or the overflow bucket.
  static constexpr size_t bucket_index(uint64_t ns) {
    const uint64_t us = ns / 1000 + (ns % 1000 != 0);  // rounded up: bucket i's bound is inclusive
    const size_t i = us <= 1 ? 0 : size_t(std::bit_width(us - 1));
    return i < kFiniteBuckets ? i : kFiniteBuckets;
  }
  // The inclusive upper bound of finite bucket i, in microseconds.
  static constexpr uint64_t upper_bound_us(size_t i) { return 1ull << i; }

  void record_st(uint64_t ns) {
    buckets_[bucket_index(ns)].add_st();
    sum_ns_.add_st(ns);
  }

  // Relaxed reads: a reader racing the writer may see a request in the sum and not yet in its
  // bucket (or the reverse); each value is exact on its own.
  uint64_t bucket(size_t i) const { return buckets_[i].get(); }
  uint64_t sum_ns() const { return sum_ns_.get(); }

 private:
  std::array<RelaxedCounter, kBuckets> buckets_;
  RelaxedCounter sum_ns_;
};

}  // namespace ublkrdma
