// Tests of kernels/histogram/torch_l2_error: the dispatched kernel against its scalar oracle
// (torch_l2_error_ref.h) on every Highway target compiled in and supported by this CPU, over the
// grids the L2 search produces: source widths from 1e-30 to 1e30 and powers of two (whose
// destination widths make many quotients exact integers, the floor division's hard case), every
// candidate shape from one bin to the full histogram, 8-bit and 32-bit destination grids, odd
// bin counts (vector tails) and empty bins. The arithmetic is the same IEEE float operations in
// the same order in SIMD and scalar code, and the floor division is exact in both: bit-identical
// norms, no tolerance.
//
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number, printed on failure.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/histogram/torch_l2_error.h"
#include "kernels/histogram/torch_l2_error_ref.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261124;

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

// The grid TorchL2Range derives for candidate [start_bin, end_bin] of a histogram of `bins` bins
// over a range of `range` (Python doubles rounded to float32, as PyTorch's scalars are).
TorchL2Grid GridFor(double range, int bins, int start_bin, int end_bin, int dst_nbins) {
  const double bin_width = range / bins;
  const double dst_bin_width = bin_width * (end_bin - start_bin + 1) / dst_nbins;
  TorchL2Grid g;
  g.bw = static_cast<float>(bin_width);
  g.dbw = static_cast<float>(dst_bin_width);
  g.half = static_cast<float>(dst_bin_width / 2);
  g.neg_half = static_cast<float>(-dst_bin_width / 2);
  g.middle = (g.half * g.half * g.half - g.neg_half * g.neg_half * g.neg_half) / 3.0f;
  g.last = static_cast<float>(dst_nbins - 1);
  g.start_bin = start_bin;
  return g;
}

class TorchL2ErrorTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(TorchL2ErrorTest);

TEST_P(TorchL2ErrorTest, MatchesReferenceOnEveryTarget) {
  const double ranges[] = {1e-30, 3.7e-6, 1.0, 2.0, 10.0, 12.5, 4096.0, 1e6, 1e30};
  const int bin_counts[] = {1, 3, 7, 8, 9, 17, 255, 2047, 2048, 2049};
  uint32_t case_number = 0;
  int compared = 0;
  for (double range : ranges) {
    for (int bins : bin_counts) {
      for (int dst_nbins : {256, 1 << 30}) {
        for (int shape = 0; shape < 12; ++shape) {
          const uint32_t seed = kBaseSeed + case_number++;
          std::mt19937 rng(seed);
          std::uniform_int_distribution<int> bin(0, bins - 1);
          int start_bin = bin(rng), end_bin = bin(rng);
          if (start_bin > end_bin) std::swap(start_bin, end_bin);
          if (shape == 0) start_bin = 0, end_bin = bins - 1;  // the first candidate
          const TorchL2Grid g = GridFor(range, bins, start_bin, end_bin, dst_nbins);
          if (!(g.bw > 0.0f) || !(g.dbw > 0.0f)) continue;
          std::vector<float> density(static_cast<size_t>(bins));
          std::uniform_real_distribution<float> count(0.0f, 5000.0f);
          for (float& d : density) d = (rng() % 4 == 0 ? 0.0f : std::floor(count(rng))) / g.bw;
          std::vector<float> ours(density.size(), -1.0f), expected(density.size(), -2.0f);
          TorchL2BinErrors(density.data(), density.size(), g, ours.data());
          TorchL2BinErrorsRef(density.data(), density.size(), g, expected.data());
          for (size_t i = 0; i < density.size(); ++i) {
            ASSERT_EQ(Bits(ours[i]), Bits(expected[i]))
                << "seed " << seed << " bin " << i << " of " << bins << ", range " << range
                << ", candidate [" << start_bin << ", " << end_bin << "], dst " << dst_nbins
                << ": " << ours[i] << " vs " << expected[i];
          }
          ++compared;
        }
      }
    }
  }
  EXPECT_GT(compared, 2000);
}

TEST(TorchFloorDivideRefTest, PinsTorchFloorDivision) {
  // Below the divisor: the plain quotient; at and above: the floor; negative: 0; clamped.
  EXPECT_EQ(TorchFloorDivideRef(-0.5f, 2.0f, 255.0f), 0.0f);
  EXPECT_EQ(TorchFloorDivideRef(1.0f, 4.0f, 255.0f), 0.25f);
  EXPECT_EQ(TorchFloorDivideRef(4.0f, 4.0f, 255.0f), 1.0f);
  EXPECT_EQ(TorchFloorDivideRef(7.9f, 4.0f, 255.0f), 1.0f);
  EXPECT_EQ(TorchFloorDivideRef(3000.0f, 1.0f, 255.0f), 255.0f);
  // 0.3 / 0.1 in float is 3 (rounded up); floor of the real quotient is 2.
  EXPECT_EQ(TorchFloorDivideRef(0.3f, 0.1f, 255.0f),
            std::floor(static_cast<double>(0.3f) / static_cast<double>(0.1f)));
}

}  // namespace
}  // namespace qlab::kernels
