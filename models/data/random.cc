// SplitMix64 and the permutation/subset helpers of models/data/random.h.
#include "models/data/random.h"

#include <algorithm>
#include <utility>

#include "core/check.h"

namespace qlab::data {

uint64_t SplitMix64::Next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::Below(uint64_t bound) {
  QLAB_CHECK_MSG(bound > 0, "SplitMix64::Below(0)");
  // Values below `threshold` would make some residues more likely; 2^64 mod bound of them.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = Next();
    if (r >= threshold) return r % bound;
  }
}

uint64_t MixSeed(uint64_t a, uint64_t b) {
  SplitMix64 first(a);
  SplitMix64 second(first.Next() ^ b);
  return second.Next();
}

std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed) {
  QLAB_CHECK_MSG(n >= 0, "SeededPermutation of a negative count");
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  SplitMix64 rng(seed);
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(n - i)));
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<int64_t> SeededSubset(int64_t n, int64_t k, uint64_t seed) {
  QLAB_CHECK_MSG(k >= 0 && k <= n, "SeededSubset needs 0 <= k <= n");
  // A partial Fisher-Yates: the first k steps of SeededPermutation, the same draws.
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  SplitMix64 rng(seed);
  for (int64_t i = 0; i < k && i + 1 < n; ++i) {
    const int64_t j = i + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(n - i)));
    std::swap(order[i], order[j]);
  }
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace qlab::data
