// Tests of kernels/histogram: the dispatched kernel against its scalar oracle (histogram_ref.h)
// on every Highway target compiled in and supported by this CPU, over odd sizes and misaligned
// starts, with values on bin edges, outside the range, +-Inf and NaN; plus hand-computed cases
// pinning torch.histc's rule independently of the oracle. Counts are integers and the bin
// arithmetic is the same IEEE operations in SIMD and scalar code: no tolerance anywhere.
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number, printed on failure.
#include "kernels/histogram/histogram.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/aligned_allocator.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/histogram/histogram_ref.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261123;
constexpr float kInf = std::numeric_limits<float>::infinity();
// Around the pipelined loop's boundaries too: one, two and several full blocks of 512 with and
// without a tail, and the direct path's limit (8 partials x bins: 16384 at 2048 bins).
const size_t kSizes[] = {0,    1,    3,    7,    15,   16,    17,    31,    63,    64,
                         65,   127,  511,  512,  513,  1000,  1023,  1024,  1025,  4095,
                         4096, 4097, 8191, 8192, 8193, 9001,  12289, 16383, 16384, 16385,
                         20481};
const size_t kOffsets[] = {0, 1, 3};

std::vector<float> MakeData(size_t n, const HistogramBinning& b, std::mt19937& rng) {
  const float width = b.hi - b.lo;
  std::uniform_real_distribution<float> uniform(b.lo - 0.1f * width, b.hi + 0.1f * width);
  std::uniform_int_distribution<uint32_t> edge(0, b.bins);
  std::uniform_int_distribution<int> kind(0, 19);
  std::vector<float> data(n);
  for (float& v : data) {
    switch (kind(rng)) {
      case 0:  // exactly on a bin edge, as float computes it
        v = b.lo + static_cast<float>(edge(rng)) * (width / static_cast<float>(b.bins));
        break;
      case 1:
        v = b.hi;
        break;
      case 2:
        v = b.lo;
        break;
      case 3:
        v = std::nextafter(b.hi, kInf);
        break;
      case 4:
        v = std::numeric_limits<float>::quiet_NaN();
        break;
      case 5:
        v = (edge(rng) % 2 == 0) ? kInf : -kInf;
        break;
      default:
        v = uniform(rng);
    }
  }
  return data;
}

class HistogramKernelTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(HistogramKernelTest);

TEST_P(HistogramKernelTest, MatchesReferenceOnEveryTarget) {
  const HistogramBinning binnings[] = {{-3.0f, 4.0f, 2048},      {0.0f, 1.0f, 7},
                                       {-1e-30f, 3e-30f, 2048},  {-1e30f, 1e30f, 256},
                                       {2.5f, 2.5000002f, 2048}, {-5.0f, 5.0f, 1}};
  uint32_t case_number = 0;
  for (const HistogramBinning& b : binnings) {
    for (size_t n : kSizes) {
      for (size_t offset : kOffsets) {
        const uint32_t seed = kBaseSeed + case_number++;
        std::mt19937 rng(seed);
        const std::vector<float> data = MakeData(n, b, rng);
        auto buffer = hwy::AllocateAligned<float>(n + offset + 1);
        std::copy(data.begin(), data.end(), buffer.get() + offset);
        std::vector<int64_t> ours(b.bins, 5), expected(b.bins, 5);  // adds to existing counts
        const size_t counted = HistogramAccumulate(buffer.get() + offset, n, b, ours.data());
        const size_t expected_counted = HistogramAccumulateRef(data.data(), n, b, expected.data());
        ASSERT_EQ(counted, expected_counted) << "seed " << seed << " n " << n;
        ASSERT_EQ(ours, expected) << "seed " << seed << " n " << n << " offset " << offset
                                  << " bins " << b.bins << " [" << b.lo << ", " << b.hi << "]";
      }
    }
  }
}

