// Tests of train/ops/fake_quant_grad.h. Fake quantization rounds, so finite differences do not
// apply; instead:
//   1. the STE mask and backward on hand-computed cases (ties, clipping at both ends, +-inf, NaN);
//   2. LSQ forward and backward on hand-computed cases, per tensor and per channel, including
//      the zero point PyTorch rounds differently in the per-tensor backward;
//   3. bit-identity of LSQ with no pool, 1 and 2 threads;
//   4. against PyTorch 1.13 in float32 for 8-, 4- and 2-bit ranges, signed and unsigned:
//      torch.fake_quantize_per_tensor_affine / per_channel_affine forward and backward, and
//      torch._fake_quantize_learnable_per_tensor_affine / _per_channel_affine forward and
//      backward. y and dx must be EXACTLY equal; so must every per-element dscale and
//      dzero_point term (cases with one element per channel, or one element per call); the
//      summed dscale / dzero_point within the float summation error of PyTorch's own sum.
#include "train/ops/fake_quant_grad.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/quantize/quantize.h"
#include "train/ops/eltwise_grad.h"
#include "train/ops/ops_test_util.h"
#include "train/ops/torch_cases.h"

namespace qlab::train {
namespace {

using testing::ExpectEqualValues;
using testing::ExpectWithin;
using testing::kFloatRoundoff;

constexpr uint32_t kSeed = 20240805;

TEST(FakeQuantSteTest, HandComputedMask) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 2-bit signed [-2, 1], scale 0.5, zero point 0: x / scale rounds half to even; the mask is 1
  // where the rounded value lies in the range, 0 where it is clipped or not finite.
  //   -1.0 -> -2 in;  -1.25 -> -2.5 -> -2 in (tie to even);  -1.3 -> -2.6 -> -3 out;
  //    0.5 ->  1 in;   0.75 ->  1.5 ->  2 out (tie to even);   0.7 ->  1.4 ->  1 in;
  //   -0.0 ->  0 in;   +inf, -inf, NaN out.
  const std::vector<float> x = {-1.0f, -1.25f, -1.3f, 0.5f, 0.75f, 0.7f, -0.0f, inf, -inf, nan};
  const std::vector<uint8_t> want_mask = {1, 1, 0, 1, 0, 1, 1, 0, 0, 0};
  const std::vector<float> want_y = {-1.0f, -1.0f, -1.0f, 0.5f,  0.5f,
                                     0.5f,  0.0f,  0.5f,  -1.0f, 0.0f};
  std::vector<float> y(x.size()), dy(x.size()), dx(x.size());
  std::vector<uint8_t> mask(x.size());
  for (size_t i = 0; i < x.size(); ++i) dy[i] = static_cast<float>(i + 1);
  kernels::FakeQuantize(x.data(), x.size(), kernels::AffineParams{0.5f, 0, -2, 1}, y.data(),
                        mask.data());
  FakeQuantSteBackward(mask.data(), dy.data(), x.size(), dx.data(), nullptr);
  ExpectEqualValues("mask", mask, want_mask);
  ExpectEqualValues("y", y, want_y);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(dx[i], want_mask[i] ? dy[i] : 0.0f) << i;

