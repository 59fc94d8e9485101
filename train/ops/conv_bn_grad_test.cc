// Tests of train/ops/conv_bn_grad.h:
//   1. the backward formulas against central finite differences of the forward, in double (the
//      formulas written out in this file, on small odd shapes): d/dz and d/dscale of
//      y = z / scale + bias, d/dw and d/dgamma of scaled = w * gamma / sqrt(var + eps);
//   2. the float kernels against those double formulas within rounding bounds (below);
//   3. results bit-identical with no pool, 1 and 2 threads, on shapes that span several blocks.
//
// Rounding bounds: u = 2^-24. Element-wise outputs are one or two float operations on exact
// inputs (z / s: 1 rounding, + bias: 2; w * s with s itself rounded twice: 3 roundings of the
// magnitude). The sums are in double (error ~n * 2^-53 of the sum of magnitudes, negligible) and
// rounded once to float where the output is float (dgamma: 1 rounding of |sum| / std plus the
// float scale's 2). A wrong formula (a missing square, gamma instead of its scale) is off by O(1)
// of the magnitudes, millions of times the bound.
#include "train/ops/conv_bn_grad.h"

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "train/ops/batch_norm_grad.h"
#include "train/ops/fake_quant_grad.h"
#include "train/ops/ops_test_util.h"

namespace qlab::train {
namespace {

using testing::BitIdentical;
using testing::CentralDifferences;
using testing::Dot;
using testing::ExpectWithin;
using testing::kFloatRoundoff;
using testing::ThreadPools;
using testing::ToDouble;
using testing::UniformFloats;

constexpr uint32_t kSeed = 20261123;
constexpr float kEps = 1e-5f;

// y = z / s + b in double, rows x channels.
std::vector<double> OutputForward(size_t rows, size_t c, const std::vector<double>& z,
                                  const std::vector<double>& s, const std::vector<double>& b) {
  std::vector<double> y(rows * c);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < c; ++k) y[r * c + k] = z[r * c + k] / s[k] + b[k];
  }
  return y;
}

// scaled = w * gamma / sqrt(var + eps) in double.
std::vector<double> ScaleWeights(size_t out_c, size_t per, const std::vector<double>& w,
                                 const std::vector<double>& gamma, const std::vector<double>& var) {
  std::vector<double> scaled(out_c * per);
  for (size_t o = 0; o < out_c; ++o) {
    const double s = gamma[o] / std::sqrt(var[o] + kEps);
    for (size_t i = 0; i < per; ++i) scaled[o * per + i] = w[o * per + i] * s;
  }
  return scaled;
}

TEST(ConvBnGradTest, OutputBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed);
  const size_t rows = 7, c = 5;
  std::vector<double> z = ToDouble(UniformFloats(rows * c, -2.0f, 2.0f, rng));
  std::vector<double> s = ToDouble(UniformFloats(c, 0.5f, 2.0f, rng));
  std::vector<double> b = ToDouble(UniformFloats(c, -1.0f, 1.0f, rng));
  const std::vector<float> dy_f = UniformFloats(rows * c, -1.0f, 1.0f, rng);
  const std::vector<double> dy = ToDouble(dy_f);
  auto loss = [&] { return Dot(OutputForward(rows, c, z, s, b), dy); };
  const std::vector<double> fd_z = CentralDifferences(z, loss, 1e-6);
  const std::vector<double> fd_s = CentralDifferences(s, loss, 1e-6);
  const std::vector<double> fd_b = CentralDifferences(b, loss, 1e-6);

  const std::vector<float> z_f(z.begin(), z.end()), s_f(s.begin(), s.end());
  std::vector<float> dz(rows * c);
  std::vector<double> dscale(c), dbias(c);
  ConvBnOutputBackward(rows, c, dy_f.data(), z_f.data(), s_f.data(), dz.data(), dscale.data(),
                       dbias.data(), nullptr);
  // Central differences of a function quadratic at most in each variable's neighbourhood
  // (1/s is smooth): truncation error ~h^2 * |d3y/ds3| plus cancellation ~1e-16 / h; 1e-7 of
  // slack is a thousand times both, and far below any formula error (O(0.1) here).
  // dz is one float division: u of |dz| <= 2 (|dy| <= 1, s >= 0.5) on top.
  const std::vector<double> tol_c(c, 1e-7);
  ExpectWithin("dz", dz, fd_z, std::vector<double>(rows * c, 1e-7 + 2 * kFloatRoundoff));
  ExpectWithin("dscale", dscale, fd_s, tol_c);
  ExpectWithin("dbias", dbias, fd_b, tol_c);
}

