// SetYieldingPool / PoolFlags: registration, removal, independence of pools, and that work on a
// yielding pool still runs every item.
#include "kernels/threadpool/pool_flags.h"

#include <atomic>

#include "gtest/gtest.h"

namespace qlab::kernels {
namespace {

TEST(PoolFlagsTest, YieldingIsPerPoolAndReversible) {
  pthreadpool_t a = pthreadpool_create(2);
  pthreadpool_t b = pthreadpool_create(2);
  EXPECT_EQ(PoolFlags(a), 0u);
  EXPECT_EQ(PoolFlags(nullptr), 0u);
  SetYieldingPool(a, true);
  EXPECT_EQ(PoolFlags(a), static_cast<uint32_t>(PTHREADPOOL_FLAG_YIELD_WORKERS));
  EXPECT_EQ(PoolFlags(b), 0u);
  SetYieldingPool(a, true);  // twice: still one entry
  SetYieldingPool(a, false);
  EXPECT_EQ(PoolFlags(a), 0u);
  SetYieldingPool(nullptr, true);
  EXPECT_EQ(PoolFlags(nullptr), 0u);
  pthreadpool_destroy(a);
  pthreadpool_destroy(b);
}

TEST(PoolFlagsTest, YieldingPoolRunsEveryItem) {
  pthreadpool_t pool = pthreadpool_create(2);
  SetYieldingPool(pool, true);
  std::atomic<int> sum{0};
  for (int round = 0; round < 50; ++round) {
    pthreadpool_parallelize_1d(
        pool, [](void* s, size_t i) { static_cast<std::atomic<int>*>(s)->fetch_add(int(i)); }, &sum,
        100, PoolFlags(pool));
  }
  EXPECT_EQ(sum.load(), 50 * 4950);
  SetYieldingPool(pool, false);
  pthreadpool_destroy(pool);
}

}  // namespace
}  // namespace qlab::kernels
