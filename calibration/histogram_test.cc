// Tests of histogram calibration: re-binning and folding (mass conservation, aligned grids
// exact), merge semantics, the percentile / entropy / MSE methods against brute-force
// implementations written here from their published descriptions on the same histograms, and on
// distributions whose optimal clip is known analytically; collect once / compute many through
// the registry; histogram observer state and files; the NaN/Inf policy; the batch passes split
// over threads (identical to the scalar kernels' single pass) and the L2 search (identical to
// PyTorch's per-bin division written out plainly).
#include "calibration/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "calibration/histogram_observers.h"
#include "calibration/registry.h"
#include "gtest/gtest.h"
#include "kernels/histogram/histogram_ref.h"
#include "kernels/quantize/quantize_ref.h"

namespace qlab::calibration {
namespace {

const QuantTarget kInt8Symmetric{DType::kInt8, -128, 127, QScheme::kPerTensorSymmetric};
const QuantTarget kInt8Affine{DType::kInt8, -128, 127, QScheme::kPerTensorAffine};
const QuantTarget kUInt8Affine{DType::kUInt8, 0, 255, QScheme::kPerTensorAffine};

enum class Dist { kUniform, kUniformPositive, kLaplace, kNormal };

std::vector<float> Sample(Dist d, size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.0f, 1.0f);
  std::exponential_distribution<float> exponential(1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) {
    switch (d) {
      case Dist::kUniform:
        v = uniform(rng);
        break;
      case Dist::kUniformPositive:
        v = positive(rng);
        break;
      case Dist::kLaplace:
        v = exponential(rng) * (positive(rng) < 0.5f ? -1.0f : 1.0f);
        break;
      case Dist::kNormal:
        v = normal(rng);
        break;
    }
    v *= scale;
  }
  return x;
}

void AddBatch(Histogram& h, const std::vector<float>& x) {
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  h.Add(x.data(), x.size(), *lo, *hi);
}

Histogram Collect(Dist d, size_t n, uint32_t seed, int bins = 2048,
                  HistogramBinning binning = HistogramBinning::kExact) {
  Histogram h(bins, binning);
  AddBatch(h, Sample(d, n, seed));
  return h;
}

double Sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

Tensor AsTensor(const std::vector<float>& v) {
  Tensor t = Tensor::Create(DType::kFloat32, {static_cast<int64_t>(v.size())}).value();
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

// ---------------------------------------------------------------------------------------------
// Re-binning, folding, merging.

TEST(RebinExactTest, ConservesMassAndIsExactOnAlignedGrids) {
  const std::vector<double> counts = {1, 2, 3, 4, 5, 6, 7, 8};
  // [0, 1] in 8 bins onto [0, 2] in 8 bins: each new bin holds two old ones, no smearing.
  const std::vector<double> doubled = RebinExact(counts, 0.0, 1.0, 8, 0.0, 2.0);
  EXPECT_EQ(doubled, (std::vector<double>{3, 7, 11, 15, 0, 0, 0, 0}));
  // Shifted by a whole bin: [0, 1] onto [-0.125, 1] in 9 bins.
  const std::vector<double> shifted = RebinExact(counts, 0.0, 1.0, 9, -0.125, 1.0);
  EXPECT_EQ(shifted, (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  // Unaligned: mass conserved (to rounding of the doubles involved).
  const std::vector<double> odd = RebinExact(counts, 0.3, 1.7, 13, -2.0, 5.0);
  EXPECT_NEAR(Sum(odd), 36.0, 1e-12);  // a few double roundings of values <= 36
  // A point mass lands in the bin holding it.
  const std::vector<double> point = RebinExact({0, 5, 0}, 0.5, 0.5, 4, 0.0, 1.0);
  EXPECT_EQ(point, (std::vector<double>{0, 0, 5, 0}));
}

TEST(FoldAbsTest, ConservesMassAndMirrors) {
  Histogram h(2048, HistogramBinning::kExact);
  std::vector<float> x = Sample(Dist::kUniform, 10000, 1);
  for (size_t i = 0; i < 5000; ++i) x[5000 + i] = -x[i];  // exactly symmetric data
  AddBatch(h, x);
  const AbsHistogram a = FoldAbs(h, 1024);
  EXPECT_NEAR(Sum(a.counts), 10000.0, 1e-9);  // rounding of the proportional split only
  EXPECT_FLOAT_EQ(static_cast<float>(a.amax), std::max(-h.min(), h.max()));
}

TEST(HistogramMergeTest, SameRangeMergeEqualsSequentialFeeding) {
  // Batches planted with the same min and max: every grid is the same one.
  std::vector<float> b1 = Sample(Dist::kNormal, 4000, 1), b2 = Sample(Dist::kNormal, 4000, 2);
  for (auto* b : {&b1, &b2}) {
    (*b)[0] = -5.0f;
    (*b)[1] = 5.0f;
  }
  Histogram a(2048, HistogramBinning::kExact), b(2048, HistogramBinning::kExact),
      both(2048, HistogramBinning::kExact);
  AddBatch(a, b1);
  AddBatch(b, b2);
  AddBatch(both, b1);
  AddBatch(both, b2);
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(a.counts(), both.counts());
  EXPECT_EQ(a.min(), both.min());
  EXPECT_EQ(a.max(), both.max());
}

TEST(HistogramMergeTest, DifferentRangesConserveMassAndCommute) {
  Histogram a = Collect(Dist::kNormal, 5000, 3), b = Collect(Dist::kLaplace, 7000, 4);
  Histogram ab = a, ba = b;
  ASSERT_TRUE(ab.Merge(b).ok());
  ASSERT_TRUE(ba.Merge(a).ok());
  EXPECT_EQ(ab.counts(), ba.counts());  // both re-bin onto the union and add: commutative
  EXPECT_NEAR(ab.total(), 12000.0, 1e-8);  // proportional splits round in the last bits only
  EXPECT_EQ(ab.min(), std::min(a.min(), b.min()));
  EXPECT_EQ(ab.max(), std::max(a.max(), b.max()));
  // Aligned: [0, 1) data merged with the same data scaled by 2 re-bins without smearing.
  Histogram small(8, HistogramBinning::kExact), large(8, HistogramBinning::kExact);
  const std::vector<float> x = {0.0f, 0.1f, 0.3f, 0.55f, 0.8f, 1.0f};
  std::vector<float> x2 = x;
  for (float& v : x2) v *= 2.0f;
  AddBatch(small, x);
  AddBatch(large, x2);
  ASSERT_TRUE(small.Merge(large).ok());
  std::vector<double> expected = RebinExact({1, 1, 1, 0, 1, 0, 1, 1}, 0, 1, 8, 0, 2);
  EXPECT_EQ(expected, (std::vector<double>{2, 1, 1, 2, 0, 0, 0, 0}));  // aligned: pairs of bins
  for (size_t k = 0; k < 8; ++k) expected[k] += large.counts()[k];
  EXPECT_EQ(small.counts(), expected);
  EXPECT_FALSE(small.Merge(Histogram(16, HistogramBinning::kExact)).ok());
  EXPECT_FALSE(small.Merge(Histogram(8, HistogramBinning::kTorch113)).ok());
}

TEST(HistogramTest, ExactBinningGrowsWithoutLosingCounts) {
  Histogram h(2048, HistogramBinning::kExact);
  for (uint32_t b = 0; b < 5; ++b) AddBatch(h, Sample(Dist::kNormal, 1000, b, 1.0f + b));
  EXPECT_NEAR(h.total(), 5000.0, 1e-8);  // re-binning conserves mass up to double rounding
}

// ---------------------------------------------------------------------------------------------
// Brute-force oracles, written from the published descriptions (TensorRT's entropy calibration
// as in pytorch-quantization's `_compute_amax_entropy`; MSE by fake-quantizing every bin center
// for every candidate; percentile by scanning edges).

double BruteForcePercentile(const std::vector<double>& counts, double amax, double p) {
  const double total = Sum(counts);
  for (size_t edge = 1; edge <= counts.size(); ++edge) {
    const double below = std::accumulate(counts.begin(), counts.begin() + edge, 0.0);
    if (below >= p / 100.0 * total) return amax * edge / counts.size();
  }
  return amax;
}

double KlDivergence(std::vector<double> p, std::vector<double> q) {
  const double ps = Sum(p), qs = Sum(q);
  double kl = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) continue;
    if (q[i] == 0.0) return INFINITY;
    kl += p[i] / ps * std::log((p[i] / ps) / (q[i] / qs));
  }
  return kl;
}

double BruteForceEntropy(std::vector<double> bins, double amax, int nbins, int start) {
  bins[0] = bins[1];
  const int n = static_cast<int>(bins.size());
  std::vector<double> divergences;
  std::vector<int> arguments;
  for (int i = start; i <= n; ++i) {
    std::vector<double> space(static_cast<size_t>(nbins) + 1);
    for (int k = 0; k <= nbins; ++k) space[k] = k * (static_cast<double>(i) / nbins);
    space[nbins] = i;
    std::vector<int> digitized(static_cast<size_t>(i));
    for (int j = 0; j < i; ++j) {
      // numpy.digitize(j, space) - 1: the number of edges <= j, minus one.
      digitized[j] = static_cast<int>(std::upper_bound(space.begin(), space.end(),
                                                       static_cast<double>(j)) -
                                      space.begin()) - 1;
      if (bins[j] == 0) digitized[j] = -1;
    }
    std::map<int, double> merged;
    std::map<int, int> members;
    for (int j = 0; j < i; ++j) {
      if (digitized[j] == -1) continue;
      merged[digitized[j]] += bins[j];
      ++members[digitized[j]];
    }
    std::vector<double> q(static_cast<size_t>(i), 0.0);
    for (int j = 0; j < i; ++j) {
      if (digitized[j] != -1) q[j] = merged[digitized[j]] / members[digitized[j]];
    }
    std::vector<double> p(bins.begin(), bins.begin() + i);
    p.back() += std::accumulate(bins.begin() + i, bins.end(), 0.0);
    divergences.push_back(KlDivergence(p, q));
    arguments.push_back(i);
  }
  size_t best = 0;
  for (size_t k = 0; k < divergences.size(); ++k) {
    if (divergences[k] <= divergences[best]) best = k;  // the last minimum
  }
  return amax * arguments[best] / n;
}

double BruteForceMse(const Histogram& h, double abs_amax, int abs_bins,
                     const QuantTarget& target) {
  double best = INFINITY, best_amax = abs_amax;
  const double w = (static_cast<double>(h.max()) - h.min()) / h.bins();
  for (int i = 128; i < abs_bins; ++i) {
    const double amax = (i + 0.5) * abs_amax / abs_bins;
    const float a = static_cast<float>(amax);
    const QuantParams qp = IsSymmetric(target.qscheme)
                               ? ChooseQParams(-a, a, target).value()
                               : ChooseQParams(std::max(h.min(), -a), std::min(h.max(), a),
                                               target).value();
    double err = 0.0;
    for (int j = 0; j < h.bins(); ++j) {
      const double x = h.min() + (j + 0.5) * w;
      double q = std::nearbyint(x / qp.scales[0]) + qp.zero_points[0];
      q = std::min<double>(std::max<double>(q, target.quant_min), target.quant_max);
      const double y = (q - qp.zero_points[0]) * qp.scales[0];
      err += h.counts()[j] * (y - x) * (y - x);
    }
    if (err < best) best = err, best_amax = amax;
  }
  return best_amax;
}

TEST(RangeMethodsTest, MatchBruteForceOnTheSameHistogram) {
  for (Dist d : {Dist::kNormal, Dist::kLaplace, Dist::kUniformPositive}) {
    const Histogram h = Collect(d, 20000, 7, 512);  // 512 bins keep the brute force fast
    const AbsHistogram a = FoldAbs(h, 512);
    for (double p : {90.0, 99.0, 99.9, 100.0}) {
      EXPECT_DOUBLE_EQ(PercentileAmax(a, p), BruteForcePercentile(a.counts, a.amax, p)) << p;
    }
    EXPECT_DOUBLE_EQ(EntropyAmax(a, 128, 128), BruteForceEntropy(a.counts, a.amax, 128, 128));
    EXPECT_DOUBLE_EQ(EntropyAmax(a, 64, 128), BruteForceEntropy(a.counts, a.amax, 64, 128));
    for (const QuantTarget& t : {kInt8Symmetric, kInt8Affine}) {
      EXPECT_DOUBLE_EQ(MseAmax(h, a, t), BruteForceMse(h, a.amax, 512, t));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Distributions with known optimal clips.

TEST(RangeMethodsTest, UniformDataIsClippedAtItsMax) {
  // For uniform data every method should keep (almost) the whole range: clipping buys nothing.
  const Histogram h = Collect(Dist::kUniform, 200000, 11);
  const float max = std::max(-h.min(), h.max());
  for (RangeMethod m : {RangeMethod::kEntropy, RangeMethod::kMse}) {
    const ClipRange r = ComputeRange(h, {m}, kInt8Symmetric).value();
    // Within 2% of max: entropy's merged-bin granularity and sampling noise in the tail bins.
    EXPECT_GT(r.max, 0.98f * max) << RangeMethodName(m);
  }
  const ClipRange p = ComputeRange(h, {RangeMethod::kPercentile, 99.0}, kInt8Symmetric).value();
  // P(|U| <= t) = t: the 99th percentile of |x| is 0.99 (sampling error ~ 0.001 at n = 2e5).
  EXPECT_NEAR(p.max, 0.99f, 0.003f);
}

TEST(RangeMethodsTest, LaplacePercentileAndMseMatchTheory) {
  const Histogram h = Collect(Dist::kLaplace, 1000000, 13);
  // |x| ~ Exp(1): the p-th percentile is -ln(1 - p).
  const ClipRange p = ComputeRange(h, {RangeMethod::kPercentile, 99.9}, kInt8Symmetric).value();
  EXPECT_NEAR(p.max, -std::log(0.001), 0.05 * -std::log(0.001));  // sampling error of a 0.1% tail
  // 4-bit symmetric: the MSE-optimal clip of Laplace(b = 1) is ~5.03 b (Banner et al., ACIQ,
  // 2019; their grid has 16 levels over [-a, a], PyTorch's [-8, 7] one 15.5 steps): within 10%.
  const QuantTarget int4{DType::kInt8, -8, 7, QScheme::kPerTensorSymmetric};
  const ClipRange m = ComputeRange(h, {RangeMethod::kMse}, int4).value();
  EXPECT_NEAR(m.max, 5.03f, 0.5f);
  // And at 8 bits the clip widens (ACIQ: ~9.89 b), still far below max |x| (~14 at n = 1e6).
  const ClipRange m8 = ComputeRange(h, {RangeMethod::kMse}, kInt8Symmetric).value();
  EXPECT_GT(m8.max, 8.0f);
  EXPECT_LT(m8.max, 12.0f);
}

TEST(RangeMethodsTest, AffineRangesOnPostReluDataStartAtZero) {
  std::vector<float> x = Sample(Dist::kNormal, 50000, 17);
  for (float& v : x) v = std::max(v, 0.0f);
  Histogram h(2048, HistogramBinning::kExact);
  AddBatch(h, x);
  for (RangeMethod m : {RangeMethod::kEntropy, RangeMethod::kMse, RangeMethod::kPercentile}) {
    const ClipRange r = ComputeRange(h, {m, 99.9}, kUInt8Affine).value();
    EXPECT_EQ(r.min, 0.0f) << RangeMethodName(m);
    EXPECT_GT(r.max, 1.5f) << RangeMethodName(m);  // well above the median (0.67 of N(0,1))
    EXPECT_LE(r.max, h.max()) << RangeMethodName(m);
  }
}

TEST(RangeMethodsTest, AffinePercentileClipsBothTails) {
  Histogram h(2048, HistogramBinning::kExact);
  AddBatch(h, Sample(Dist::kUniform, 100000, 19));
  const ClipRange r = ComputeRange(h, {RangeMethod::kPercentile, 99.0}, kInt8Affine).value();
  // 1% below the lower edge: -0.98; 1% above the upper: 0.98 (sampling error ~0.001, bin 0.001).
  EXPECT_NEAR(r.min, -0.98f, 0.004f);
  EXPECT_NEAR(r.max, 0.98f, 0.004f);
}

// ---------------------------------------------------------------------------------------------
// Observers: collect once / compute many, state, files, bad data.

// --- Batch passes on several threads ----------------------------------------------------------
// Sizes around the parallel threshold and chunk boundaries; NaN and Inf sprinkled in. Min, max,
// NaN counts and bin counts are exact: no tolerance.
std::vector<size_t> ParallelSizes() {
  // The last: chunks of ParallelChunk(n) > kParallelChunk, not a multiple of the kernels' blocks.
  static_assert(ParallelChunk((kParallelChunksPerPass + 1) * kParallelChunk + 7) > kParallelChunk);
  return {kParallelMinElements - 1,  kParallelMinElements,      kParallelMinElements + 1,
          3 * kParallelChunk + 5,    7 * kParallelChunk - 3,
          (kParallelChunksPerPass + 1) * kParallelChunk + 7};
}

std::vector<float> WithNonFinite(std::vector<float> x, uint32_t seed, bool nan, bool inf) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<size_t> pos(0, x.size() - 1);
  for (int k = 0; k < 5; ++k) {
    if (nan) x[pos(rng)] = std::numeric_limits<float>::quiet_NaN();
    if (inf) x[pos(rng)] = k % 2 == 0 ? std::numeric_limits<float>::infinity()
                                      : -std::numeric_limits<float>::infinity();
  }
  return x;
}

TEST(ParallelBatchTest, MinMaxEqualsOnePass) {
  uint32_t seed = 7000;
  for (size_t n : ParallelSizes()) {
    for (int variant = 0; variant < 3; ++variant) {
      const std::vector<float> x =
          WithNonFinite(Sample(Dist::kNormal, n, seed, 2.0f), seed + 1, variant >= 1, variant == 2);
      ++seed;
      const kernels::MinMaxResult expected = kernels::MinMaxRef(x.data(), n);
      const BatchMinMax got = ParallelMinMax(x.data(), n);
      EXPECT_EQ(got.min, expected.min) << "n " << n << " seed " << seed;
      EXPECT_EQ(got.max, expected.max) << "n " << n << " seed " << seed;
      EXPECT_EQ(got.nan_count, expected.nan_count) << "n " << n << " seed " << seed;
    }
  }
}

TEST(ParallelBatchTest, BatchCountsEqualTheScalarKernel) {
  uint32_t seed = 7100;
  for (size_t n : ParallelSizes()) {
    const std::vector<float> x =
        WithNonFinite(Sample(Dist::kNormal, n, seed, 3.0f), seed + 1, true, false);
    seed += 2;
    const kernels::MinMaxResult r = kernels::MinMaxRef(x.data(), n);
    // kExact: bins over the exact range.
    Histogram exact(2048, HistogramBinning::kExact);
    exact.Add(x.data(), n, r.min, r.max);
    std::vector<int64_t> expected(2048, 0);
    kernels::HistogramAccumulateRef(x.data(), n, {r.min, r.max, 2048}, expected.data());
    ASSERT_EQ(exact.counts(), std::vector<double>(expected.begin(), expected.end())) << "n " << n;
    // kTorch113: torch.histc over [trunc(min), trunc(max)].
    Histogram torch(2048, HistogramBinning::kTorch113);
    torch.Add(x.data(), n, r.min, r.max);
    std::fill(expected.begin(), expected.end(), 0);
    kernels::HistogramAccumulateRef(x.data(), n, {std::trunc(r.min), std::trunc(r.max), 2048},
                                    expected.data());
    ASSERT_EQ(torch.counts(), std::vector<double>(expected.begin(), expected.end()))
        << "n " << n;
  }
}

// --- One-pass steady state (AddIfInsideRange) --------------------------------------------------
// A batch inside the range: the speculative pass gives exactly what Add gives after the range
// pass (same counts and range, both binnings, serial and split over threads); a batch with a
// value outside, a NaN or an Inf anywhere: false and the histogram unchanged.
void ExpectSameHistogram(const Histogram& a, const Histogram& b, const std::string& trace) {
  EXPECT_EQ(a.min(), b.min()) << trace;
  EXPECT_EQ(a.max(), b.max()) << trace;
  EXPECT_EQ(a.counts(), b.counts()) << trace;
}

TEST(AddIfInsideRangeTest, InsideBatchesEqualAddOutsideOnesChangeNothing) {
  uint32_t seed = 7300;
  for (const HistogramBinning binning : {HistogramBinning::kExact, HistogramBinning::kTorch113}) {
    for (size_t n :
         {size_t{1000}, size_t{20000}, kParallelMinElements + 3, 3 * kParallelChunk + 5}) {
      const std::string trace =
          std::string(binning == HistogramBinning::kExact ? "exact" : "torch") + " n " +
          std::to_string(n) + " seed " + std::to_string(seed);
      const std::vector<float> wide = Sample(Dist::kNormal, n, seed++, 3.0f);
      const std::vector<float> narrow = Sample(Dist::kNormal, n, seed++, 1.0f);
      Histogram fast(2048, binning), slow(2048, binning);
      AddBatch(fast, wide);
      AddBatch(slow, wide);
      // Nothing to speculate on in an empty histogram.
      Histogram empty(2048, binning);
      EXPECT_FALSE(empty.AddIfInsideRange({narrow.data(), 1, n, n})) << trace;
      // `narrow` (N(0, 1) against N(0, 3)) lies inside with overwhelming probability; checked.
      const auto [lo, hi] = std::minmax_element(narrow.begin(), narrow.end());
      ASSERT_TRUE(*lo >= fast.min() && *hi <= fast.max()) << trace;
      // (kTorch113 would refuse if its range adjustment moved the range; with 2048 * 128 = 2^18
      // grid steps it does not for these ranges, so both binnings must accept.)
      EXPECT_TRUE(fast.AddIfInsideRange({narrow.data(), 1, n, n})) << trace;
      AddBatch(slow, narrow);
      ExpectSameHistogram(fast, slow, trace);
      // One value outside (beyond the max, below the min, NaN, Inf) at the start, middle or end.
      for (size_t at : {size_t{0}, n / 2, n - 1}) {
        for (float bad :
             {std::nextafter(fast.max(), 1e30f), std::nextafter(fast.min(), -1e30f),
              std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
          std::vector<float> damaged = narrow;
          damaged[at] = bad;
          const Histogram before = fast;
          EXPECT_FALSE(fast.AddIfInsideRange({damaged.data(), 1, n, n}))
              << trace << " at " << at << " value " << bad;
          ExpectSameHistogram(fast, before, trace);
        }
      }
    }
  }
}

TEST(AddIfInsideRangeTest, ObserverResultsDoNotDependOnTheShortcut) {
  // An observer fed wide then narrow batches (the second takes the one-pass path) computes what
  // the two-pass path computes, i.e. the histogram built by Add.
  for (const char* spec : {"histogram", "entropy", "percentile:99.9", "mse"}) {
    auto o = CreateObserver(spec).value();
    const std::vector<float> wide = Sample(Dist::kNormal, 50000, 7400, 4.0f);
    const std::vector<float> narrow = Sample(Dist::kNormal, 50000, 7401, 1.0f);
    ASSERT_TRUE(o->Observe(AsTensor(wide)).ok());
    ASSERT_TRUE(o->Observe(AsTensor(narrow)).ok());
    Histogram expected(2048, std::string(spec) == "histogram" ? HistogramBinning::kTorch113
                                                              : HistogramBinning::kExact);
    AddBatch(expected, wide);
    AddBatch(expected, narrow);
    ExpectSameHistogram(*CollectedHistogram(*o), expected, spec);
    EXPECT_EQ(o->num_batches(), 2);
  }
}

// --- The L2 search ----------------------------------------------------------------------------
// PyTorch 1.13's _non_linear_param_search and _compute_quantization_error written out plainly:
// every quantity recomputed per candidate and bin, the floor division as one double division
// (exact for the quotients that occur). TorchL2Range precomputes the densities and computes the
// per-bin errors with the Highway kernel (kernels/histogram/torch_l2_error.h); it must return the
// same range, bit for bit.
uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

float PlainFloorDivide(float a, float b, float last) {
  if (a < 0.0f) return 0.0f;
  if (a < b) return std::min(a / b, last);
  return static_cast<float>(
      std::min(std::floor(static_cast<double>(a) / b), static_cast<double>(last)));
}

float PlainNorm(float begin, float end, float density) {
  return density * ((end * end * end - begin * begin * begin) / 3.0f);
}

double PlainL2Error(const std::vector<float>& hist, float min_val, float max_val, int start_bin,
                    int end_bin, int dst_nbins) {
  const int bins = static_cast<int>(hist.size());
  const double bin_width = (static_cast<double>(max_val) - min_val) / bins;
  const double dst_bin_width = bin_width * (end_bin - start_bin + 1) / dst_nbins;
  if (dst_bin_width == 0.0) return 0.0;
  const float bw = static_cast<float>(bin_width), dbw = static_cast<float>(dst_bin_width);
  const float half = static_cast<float>(dst_bin_width / 2);
  const float neg_half = static_cast<float>(-dst_bin_width / 2);
  const float last = static_cast<float>(dst_nbins - 1);
  double sum = 0.0;
  for (int i = 0; i < bins; ++i) {
    const float src_begin = static_cast<float>(i - start_bin) * bw;
    const float src_end = src_begin + bw;
    const float dst_begin = PlainFloorDivide(src_begin, dbw, last);
    const float dst_end = PlainFloorDivide(src_end, dbw, last);
    const float density = hist[static_cast<size_t>(i)] / bw;
    float norm = 0.0f;
    norm += PlainNorm(src_begin - (dst_begin + 0.5f) * dbw, half, density);
    norm += (dst_end - dst_begin - 1.0f) *
            (density * ((half * half * half - neg_half * neg_half * neg_half) / 3.0f));
    norm += PlainNorm(neg_half, src_end - (dst_end * dbw + half), density);
    sum += norm;
  }
  return static_cast<float>(sum);
}

ClipRange PlainL2Range(const Histogram& h, int dst_nbins) {
  const int bins = h.bins();
  const std::vector<float> hist(h.counts().begin(), h.counts().end());
  double total_d = 0.0;
  std::vector<float> csum(hist.size());
  for (size_t i = 0; i < hist.size(); ++i) csum[i] = static_cast<float>(total_d += hist[i]);
  const double total = static_cast<float>(total_d);
  double alpha = 0.0, beta = 1.0, norm_min = std::numeric_limits<double>::infinity();
  int start_bin = 0, end_bin = bins - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + 1e-5, next_beta = beta - 1e-5;
    int l = start_bin, r = end_bin;
    while (l < end_bin && csum[static_cast<size_t>(l)] < static_cast<float>(next_alpha * total)) {
      ++l;
    }
    while (r > start_bin && csum[static_cast<size_t>(r)] > static_cast<float>(next_beta * total)) {
      --r;
    }
    int next_start = start_bin, next_end = end_bin;
    if (l - start_bin > end_bin - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start_bin && next_end == end_bin) continue;
    const double norm = PlainL2Error(hist, h.min(), h.max(), next_start, next_end, dst_nbins);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start;
    end_bin = next_end;
  }
  const float bin_width = (h.max() - h.min()) / static_cast<float>(bins);
  return {h.min() + bin_width * static_cast<float>(start_bin),
          h.min() + bin_width * static_cast<float>(end_bin + 1)};
}

TEST(TorchL2RangeTest, EqualsThePlainSearchBitForBit) {
  // Ranges from tiny to huge (beyond 1e12, where empty bins are visited too), data from narrow
  // spikes to heavy tails, 8-bit and 32-bit destination grids (the latter takes the division
  // path for large quotients).
  const float scales[] = {1e-30f, 1e-3f, 1.0f, 37.5f, 1e6f, 1e13f};
  const Dist dists[] = {Dist::kNormal, Dist::kLaplace, Dist::kUniformPositive};
  uint32_t seed = 7200;
  int compared = 0;
  for (float scale : scales) {
    for (Dist d : dists) {
      for (int bins : {2048, 37}) {
        const std::vector<float> x = Sample(d, 20000, seed++, scale);
        const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
        Histogram h(bins, HistogramBinning::kExact);
        h.Add(x.data(), x.size(), *lo, *hi);
        for (int dst_nbins : {256, 1 << 30}) {
          const ClipRange ours = TorchL2Range(h, dst_nbins);
          const ClipRange plain = PlainL2Range(h, dst_nbins);
          EXPECT_EQ(Bits(ours.min), Bits(plain.min))
              << "scale " << scale << " bins " << bins << " dst " << dst_nbins << " seed " << seed;
          EXPECT_EQ(Bits(ours.max), Bits(plain.max))
              << "scale " << scale << " bins " << bins << " dst " << dst_nbins << " seed " << seed;
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 72);
}

TEST(HistogramObserverTest, CollectOnceComputeMany) {
  auto entropy = CreateObserver("entropy").value();
  std::vector<std::unique_ptr<Observer>> direct;
  for (const char* spec : {"percentile:99.9", "mse", "histogram:torch_binning=0"}) {
    direct.push_back(CreateObserver(spec).value());
  }
  for (uint32_t b = 0; b < 3; ++b) {
    const Tensor x = AsTensor(Sample(Dist::kLaplace, 5000, 30 + b, 1.0f + b));
    ASSERT_TRUE(entropy->Observe(x).ok());
    for (auto& o : direct) ASSERT_TRUE(o->Observe(x).ok());
  }
  for (const auto& o : direct) {
    auto reused = CreateObserverFromHistogram(o->spec(), *entropy);
    ASSERT_TRUE(reused.ok()) << reused.status();
    EXPECT_EQ((*reused)->num_batches(), 3);
    EXPECT_EQ((*reused)->ComputeQParams(kInt8Symmetric).value().scales,
              o->ComputeQParams(kInt8Symmetric).value().scales)
        << o->spec();
  }
  // The PyTorch-binning histogram cannot lend its (differently collected) histogram.
  auto torch = CreateObserver("histogram").value();
  EXPECT_EQ(CreateObserverFromHistogram("entropy", *torch).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateObserverFromHistogram("entropy", *CreateObserver("minmax").value())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HistogramObserverTest, SpecsRoundTrip) {
  for (const char* spec : {"histogram", "histogram:bins=1024", "percentile:99.99",
                           "percentile:99.9,bins=512", "entropy", "mse:bins=4096",
                           "histogram:torch_binning=0", "entropy:torch_binning=1"}) {
    auto o = CreateObserver(spec);
    ASSERT_TRUE(o.ok()) << spec << ": " << o.status();
    EXPECT_EQ((*o)->spec(), spec);
  }
  EXPECT_FALSE(CreateObserver("percentile").ok());  // p is required
  EXPECT_FALSE(CreateObserver("percentile:0").ok());
  EXPECT_FALSE(CreateObserver("percentile:100.5").ok());
  EXPECT_FALSE(CreateObserver("entropy:bins=1").ok());
  EXPECT_FALSE(CreateObserver("histogram:bins=10.5").ok());
}

TEST(HistogramObserverTest, SaveLoadContinuesIdentically) {
  for (const char* spec : {"histogram", "entropy"}) {
    auto a = CreateObserver(spec).value();
    ASSERT_TRUE(a->Observe(AsTensor(Sample(Dist::kNormal, 3000, 40))).ok());
    const std::string dir = std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp";
    const std::string path = dir + "/h.observer";
    ASSERT_TRUE(SaveObserver(*a, path).ok());
    auto b = LoadObserver(path);
    ASSERT_TRUE(b.ok()) << b.status();
    const Tensor next = AsTensor(Sample(Dist::kNormal, 3000, 41, 3.0f));
    ASSERT_TRUE(a->Observe(next).ok());
    ASSERT_TRUE((*b)->Observe(next).ok());
    EXPECT_EQ(CollectedHistogram(**b)->counts(), CollectedHistogram(*a)->counts()) << spec;
    EXPECT_EQ((*b)->ComputeQParams(kInt8Affine).value().scales,
              a->ComputeQParams(kInt8Affine).value().scales);
  }
  auto a = CreateObserver("mse").value();
  ASSERT_TRUE(a->Observe(AsTensor({1.0f, 2.0f})).ok());
  ObserverState s = a->SaveState();
  s.binary.resize(s.binary.size() - 8);
  EXPECT_EQ(CreateObserver("mse").value()->RestoreState(s).code(), absl::StatusCode::kDataLoss);
  s = a->SaveState();
  const double negative = -1.0;
  std::memcpy(&s.binary[8], &negative, sizeof(negative));
  EXPECT_EQ(CreateObserver("mse").value()->RestoreState(s).code(), absl::StatusCode::kDataLoss);
}

TEST(HistogramObserverTest, NonFinitePolicyAndDegenerateInputs) {
  auto strict = CreateObserver("percentile:99").value();
  EXPECT_EQ(strict->Observe(AsTensor({1.0f, NAN})).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(strict->Observe(Tensor::Create(DType::kFloat32, {0}).value()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(strict->ComputeQParams(kInt8Affine).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ObserverOptions skip;
  skip.skip_non_finite = true;
  auto lenient = CreateObserver("entropy", skip).value();
  ASSERT_TRUE(lenient->Observe(AsTensor({1.0f, NAN, -INFINITY, 3.0f, -2.0f})).ok());
  EXPECT_EQ(lenient->non_finite_skipped(), 2);
  EXPECT_DOUBLE_EQ(CollectedHistogram(*lenient)->total(), 3.0);
  // Constant and all-zero tensors give valid parameters with every method.
  for (const char* spec : {"histogram", "percentile:99.9", "entropy", "mse"}) {
    for (float v : {0.0f, 2.5f}) {
      auto o = CreateObserver(spec).value();
      ASSERT_TRUE(o->Observe(AsTensor(std::vector<float>(100, v))).ok());
      for (const QuantTarget& t : {kInt8Affine, kInt8Symmetric, kUInt8Affine}) {
        const auto qp = o->ComputeQParams(t);
        ASSERT_TRUE(qp.ok()) << spec << " " << v << ": " << qp.status();
        EXPECT_TRUE(qp->Validate().ok()) << qp->DebugString();
      }
    }
  }
  const QuantTarget per_channel{DType::kInt8, -128, 127, QScheme::kPerChannelAffine};
  auto o = CreateObserver("mse").value();
  ASSERT_TRUE(o->Observe(AsTensor({1.0f, 2.0f})).ok());
  EXPECT_EQ(o->ComputeQParams(per_channel).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::calibration