// The speculative variant: true and the oracle's counts when every element lies in the checked
// range; false and untouched counts when one element (first, middle, last, a NaN) does not.
TEST_P(HistogramKernelTest, IfInsideMatchesReferenceAndLeavesCountsOnFailure) {
  const HistogramBinning binnings[] = {{-3.0f, 4.0f, 2048}, {0.0f, 1.0f, 7}, {-4.0f, 4.0f, 64}};
  uint32_t case_number = 5000;
  for (const HistogramBinning& b : binnings) {
    for (size_t n : kSizes) {
      if (n == 0) continue;
      const uint32_t seed = kBaseSeed + case_number++;
      std::mt19937 rng(seed);
      // A checked range wider than the bins on one side (PyTorch's binning counts inside
      // [trunc(min), trunc(max)] of a range [min, max]).
      const float inside_lo = b.lo - 0.5f, inside_hi = b.hi;
      std::uniform_real_distribution<float> uniform(inside_lo, inside_hi);
      std::vector<float> data(n);
      for (float& v : data) v = uniform(rng);
      data[0] = inside_lo;
      data[n - 1] = inside_hi;
      std::vector<int64_t> ours(b.bins, 3), expected(b.bins, 3);
      ASSERT_TRUE(HistogramAccumulateIfInside(data.data(), n, b, inside_lo, inside_hi, ours.data()))
          << "seed " << seed << " n " << n;
      ASSERT_TRUE(
          HistogramAccumulateIfInsideRef(data.data(), n, b, inside_lo, inside_hi, expected.data()));
      ASSERT_EQ(ours, expected) << "seed " << seed << " n " << n << " bins " << b.bins;
      for (size_t at : {size_t{0}, n / 2, n - 1}) {
        for (float bad : {std::nextafter(inside_hi, kInf), std::nextafter(inside_lo, -kInf),
                          std::numeric_limits<float>::quiet_NaN(), -kInf}) {
          std::vector<float> damaged = data;
          damaged[at] = bad;
          std::vector<int64_t> untouched(b.bins, 3);
          EXPECT_FALSE(HistogramAccumulateIfInside(damaged.data(), n, b, inside_lo, inside_hi,
                                                   untouched.data()))
              << "seed " << seed << " n " << n << " at " << at << " value " << bad;
          EXPECT_EQ(untouched, std::vector<int64_t>(b.bins, 3)) << "seed " << seed;
        }
      }
    }
  }
}

// Every float within 24 ulps of every bin edge (as float computes the edges) for representative
// ranges: each edge's values alone (short-array path) must land exactly as the scalar rule puts
// them, and all of them together (pipelined path, 8 partials) give the oracle's counts.
TEST_P(HistogramKernelTest, ExhaustiveNearBinEdges) {
  const HistogramBinning binnings[] = {{-3.0f, 4.0f, 2048},
                                       {-1e-3f, 2.5e-3f, 2048},
                                       {0.0f, 1.0f, 7},
                                       {-4.0f, 4.0f, 256},
                                       {-123.456f, 7890.125f, 2048}};
  constexpr int kUlps = 24;
  for (const HistogramBinning& b : binnings) {
    const float width = (b.hi - b.lo) / static_cast<float>(b.bins);
    std::vector<float> all;
    for (uint32_t k = 0; k <= b.bins; ++k) {
      const float edge = b.lo + static_cast<float>(k) * width;
      std::vector<float> near;
      float below = edge, above = edge;
      near.push_back(edge);
      for (int u = 0; u < kUlps; ++u) {
        below = std::nextafter(below, -kInf);
        above = std::nextafter(above, kInf);
        near.push_back(below);
        near.push_back(above);
      }
      std::vector<int64_t> ours(b.bins, 0), expected(b.bins, 0);
      HistogramAccumulate(near.data(), near.size(), b, ours.data());
      HistogramAccumulateRef(near.data(), near.size(), b, expected.data());
      ASSERT_EQ(ours, expected) << "edge " << k << " of [" << b.lo << ", " << b.hi << "] in "
                                << b.bins << " bins";
      all.insert(all.end(), near.begin(), near.end());
    }
    ASSERT_GE(all.size(), 8u * b.bins);  // long enough for the pipelined path
    std::vector<int64_t> ours(b.bins, 0), expected(b.bins, 0);
    EXPECT_EQ(HistogramAccumulate(all.data(), all.size(), b, ours.data()),
              HistogramAccumulateRef(all.data(), all.size(), b, expected.data()));
    EXPECT_EQ(ours, expected) << "[" << b.lo << ", " << b.hi << "] in " << b.bins << " bins";
  }
}

TEST_P(HistogramKernelTest, PinsHistcRule) {
  // [0, 4] in 4 bins: edges 0, 1, 2, 3, 4; an edge value goes right, the last edge stays in.
  const HistogramBinning b{0.0f, 4.0f, 4};
  const std::vector<float> x = {
      0.0f, 0.5f, 1.0f, 2.999f, 3.0f, 4.0f, 4.5f, -0.1f, std::numeric_limits<float>::quiet_NaN(),
      kInf};
  std::vector<int64_t> counts(4, 0);
  EXPECT_EQ(HistogramAccumulate(x.data(), x.size(), b, counts.data()), 6u);
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 1, 1, 2}));
}

TEST(HistogramKernelTargetTest, NamesATarget) {
  EXPECT_NE(std::string(HistogramKernelTargetName()), "");
}

}  // namespace
}  // namespace qlab::kernels