TEST(ConvBnGradTest, WeightBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 1);
  const size_t out_c = 3, per = 11;  // per not a multiple of the kernel's 4 partial sums
  std::vector<double> w = ToDouble(UniformFloats(out_c * per, -1.0f, 1.0f, rng));
  std::vector<double> gamma = ToDouble(UniformFloats(out_c, 0.5f, 1.5f, rng));
  const std::vector<double> var = ToDouble(UniformFloats(out_c, 0.2f, 3.0f, rng));
  const std::vector<float> dscaled_f = UniformFloats(out_c * per, -1.0f, 1.0f, rng);
  const std::vector<double> dscaled = ToDouble(dscaled_f);
  auto loss = [&] { return Dot(ScaleWeights(out_c, per, w, gamma, var), dscaled); };
  const std::vector<double> fd_w = CentralDifferences(w, loss, 1e-6);
  const std::vector<double> fd_gamma = CentralDifferences(gamma, loss, 1e-6);

  const std::vector<float> w_f(w.begin(), w.end()), gamma_f(gamma.begin(), gamma.end()),
      var_f(var.begin(), var.end());
  std::vector<float> scale(out_c), scaled(out_c * per), dw(out_c * per);
  std::vector<float> dgamma(out_c, 0.25f);  // accumulated into: starts from a nonzero value
  ConvBnScaleWeights(out_c, per, w_f.data(), gamma_f.data(), var_f.data(), kEps, scale.data(),
                     scaled.data(), nullptr);
  ConvBnWeightBackward(out_c, per, dscaled_f.data(), /*ste_mask=*/nullptr, w_f.data(), scale.data(),
                       var_f.data(), kEps, dw.data(), dgamma.data(), nullptr);
  // Forward: scale rounded twice (division, square root) and the product once: 3u relative.
  const std::vector<double> want_scaled = ScaleWeights(out_c, per, w, gamma, var);
  std::vector<double> tol_scaled(out_c * per), tol_dw(out_c * per);
  for (size_t i = 0; i < out_c * per; ++i) {
    tol_scaled[i] = 4 * kFloatRoundoff * std::fabs(want_scaled[i]);
    tol_dw[i] = 4 * kFloatRoundoff * std::fabs(fd_w[i]) + 1e-7;  // + finite-difference slack
  }
  ExpectWithin("scaled", scaled, want_scaled, tol_scaled);
  ExpectWithin("dw", dw, fd_w, tol_dw);
  std::vector<double> want_dgamma(out_c), tol_dgamma(out_c);
  for (size_t o = 0; o < out_c; ++o) {
    want_dgamma[o] = 0.25 + fd_gamma[o];
    // The sum of |dscaled * w| / std bounds the magnitudes rounded (float scale inputs are
    // exact floats; the one float rounding of the result and of the addition to 0.25).
    double magnitude = 0.25;
    for (size_t i = 0; i < per; ++i) {
      magnitude += std::fabs(dscaled[o * per + i] * w[o * per + i]) / std::sqrt(var[o] + kEps);
    }
    tol_dgamma[o] = 3 * kFloatRoundoff * magnitude + 1e-7;
  }
  ExpectWithin("dgamma", dgamma, want_dgamma, tol_dgamma);
}

TEST(ConvBnGradTest, OutputForwardMatchesDouble) {
  std::mt19937 rng(kSeed + 2);
  const size_t rows = 601, c = 19;
  const std::vector<float> z = UniformFloats(rows * c, -3.0f, 3.0f, rng);
  const std::vector<float> s = UniformFloats(c, 0.1f, 4.0f, rng);
  const std::vector<float> b = UniformFloats(c, -1.0f, 1.0f, rng);
  std::vector<float> y(rows * c), y_nobias(rows * c);
  ConvBnOutputForward(rows, c, z.data(), s.data(), b.data(), y.data(), nullptr);
  ConvBnOutputForward(rows, c, z.data(), s.data(), nullptr, y_nobias.data(), nullptr);
  const std::vector<double> want = OutputForward(rows, c, ToDouble(z), ToDouble(s), ToDouble(b));
  const std::vector<double> want_nobias =
      OutputForward(rows, c, ToDouble(z), ToDouble(s), std::vector<double>(c, 0.0));
  std::vector<double> tol(rows * c), tol_nobias(rows * c);
  for (size_t i = 0; i < rows * c; ++i) {
    // Two roundings: the quotient (of magnitude |want - b|) and the sum.
    const double quotient = std::fabs(want_nobias[i]);
    tol[i] = kFloatRoundoff * (quotient + std::fabs(want[i])) * 1.0001;
    tol_nobias[i] = kFloatRoundoff * quotient * 1.0001;
  }
  ExpectWithin("y", y, want, tol);
  ExpectWithin("y without bias", y_nobias, want_nobias, tol_nobias);
}