  // Unsigned [0, 3] with zero point 1: -0.25 -> -0.5 -> -0 (+1 = 1) in; -0.75 -> -1.5 -> -2
  // (+1 = -1) out; 1.0 -> 2 (+1 = 3) in; 1.25 -> 2.5 -> 2 (+1 = 3) in; 1.3 -> 2.6 -> 3 (4) out.
  const std::vector<float> x2 = {-0.25f, -0.75f, 1.0f, 1.25f, 1.3f};
  std::vector<float> y2(x2.size()), dx2(x2.size());
  std::vector<uint8_t> mask2(x2.size());
  kernels::FakeQuantize(x2.data(), x2.size(), kernels::AffineParams{0.5f, 1, 0, 3}, y2.data(),
                        mask2.data());
  FakeQuantSteBackward(mask2.data(), dy.data(), x2.size(), dx2.data(), nullptr);
  ExpectEqualValues("mask2", mask2, std::vector<uint8_t>{1, 0, 1, 1, 0});
  ExpectEqualValues("dx2", dx2, std::vector<float>{1.0f, 0.0f, 3.0f, 4.0f, 0.0f});
}

TEST(LsqTest, ForwardZeroPointRoundsHalfToEvenAndClamps) {
  EXPECT_EQ(LsqForwardZeroPoint(2.5f, -128, 127), 2);
  EXPECT_EQ(LsqForwardZeroPoint(3.5f, -128, 127), 4);
  EXPECT_EQ(LsqForwardZeroPoint(-1.5f, -128, 127), -2);
  EXPECT_EQ(LsqForwardZeroPoint(-1.4f, -128, 127), -1);
  EXPECT_EQ(LsqForwardZeroPoint(4.25f, 0, 3), 3);
  EXPECT_EQ(LsqForwardZeroPoint(-2.5f, 0, 3), 0);
  EXPECT_EQ(LsqForwardZeroPoint(300.0f, 0, 255), 255);
}

// One element per call, so every term can be checked on its own.
struct LsqElement {
  float y, dx, dscale, dzero_point;
};
LsqElement PerTensorElement(float x, float dy, float scale, float zero_point, int32_t qmin,
                            int32_t qmax, float grad_factor) {
  const LsqParams params{&scale, &zero_point, qmin, qmax, grad_factor};
  LsqElement e;
  LsqPerTensorForward(&x, 1, params, &e.y, nullptr);
  LsqPerTensorBackward(&x, &dy, 1, params, &e.dx, &e.dscale, &e.dzero_point, nullptr);
  return e;
}
LsqElement PerChannelElement(float x, float dy, float scale, float zero_point, int32_t qmin,
                             int32_t qmax, float grad_factor) {
  const LsqParams params{&scale, &zero_point, qmin, qmax, grad_factor};
  LsqElement e;
  const kernels::ChannelDims dims{1, 1, 1};
  LsqPerChannelForward(&x, dims, params, &e.y, nullptr);
  LsqPerChannelBackward(&x, &dy, dims, params, &e.dx, &e.dscale, &e.dzero_point, nullptr);
  return e;
}

TEST(LsqTest, HandComputedPerTensor) {
  // Range [0, 3], scale 0.5, learned zero point 0.5: the forward quantizes with nearbyint(0.5) =
  // 0, the per-tensor backward with (int)(0.5 + 0.5) = 1 (PyTorch's rule). dy = 1, g = 1.
  // The last digits of the inside terms come from float arithmetic (0.6f is not 0.6): 1e-6.
  const float s = 0.5f, zp = 0.5f;
  // x = 0.6: forward 1.2 -> 1 -> y 0.5. Backward xq = nearbyint(1 + 1.2) = 2, inside:
  // dscale = ((2 - 1) * 0.5 - 0.6) / 0.5 = -0.2, dzero_point = 0.
  LsqElement e = PerTensorElement(0.6f, 1.0f, s, zp, 0, 3, 1.0f);
  EXPECT_EQ(e.y, 0.5f);
  EXPECT_EQ(e.dx, 1.0f);
  EXPECT_NEAR(e.dscale, -0.2f, 1e-6);
  EXPECT_EQ(e.dzero_point, 0.0f);
  // x = 1.5: forward 3 -> y 1.5. Backward xq = nearbyint(1 + 3) = 4 > 3: clipped above:
  // dx = 0, dscale = qmax - zp = 2, dzero_point = -scale = -0.5.
  e = PerTensorElement(1.5f, 1.0f, s, zp, 0, 3, 1.0f);
  EXPECT_EQ(e.y, 1.5f);
  EXPECT_EQ(e.dx, 0.0f);
  EXPECT_EQ(e.dscale, 2.0f);
  EXPECT_EQ(e.dzero_point, -0.5f);
  // x = -0.6: forward -1.2 -> -1 -> clamped to 0 -> y 0. Backward xq = nearbyint(1 - 1.2) = 0,
  // inside (the forward's clipping does not decide the gradient): dx = dy,
  // dscale = ((0 - 1) * 0.5 + 0.6) / 0.5 = 0.2.
  e = PerTensorElement(-0.6f, 1.0f, s, zp, 0, 3, 1.0f);
  EXPECT_EQ(e.y, 0.0f);
  EXPECT_EQ(e.dx, 1.0f);
  EXPECT_NEAR(e.dscale, 0.2f, 1e-6);
  // x = -1.2, dy = 2, g = 0.25: xq = nearbyint(1 - 2.4) = -1 < 0: dscale = 2 * (0 - 1) * 0.25
  // = -0.5, dzero_point = -2 * 0.5 * 0.25 = -0.25.
  e = PerTensorElement(-1.2f, 2.0f, s, zp, 0, 3, 0.25f);
  EXPECT_EQ(e.dx, 0.0f);
  EXPECT_EQ(e.dscale, -0.5f);
  EXPECT_EQ(e.dzero_point, -0.25f);
  // A signed range and a negative zero point: -1.5 -> forward nearbyint = -2, backward
  // (int)(-1.5 + 0.5) = -1. x = 0.3, s = 0.5: forward 0.6 -> 1 - 2 = -1, y = (-1 + 2) * 0.5 = 0.5;
  // backward xq = nearbyint(-1 + 0.6) = 0 inside, dscale = ((0 + 1) * 0.5 - 0.3) / 0.5 = 0.4.
  e = PerTensorElement(0.3f, 1.0f, s, -1.5f, -8, 7, 1.0f);
  EXPECT_EQ(e.y, 0.5f);
  EXPECT_NEAR(e.dscale, 0.4f, 1e-6);
}

TEST(LsqTest, HandComputedPerChannel) {
  // Per channel the backward uses the forward's zero point, nearbyint(0.5) = 0: x = -0.6 is
  // clipped below (xq = nearbyint(0 - 1.2) = -1), unlike per tensor above: dx = 0,
  // dscale = 0 - 0 = 0, dzero_point = -0.5.
  LsqElement e = PerChannelElement(-0.6f, 1.0f, 0.5f, 0.5f, 0, 3, 1.0f);
  EXPECT_EQ(e.y, 0.0f);
  EXPECT_EQ(e.dx, 0.0f);
  EXPECT_EQ(e.dscale, 0.0f);
  EXPECT_EQ(e.dzero_point, -0.5f);
  // x = 0.6: xq = nearbyint(1.2) = 1, inside: dscale = (1 * 0.5 - 0.6) / 0.5 = -0.2.
  e = PerChannelElement(0.6f, 1.0f, 0.5f, 0.5f, 0, 3, 1.0f);
  EXPECT_EQ(e.y, 0.5f);
  EXPECT_EQ(e.dx, 1.0f);
  EXPECT_NEAR(e.dscale, -0.2f, 1e-6);
  // Two channels, NHWC view {rows, 2, 1}: the sums are per channel.
  const std::vector<float> x = {0.6f, 3.0f, 1.5f, -3.0f};  // rows of (channel 0, channel 1)
  const std::vector<float> dy = {1.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<float> scales = {0.5f, 1.0f}, zero_points = {0.0f, 0.0f};
  const LsqParams params{scales.data(), zero_points.data(), -2, 1, 1.0f};
  std::vector<float> dx(4), dscales(2), dzero_points(2);
  LsqPerChannelBackward(x.data(), dy.data(), kernels::ChannelDims{2, 2, 1}, params, dx.data(),
                        dscales.data(), dzero_points.data(), nullptr);
  // Channel 0: 0.6 -> 1.2 -> 1 inside (-0.2); 1.5 -> 3 above (1 - 0 = 1): sum 0.8, dzp -0.5.
  // Channel 1: 3 above (1), -3 below (-2): sum -1, dzp -2.
  EXPECT_NEAR(dscales[0], 0.8f, 1e-6);
  EXPECT_EQ(dzero_points[0], -0.5f);
  EXPECT_EQ(dscales[1], -1.0f);
  EXPECT_EQ(dzero_points[1], -2.0f);
  ExpectEqualValues("dx", dx, std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f});
}

TEST(LsqTest, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(kSeed);
  for (const kernels::ChannelDims dims :
       {kernels::ChannelDims{1, 1, 50001}, kernels::ChannelDims{1, 16, 3001},
        kernels::ChannelDims{2001, 16, 1}}) {
    SCOPED_TRACE(absl::StrCat(dims.outer, "x", dims.channels, "x", dims.inner));
    const std::vector<float> x = testing::NormalFloats(dims.size(), 0.0f, 1.0f, rng);
    const std::vector<float> dy = testing::NormalFloats(dims.size(), 0.0f, 1.0f, rng);
    const std::vector<float> scales = testing::UniformFloats(dims.channels, 0.01f, 0.05f, rng);
    const std::vector<float> zero_points = testing::UniformFloats(dims.channels, -3, 3, rng);
    const LsqParams params{scales.data(), zero_points.data(), -8, 7, 0.01f};
    const auto run = [&](pthreadpool_t pool) {
      std::vector<float> y(x.size()), dx(x.size()), ds(dims.channels), dz(dims.channels);
      if (dims.channels == 1) {
        LsqPerTensorForward(x.data(), x.size(), params, y.data(), pool);
        LsqPerTensorBackward(x.data(), dy.data(), x.size(), params, dx.data(), ds.data(), dz.data(),
                             pool);
      } else {
        LsqPerChannelForward(x.data(), dims, params, y.data(), pool);
        LsqPerChannelBackward(x.data(), dy.data(), dims, params, dx.data(), ds.data(), dz.data(),
                              pool);
      }
      y.insert(y.end(), dx.begin(), dx.end());
      y.insert(y.end(), ds.begin(), ds.end());
      y.insert(y.end(), dz.begin(), dz.end());
      return y;
    };
    testing::ThreadPools pools;
    const std::vector<float> base = run(nullptr);
    for (const auto& [name, pool] : pools.All()) {
      EXPECT_TRUE(testing::BitIdentical(run(pool), base)) << name;
    }
  }
}

// [outer, channels, inner] of a tensor of `shape` around `axis`.
kernels::ChannelDims Dims(const std::vector<int64_t>& shape, size_t axis) {
  kernels::ChannelDims dims;
  for (size_t i = 0; i < axis; ++i) dims.outer *= static_cast<size_t>(shape[i]);
  dims.channels = static_cast<size_t>(shape[axis]);
  for (size_t i = axis + 1; i < shape.size(); ++i) dims.inner *= static_cast<size_t>(shape[i]);
  return dims;
}

// PyTorch sums the per-element float terms in float. Whatever its order, a float sum of n terms
// errs by at most gamma_{n-1} = (n-1)u / (1 - (n-1)u) times the sum of their magnitudes
// (Higham, Accuracy and Stability of Numerical Algorithms, (3.5)); ours is a double sum rounded
// once (u |sum| <= u sum|terms|). The terms' magnitudes are bounded per channel from the data:
// |dscale term| <= g |dy| max(1/2 + 1e-3, |qmin - zp|, |qmax - zp|) (inside, |xq - zp - x/s| is
// at most 1/2 plus float rounding), |dzero_point term| <= g |dy| s. Since every term is
// checked exactly in the *_terms cases, this bound only has to cover the summation order.
void SumTolerances(const std::vector<float>& dy, const kernels::ChannelDims& dims,
                   const std::vector<float>& scales, const std::vector<float>& zero_points,
                   int32_t qmin, int32_t qmax, float grad_factor, std::vector<double>* tol_scale,
                   std::vector<double>* tol_zero_point) {
  const double u = kFloatRoundoff;
  const double n = static_cast<double>(dims.outer * dims.inner);
  const double gamma = (n - 1) * u / (1 - (n - 1) * u) + u;
  tol_scale->assign(dims.channels, 0.0);
  tol_zero_point->assign(dims.channels, 0.0);
  for (size_t i = 0; i < dy.size(); ++i) {
    const size_t c = (i / dims.inner) % dims.channels;
    const double zp = std::nearbyint(zero_points[c]);
    const double reach = std::max({0.5 + 1e-3, std::fabs(qmin - zp), std::fabs(qmax - zp)});
    (*tol_scale)[c] += gamma * grad_factor * std::fabs(dy[i]) * reach;
    (*tol_zero_point)[c] += gamma * grad_factor * std::fabs(dy[i]) * scales[c];
  }
}

// The pooled forward and STE backward equal the single-call kernels bit for bit (values and
// masks), for per-tensor data, a weight (outer == 1: split by channels) and an activation-like
// [outer, channels, inner] tensor (split by slabs), each spanning several blocks.
TEST(FakeQuantSteTest, ParallelPassesEqualTheKernels) {
  std::mt19937 rng(1123);
  const size_t channels = 37, inner = 1153;  // a weight of 37 x 1153: ~5 channel blocks
  const size_t n = channels * inner;
  const std::vector<float> x = testing::UniformFloats(n, -3.0f, 3.0f, rng);
  const std::vector<float> dy = testing::UniformFloats(n, -1.0f, 1.0f, rng);
  const std::vector<float> scales = testing::UniformFloats(channels, 0.01f, 0.05f, rng);
  std::vector<int32_t> zero_points(channels);
  for (size_t c = 0; c < channels; ++c) zero_points[c] = static_cast<int32_t>(c % 7) - 3;
  const kernels::AffineParams tensor{0.02f, 3, -8, 7};
  const kernels::PerChannelAffineParams channel{scales.data(), zero_points.data(), -8, 7};
  const kernels::ChannelDims weight{1, channels, inner};
  const kernels::ChannelDims activation{29, 11, 113};  // 29 slabs of 1243 elements (<= n)
  ASSERT_LE(activation.size(), n);
  struct Out {
    std::vector<float> y;
    std::vector<uint8_t> mask;
  };
  auto fresh = [&](size_t size) {
    return Out{std::vector<float>(size), std::vector<uint8_t>(size)};
  };
  Out want_tensor = fresh(n), want_weight = fresh(n), want_act = fresh(activation.size());
  kernels::FakeQuantize(x.data(), n, tensor, want_tensor.y.data(), want_tensor.mask.data());
  kernels::FakeQuantizePerChannel(x.data(), weight, channel, want_weight.y.data(),
                                  want_weight.mask.data());
  const kernels::PerChannelAffineParams act_params{scales.data(), zero_points.data(), -8, 7};
  kernels::FakeQuantizePerChannel(x.data(), activation, act_params, want_act.y.data(),
                                  want_act.mask.data());
  std::vector<float> want_dx(n);
  for (size_t i = 0; i < n; ++i) want_dx[i] = want_weight.mask[i] != 0 ? dy[i] : 0.0f;
  testing::ThreadPools pools;
  for (const auto& [name, pool] : pools.All()) {
    Out t = fresh(n), w = fresh(n), a = fresh(activation.size());
    ParallelFakeQuantize(x.data(), n, tensor, t.y.data(), t.mask.data(), pool);
    ParallelFakeQuantizePerChannel(x.data(), weight, channel, w.y.data(), w.mask.data(), pool);
    ParallelFakeQuantizePerChannel(x.data(), activation, act_params, a.y.data(), a.mask.data(),
                                   pool);
    std::vector<float> dx(n);
    FakeQuantSteBackward(w.mask.data(), dy.data(), n, dx.data(), pool);
    EXPECT_TRUE(testing::BitIdentical(t.y, want_tensor.y)) << name;
    EXPECT_TRUE(testing::BitIdentical(t.mask, want_tensor.mask)) << name;
    EXPECT_TRUE(testing::BitIdentical(w.y, want_weight.y)) << name;
    EXPECT_TRUE(testing::BitIdentical(w.mask, want_weight.mask)) << name;
    EXPECT_TRUE(testing::BitIdentical(a.y, want_act.y)) << name;
    EXPECT_TRUE(testing::BitIdentical(a.mask, want_act.mask)) << name;
    ExpectEqualValues(absl::StrCat("dx, ", name), dx, want_dx);
  }
}

// The engine's merged backward of a ReLU feeding a fake quantizer equals the two passes.
TEST(FakeQuantSteTest, SteReluBackwardEqualsSteThenRelu) {
  std::mt19937 rng(1124);
  const size_t n = 3 * 8192 + 77;  // several blocks, the last partial
  std::vector<float> relu_y = testing::UniformFloats(n, -1.0f, 1.0f, rng);
  for (float& v : relu_y) v = std::max(v, 0.0f);  // half of them exactly 0, as ReLU outputs
  const std::vector<float> dy = testing::UniformFloats(n, -1.0f, 1.0f, rng);
  std::vector<uint8_t> mask(n);
  std::bernoulli_distribution inside(0.8);
  for (uint8_t& m : mask) m = inside(rng) ? 1 : 0;
  std::vector<float> ste(n), want(n);
  FakeQuantSteBackward(mask.data(), dy.data(), n, ste.data(), nullptr);
  ReluBackward(relu_y.data(), ste.data(), n, want.data(), nullptr);
  testing::ThreadPools pools;
  std::vector<std::pair<std::string, pthreadpool_t>> all = {{"no pool", nullptr}};
  for (const auto& [name, pool] : pools.All()) all.emplace_back(name, pool);
  for (const auto& [name, pool] : all) {
    std::vector<float> dx(n, 7.0f);
    FakeQuantSteReluBackward(mask.data(), relu_y.data(), dy.data(), n, dx.data(), pool);
    EXPECT_TRUE(testing::BitIdentical(dx, want)) << name;
  }
}

// PACT's backward by hand: alpha = 2. x = -0.5 (clipped to 0): dx = 0; x = 0 and x = 1.9
// (inside): dx = dy; x = 2 and x = 7 (clipped to alpha): dx = 0 and dalpha += dy.
TEST(PactTest, HandComputedBackward) {
  const std::vector<float> x = {-0.5f, 0.0f, 1.9f, 2.0f, 7.0f};
  const std::vector<float> dy = {1.0f, 2.0f, 3.0f, 0.25f, 0.5f};
  std::vector<float> dx(x.size(), -1.0f);
  double dalpha = 99.0;  // overwritten
  PactBackward(x.data(), dy.data(), x.size(), 2.0f, dx.data(), &dalpha, nullptr);
  EXPECT_EQ(dx, (std::vector<float>{0.0f, 2.0f, 3.0f, 0.0f, 0.0f}));
  EXPECT_EQ(dalpha, 0.75);
}

// With the rounding passed straight through (the STE), PACT's gradients are those of the clip
// y = min(max(x, 0), alpha): central differences of L = sum dy * clip(x) in double, on values kept
// 0.05 away from the kinks (x = 0, x = alpha) so that the steps of h = 1e-4 do not cross them.
// Tolerance: the kernel's dx is dy or 0 and its dalpha a double sum of float dy, and L is linear
// between the kinks, so the difference quotients are exact up to L's double rounding divided by
// 2h (|L| < 400: ~1e-10).
TEST(PactTest, BackwardMatchesFiniteDifferencesOfTheClip) {
  std::mt19937 rng(1126);
  const float alpha = 1.25f;
  std::vector<float> x = testing::UniformFloats(301, -1.0f, 3.0f, rng);
  for (float& v : x) {
    if (std::fabs(v) < 0.05f || std::fabs(v - alpha) < 0.05f) v += 0.1f;
  }
  const std::vector<float> dy = testing::UniformFloats(x.size(), -1.0f, 1.0f, rng);
  std::vector<double> xd(x.begin(), x.end()), alpha_d = {alpha};
  auto loss = [&] {
    double l = 0.0;
    for (size_t i = 0; i < xd.size(); ++i) l += dy[i] * std::min(std::max(xd[i], 0.0), alpha_d[0]);
    return l;
  };
  const std::vector<double> fd_x = testing::CentralDifferences(xd, loss, 1e-4);
  const std::vector<double> fd_alpha = testing::CentralDifferences(alpha_d, loss, 1e-4);
  std::vector<float> dx(x.size());
  double dalpha = 0.0;
  PactBackward(x.data(), dy.data(), x.size(), alpha, dx.data(), &dalpha, nullptr);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(dx[i], fd_x[i], 1e-9) << "x = " << x[i];
  EXPECT_NEAR(dalpha, fd_alpha[0], 1e-9);
}

// On several blocks: dx element by element and dalpha against a plain double loop (the blocked
// sum adds the same terms in another order: within 1e-12 of their absolute sum), and the same
// bits for any pool.
TEST(PactTest, BlocksMatchALoopForAnyPool) {
  std::mt19937 rng(1125);
  const size_t n = 5 * 8192 + 31;
  const std::vector<float> x = testing::UniformFloats(n, -1.0f, 3.0f, rng);
  const std::vector<float> dy = testing::UniformFloats(n, -1.0f, 1.0f, rng);
  const float alpha = 1.7f;
  std::vector<float> want_dx(n);
  double want_dalpha = 0.0, magnitude = 0.0;
  for (size_t i = 0; i < n; ++i) {
    want_dx[i] = (x[i] >= 0.0f && x[i] < alpha) ? dy[i] : 0.0f;
    if (x[i] >= alpha) {
      want_dalpha += dy[i];
      magnitude += std::fabs(dy[i]);
    }
  }
  std::vector<float> base_dx(n);
  double base_dalpha = 0.0;
  PactBackward(x.data(), dy.data(), n, alpha, base_dx.data(), &base_dalpha, nullptr);
  EXPECT_TRUE(testing::BitIdentical(base_dx, want_dx));
  EXPECT_NEAR(base_dalpha, want_dalpha, 1e-12 * magnitude);
  testing::ThreadPools pools;
  for (const auto& [name, pool] : pools.All()) {
    std::vector<float> dx(n);
    double dalpha = 0.0;
    PactBackward(x.data(), dy.data(), n, alpha, dx.data(), &dalpha, pool);
    EXPECT_TRUE(testing::BitIdentical(dx, base_dx)) << name;
    EXPECT_EQ(dalpha, base_dalpha) << name;
  }
}

TEST(FakeQuantGradTorchTest, MatchesPyTorch) {
  auto cases = testing::RunTorchCases("fake_quant");
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 6u * 13u);  // per range: 2 STE, 7 + 2 LSQ, 2 LSQ term cases
  double worst = 0;
  size_t exact_terms = 0, clipped = 0;
  for (const auto& [name, c] : *cases) {
    SCOPED_TRACE(name);
    const std::vector<int64_t> range = c.Ints("range");
    const int32_t qmin = static_cast<int32_t>(range[0]), qmax = static_cast<int32_t>(range[1]);
    const std::vector<float> x = c.Floats("x"), dy = c.Floats("dy");
    const std::vector<float> want_y = c.Floats("y"), want_dx = c.Floats("dx");
    const std::vector<float> scales = c.Floats("scale");
    std::vector<float> y(x.size()), dx(x.size());
    if (name.rfind("ste_", 0) == 0) {
      std::vector<int32_t> zero_points;
      for (int64_t z : c.Ints("zero_point")) zero_points.push_back(static_cast<int32_t>(z));
      std::vector<uint8_t> mask(x.size());
      if (name.rfind("ste_tensor", 0) == 0) {
        kernels::FakeQuantize(x.data(), x.size(),
                              kernels::AffineParams{scales[0], zero_points[0], qmin, qmax},
                              y.data(), mask.data());
      } else {
        kernels::FakeQuantizePerChannel(
            x.data(), Dims(c.Shape("x"), static_cast<size_t>(c.Ints("axis")[0])),
            kernels::PerChannelAffineParams{scales.data(), zero_points.data(), qmin, qmax},
            y.data(), mask.data());
      }
      FakeQuantSteBackward(mask.data(), dy.data(), x.size(), dx.data(), nullptr);
      for (uint8_t m : mask) clipped += m == 0 ? 1 : 0;
      ExpectEqualValues("y", y, want_y);
      ExpectEqualValues("dx", dx, want_dx);
      continue;
    }
    const std::vector<float> zero_points = c.Floats("zero_point");
    const float grad_factor = static_cast<float>(c.Scalar("grad_factor"));
    const std::vector<float> want_dscale = c.Floats("dscale");
    const std::vector<float> want_dzero_point = c.Floats("dzero_point");
    if (name.rfind("lsq_tensor_terms", 0) == 0) {  // one element per PyTorch call
      std::vector<float> ds(x.size()), dz(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        const LsqElement e =
            PerTensorElement(x[i], dy[i], scales[i], zero_points[i], qmin, qmax, grad_factor);
        y[i] = e.y;
        dx[i] = e.dx;
        ds[i] = e.dscale;
        dz[i] = e.dzero_point;
      }
      ExpectEqualValues("y", y, want_y);
      ExpectEqualValues("dx", dx, want_dx);
      ExpectEqualValues("dscale", ds, want_dscale);
      ExpectEqualValues("dzero_point", dz, want_dzero_point);
      exact_terms += x.size();
      continue;
    }
    const bool per_tensor = name.rfind("lsq_tensor", 0) == 0;
    const kernels::ChannelDims dims =
        per_tensor ? kernels::ChannelDims{1, 1, x.size()}
                   : Dims(c.Shape("x"), static_cast<size_t>(c.Ints("axis")[0]));
    const LsqParams params{scales.data(), zero_points.data(), qmin, qmax, grad_factor};
    std::vector<float> ds(dims.channels), dz(dims.channels);
    if (per_tensor) {
      LsqPerTensorForward(x.data(), x.size(), params, y.data(), nullptr);
      LsqPerTensorBackward(x.data(), dy.data(), x.size(), params, dx.data(), ds.data(), dz.data(),
                           nullptr);
    } else {
      LsqPerChannelForward(x.data(), dims, params, y.data(), nullptr);
      LsqPerChannelBackward(x.data(), dy.data(), dims, params, dx.data(), ds.data(), dz.data(),
                            nullptr);
    }
    ExpectEqualValues("y", y, want_y);
    ExpectEqualValues("dx", dx, want_dx);
    for (float d : dx) clipped += d == 0.0f ? 1 : 0;
    if (name.rfind("lsq_channel_terms", 0) == 0) {  // one element per channel: single terms
      ExpectEqualValues("dscale", ds, want_dscale);
      ExpectEqualValues("dzero_point", dz, want_dzero_point);
      exact_terms += x.size();
      continue;
    }
    std::vector<double> tol_scale, tol_zero_point;
    SumTolerances(dy, dims, scales, zero_points, qmin, qmax, grad_factor, &tol_scale,
                  &tol_zero_point);
    worst = std::max(worst, ExpectWithin("dscale", ds, want_dscale, tol_scale));
    worst = std::max(worst, ExpectWithin("dzero_point", dz, want_dzero_point, tol_zero_point));
  }
  // Not vacuous: the data clip, and many single terms were compared.
  EXPECT_GT(clipped, 1000u);
  EXPECT_EQ(exact_terms, 6u * (256 + 64));
  std::printf("LSQ dscale/dzero_point vs PyTorch: worst error / bound = %.3g\n", worst);
}

}  // namespace
}  // namespace qlab::train
