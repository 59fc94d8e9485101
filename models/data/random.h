// Seeded, platform-independent randomness for the data pipeline: subsets, shuffles and
// augmentation draws that are the same on every machine and standard library.
//
// std::uniform_int_distribution and std::shuffle are implementation-defined, so results could
// change with the compiler; SplitMix64 with rejection sampling is fully specified here.
//
//   std::vector<int64_t> calibration = SeededSubset(/*n=*/50000, /*k=*/512, /*seed=*/1);
#ifndef QLAB_MODELS_DATA_RANDOM_H_
#define QLAB_MODELS_DATA_RANDOM_H_

#include <cstdint>
#include <vector>

namespace qlab::data {

// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator whose every output is a bijective mix of
// its counter, also used to derive independent per-sample seeds.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, bound), bound > 0, without modulo bias (rejection of the incomplete top range).
  uint64_t Below(uint64_t bound);

 private:
  uint64_t state_;
};

// A 64-bit mix of (a, b), for seeds such as (seed, epoch) or (seed, sample index).
uint64_t MixSeed(uint64_t a, uint64_t b);

// A permutation of 0..n-1 (Fisher-Yates driven by SplitMix64(seed)).
std::vector<int64_t> SeededPermutation(int64_t n, uint64_t seed);

// k distinct indices of 0..n-1 chosen uniformly (the first k of SeededPermutation(n, seed)),
// returned in ascending order so files are read in dataset order. Requires 0 <= k <= n.
std::vector<int64_t> SeededSubset(int64_t n, int64_t k, uint64_t seed);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_RANDOM_H_