TEST(ConvBnGradTest, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(kSeed + 3);
  // 1000 rows: four row blocks (the last partial); 37 x 2305 weights: several channel blocks.
  const size_t rows = 1000, c = 24, out_c = 37, per = 2305;
  const std::vector<float> z = UniformFloats(rows * c, -3.0f, 3.0f, rng);
  const std::vector<float> dy = UniformFloats(rows * c, -1.0f, 1.0f, rng);
  const std::vector<float> s = UniformFloats(c, 0.1f, 4.0f, rng);
  const std::vector<float> b = UniformFloats(c, -1.0f, 1.0f, rng);
  const std::vector<float> w = UniformFloats(out_c * per, -1.0f, 1.0f, rng);
  const std::vector<float> dscaled = UniformFloats(out_c * per, -1.0f, 1.0f, rng);
  const std::vector<float> gamma = UniformFloats(out_c, 0.5f, 1.5f, rng);
  const std::vector<float> var = UniformFloats(out_c, 0.2f, 3.0f, rng);
  struct Results {
    std::vector<float> y, dz, scale, scaled, dw, dgamma;
    std::vector<double> dscale, dbias;
  };
  auto run = [&](pthreadpool_t pool) {
    Results r{std::vector<float>(rows * c),    std::vector<float>(rows * c),
              std::vector<float>(out_c),       std::vector<float>(out_c * per),
              std::vector<float>(out_c * per), std::vector<float>(out_c, 0.0f),
              std::vector<double>(c),          std::vector<double>(c)};
    ConvBnOutputForward(rows, c, z.data(), s.data(), b.data(), r.y.data(), pool);
    ConvBnOutputBackward(rows, c, dy.data(), z.data(), s.data(), r.dz.data(), r.dscale.data(),
                         r.dbias.data(), pool);
    ConvBnScaleWeights(out_c, per, w.data(), gamma.data(), var.data(), kEps, r.scale.data(),
                       r.scaled.data(), pool);
    ConvBnWeightBackward(out_c, per, dscaled.data(), /*ste_mask=*/nullptr, w.data(), r.scale.data(),
                         var.data(), kEps, r.dw.data(), r.dgamma.data(), pool);
    return r;
  };
  ThreadPools pools;
  const Results base = run(nullptr);
  for (const auto& [name, pool] : pools.All()) {
    const Results r = run(pool);
    EXPECT_TRUE(BitIdentical(r.y, base.y)) << name;
    EXPECT_TRUE(BitIdentical(r.dz, base.dz)) << name;
    EXPECT_TRUE(BitIdentical(r.dscale, base.dscale)) << name;
    EXPECT_TRUE(BitIdentical(r.dbias, base.dbias)) << name;
    EXPECT_TRUE(BitIdentical(r.scale, base.scale)) << name;
    EXPECT_TRUE(BitIdentical(r.scaled, base.scaled)) << name;
    EXPECT_TRUE(BitIdentical(r.dw, base.dw)) << name;
    EXPECT_TRUE(BitIdentical(r.dgamma, base.dgamma)) << name;
  }
}

