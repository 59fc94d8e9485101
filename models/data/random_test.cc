// Seeded subsets and permutations: deterministic, distinct, in range, and uniform enough that
// every element is reachable.
#include "models/data/random.h"

#include <algorithm>
#include <set>

#include "gtest/gtest.h"

namespace qlab::data {
namespace {

TEST(RandomTest, SplitMix64KnownValues) {
  // SplitMix64 seeded with 1234567, as computed by an independent Python implementation.
  SplitMix64 rng(1234567);
  EXPECT_EQ(rng.Next(), 6457827717110365317ull);
  EXPECT_EQ(rng.Next(), 3203168211198807973ull);
}

TEST(RandomTest, PermutationIsDeterministicAndComplete) {
  const std::vector<int64_t> a = SeededPermutation(1000, 42), b = SeededPermutation(1000, 42);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, SeededPermutation(1000, 43));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_TRUE(SeededPermutation(0, 1).empty());
  EXPECT_EQ(SeededPermutation(1, 1), std::vector<int64_t>{0});
}

TEST(RandomTest, SubsetIsSortedPrefixOfPermutation) {
  for (int64_t k : {0, 1, 7, 512, 1000}) {
    const std::vector<int64_t> subset = SeededSubset(1000, k, 9);
    ASSERT_EQ(static_cast<int64_t>(subset.size()), k);
    EXPECT_TRUE(std::is_sorted(subset.begin(), subset.end()));
    EXPECT_EQ(std::set<int64_t>(subset.begin(), subset.end()).size(), subset.size());
    std::vector<int64_t> prefix = SeededPermutation(1000, 9);
    prefix.resize(k);
    std::sort(prefix.begin(), prefix.end());
    EXPECT_EQ(subset, prefix);
    EXPECT_EQ(subset, SeededSubset(1000, k, 9));
  }
}

TEST(RandomTest, BelowIsUnbiasedOnSmallBound) {
  SplitMix64 rng(5);
  int counts[9] = {};
  for (int i = 0; i < 90000; ++i) ++counts[rng.Below(9)];
  // Each bucket expects 10000 with standard deviation ~95; 6 sigma keeps this from flaking.
  for (int c : counts) EXPECT_NEAR(c, 10000, 570);
}

}  // namespace
}  // namespace qlab::data
