#include "base/latency_histogram.h"

#include <gtest/gtest.h>

namespace ublkrdma {
namespace {

using H = LatencyHistogram;

TEST(LatencyHistogram, BucketEdgesAreInclusive) {
  EXPECT_EQ(H::bucket_index(0), 0u);
  EXPECT_EQ(H::bucket_index(1), 0u);
  EXPECT_EQ(H::bucket_index(1000), 0u);  // exactly 1 us: le="1e-06"
  EXPECT_EQ(H::bucket_index(1001), 1u);
  EXPECT_EQ(H::bucket_index(2000), 1u);
  EXPECT_EQ(H::bucket_index(2001), 2u);
  EXPECT_EQ(H::bucket_index(4000), 2u);
  EXPECT_EQ(H::bucket_index(4001), 3u);
  EXPECT_EQ(H::bucket_index(100'000), 7u);  // 100 us: (64, 128]
  EXPECT_EQ(H::bucket_index(1'000'000), 10u);  // 1 ms: (512, 1024]
}

TEST(LatencyHistogram, EveryBoundFallsInItsOwnBucket) {
  for (size_t i = 0; i < H::kFiniteBuckets; ++i) {
    const uint64_t bound_ns = H::upper_bound_us(i) * 1000;
    EXPECT_EQ(H::bucket_index(bound_ns), i) << i;
    EXPECT_EQ(H::bucket_index(bound_ns + 1), i + 1) << i;
    if (i > 0) {
      EXPECT_EQ(H::bucket_index(H::upper_bound_us(i - 1) * 1000 + 1), i) << i;
    }
  }
}

TEST(LatencyHistogram, LongLatenciesOverflow) {
  EXPECT_EQ(H::upper_bound_us(H::kFiniteBuckets - 1), H::kMaxBoundUs);
  EXPECT_GT(H::kMaxBoundUs, 30'000'000u);  // tens of seconds: an --io-timeout of 30 s still lands in a bucket
  EXPECT_EQ(H::bucket_index(H::kMaxBoundUs * 1000), H::kFiniteBuckets - 1);
  EXPECT_EQ(H::bucket_index(H::kMaxBoundUs * 1000 + 1), H::kFiniteBuckets);
  EXPECT_EQ(H::bucket_index(UINT64_MAX), H::kFiniteBuckets);
}

TEST(LatencyHistogram, RecordCountsAndSums) {
  H h;
  h.record_st(500);
  h.record_st(1500);
  h.record_st(1500);
  h.record_st(60'000'000'000ull);  // a minute
  EXPECT_EQ(h.bucket(0), 1u);
  EXPECT_EQ(h.bucket(1), 2u);
  EXPECT_EQ(h.bucket(H::kFiniteBuckets), 1u);
  uint64_t n = 0;
  for (size_t i = 0; i < H::kBuckets; ++i) n += h.bucket(i);
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(h.sum_ns(), 500u + 3000u + 60'000'000'000ull);
}

}  // namespace
}  // namespace ublkrdma