// The merged passes the training engine runs for a QAT conv-bn feeding a training-mode batch
// norm give the bits of the separate calls: ConvBnOutputForwardWithSums +
// BatchNormTrainForwardWithSums against ConvBnOutputForward + BatchNormTrainForward,
// ConvBnBatchNormBackward against BatchNormTrainBackward + ConvBnOutputBackward, and
// ConvBnWeightBackward with a mask against FakeQuantSteBackward + ConvBnWeightBackward, for any
// pool.
TEST(ConvBnGradTest, MergedPassesEqualTheSeparateOnes) {
  std::mt19937 rng(kSeed + 4);
  const size_t rows = 1000, c = 24;  // four row blocks, the last partial
  const std::vector<float> z = UniformFloats(rows * c, -3.0f, 5.0f, rng);
  const std::vector<float> s = UniformFloats(c, 0.1f, 4.0f, rng);
  const std::vector<float> b = UniformFloats(c, -1.0f, 1.0f, rng);
  const std::vector<float> gamma = UniformFloats(c, 0.5f, 1.5f, rng);
  const std::vector<float> beta = UniformFloats(c, -0.5f, 0.5f, rng);
  const std::vector<float> dy_bn = UniformFloats(rows * c, -1.0f, 1.0f, rng);
  struct Results {
    std::vector<float> y, bn_y, mean, inv_std, var, dz, dgamma, dbeta;
    std::vector<double> dscale, dbias;
  };
  auto fresh = [&] {
    return Results{std::vector<float>(rows * c), std::vector<float>(rows * c),
                   std::vector<float>(c),        std::vector<float>(c),
                   std::vector<float>(c),        std::vector<float>(rows * c),
                   std::vector<float>(c),        std::vector<float>(c),
                   std::vector<double>(c),       std::vector<double>(c)};
  };
  auto separate = [&](pthreadpool_t pool) {
    Results r = fresh();
    ConvBnOutputForward(rows, c, z.data(), s.data(), b.data(), r.y.data(), pool);
    BatchNormTrainForward(rows, c, r.y.data(), gamma.data(), beta.data(), kEps, r.bn_y.data(),
                          r.mean.data(), r.inv_std.data(), r.var.data(), pool);
    std::vector<float> dy(rows * c);
    BatchNormTrainBackward(rows, c, r.y.data(), gamma.data(), r.mean.data(), r.inv_std.data(),
                           dy_bn.data(), dy.data(), r.dgamma.data(), r.dbeta.data(), pool);
    ConvBnOutputBackward(rows, c, dy.data(), z.data(), s.data(), r.dz.data(), r.dscale.data(),
                         r.dbias.data(), pool);
    return r;
  };
  auto merged = [&](pthreadpool_t pool) {
    Results r = fresh();
    std::vector<double> sums(c);
    ConvBnOutputForwardWithSums(rows, c, z.data(), s.data(), b.data(), r.y.data(), sums.data(),
                                pool);
    BatchNormTrainForwardWithSums(rows, c, r.y.data(), sums.data(), gamma.data(), beta.data(), kEps,
                                  r.bn_y.data(), r.mean.data(), r.inv_std.data(), r.var.data(),
                                  pool);
    ConvBnBatchNormBackward(rows, c, r.y.data(), gamma.data(), r.mean.data(), r.inv_std.data(),
                            dy_bn.data(), z.data(), s.data(), r.dz.data(), r.dgamma.data(),
                            r.dbeta.data(), r.dscale.data(), r.dbias.data(), pool);
    return r;
  };
  const Results want = separate(nullptr);
  ThreadPools pools;
  std::vector<std::pair<std::string, pthreadpool_t>> all = {{"no pool", nullptr}};
  for (const auto& [name, pool] : pools.All()) all.emplace_back(name, pool);
  for (const auto& [name, pool] : all) {
    const Results r = merged(pool);
    EXPECT_TRUE(BitIdentical(r.y, want.y)) << name;
    EXPECT_TRUE(BitIdentical(r.bn_y, want.bn_y)) << name;
    EXPECT_TRUE(BitIdentical(r.mean, want.mean)) << name;
    EXPECT_TRUE(BitIdentical(r.inv_std, want.inv_std)) << name;
    EXPECT_TRUE(BitIdentical(r.var, want.var)) << name;
    EXPECT_TRUE(BitIdentical(r.dz, want.dz)) << name;
    EXPECT_TRUE(BitIdentical(r.dgamma, want.dgamma)) << name;
    EXPECT_TRUE(BitIdentical(r.dbeta, want.dbeta)) << name;
    EXPECT_TRUE(BitIdentical(r.dscale, want.dscale)) << name;
    EXPECT_TRUE(BitIdentical(r.dbias, want.dbias)) << name;
  }

  // The weight side: the STE mask applied inside ConvBnWeightBackward.
  const size_t out_c = 37, per = 2305;  // several channel blocks
  const std::vector<float> w = UniformFloats(out_c * per, -1.0f, 1.0f, rng);
  const std::vector<float> dscaled = UniformFloats(out_c * per, -1.0f, 1.0f, rng);
  const std::vector<float> scale = UniformFloats(out_c, 0.2f, 2.0f, rng);
  const std::vector<float> var = UniformFloats(out_c, 0.2f, 3.0f, rng);
  std::vector<uint8_t> mask(out_c * per);
  std::bernoulli_distribution inside(0.7);
  for (uint8_t& m : mask) m = inside(rng) ? 1 : 0;
  std::vector<float> ste(out_c * per), want_dw(out_c * per), want_dgamma(out_c, 0.5f);
  FakeQuantSteBackward(mask.data(), dscaled.data(), ste.size(), ste.data(), nullptr);
  ConvBnWeightBackward(out_c, per, ste.data(), /*ste_mask=*/nullptr, w.data(), scale.data(),
                       var.data(), kEps, want_dw.data(), want_dgamma.data(), nullptr);
  for (const auto& [name, pool] : all) {
    std::vector<float> dw(out_c * per), dgamma(out_c, 0.5f);
    ConvBnWeightBackward(out_c, per, dscaled.data(), mask.data(), w.data(), scale.data(),
                         var.data(), kEps, dw.data(), dgamma.data(), pool);
    EXPECT_TRUE(BitIdentical(dw, want_dw)) << name;
    EXPECT_TRUE(BitIdentical(dgamma, want_dgamma)) << name;
  }
}

}  // namespace
}  // namespace qlab::train
