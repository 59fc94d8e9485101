// Tests of train/ops/pool_grad.h:
//   1. the double references' backward passes (pool_grad_ref.h) equal central finite
//      differences of their forward passes (max pool on distinct values, so no window has a tie);
//   2. the float kernels against the references: max pool forward (values and argmax) exactly,
//      backward passes within the float rounding of their sums (bounds below);
//   3. bit-identity with no pool, 1 and 2 threads;
//   4. against PyTorch 1.13 in float32 (F.max_pool2d with indices, F.avg_pool2d with and without
//      count_include_pad and ceil_mode, and F.avg_pool2d over the whole image as the global
//      pool): outputs, indices and input gradients EXACTLY equal, since the kernels add the same
//      float values in the same order as PyTorch's CPU kernels.
#include "train/ops/pool_grad.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "kernels/fp32/fp32_pool.h"
#include "train/ops/ops_test_util.h"
#include "train/ops/pool_grad_ref.h"
#include "train/ops/torch_cases.h"

namespace qlab::train {
namespace {

using kernels::Fp32PoolGeometry;
using testing::CentralDifferences;
using testing::Dot;
using testing::ExpectEqualValues;
using testing::ExpectWithin;
using testing::kFloatRoundoff;
using testing::ToDouble;

constexpr uint32_t kSeed = 20240803;

// Pooling is piecewise linear: away from ties, central differences are exact up to the rounding
// of the two double losses (~1e-16 * sum|y r| / h ~ 1e-10 for h = 1e-5). Max-pool inputs are
// spaced 0.01 apart, so a step of h never changes a window's maximum. A wrong index or divisor
// moves a gradient by a whole share (>= 1/9 of a unit): 1e-9 separates them.
constexpr double kStep = 1e-5;
constexpr double kFiniteDifferenceTolerance = 1e-9;

// PyTorch's output size: floor or ceil of (in + 2 pad - kernel) / stride, plus one; in ceil
// mode the last window must start inside the input or the left padding.
size_t OutSize(size_t in, size_t kernel, size_t stride, size_t pad, bool ceil_mode) {
  const size_t span = in + 2 * pad - kernel;
  size_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

Fp32PoolGeometry Geometry(size_t batch, size_t in_h, size_t in_w, size_t channels, size_t kernel,
                          size_t stride, size_t pad, bool ceil_mode, bool count_include_pad) {
  Fp32PoolGeometry g;
  g.batch = batch;
  g.in_h = in_h;
  g.in_w = in_w;
  g.channels = channels;
  g.kernel_h = g.kernel_w = kernel;
  g.stride_h = g.stride_w = stride;
  g.pad_h = g.pad_w = pad;
  g.out_h = OutSize(in_h, kernel, stride, pad, ceil_mode);
  g.out_w = OutSize(in_w, kernel, stride, pad, ceil_mode);
  g.count_include_pad = count_include_pad;
  return g;
}

std::vector<Fp32PoolGeometry> Geometries() {
  return {Geometry(2, 7, 9, 3, 3, 2, 1, false, true),   // ResNet stem's 3x3/2 pad 1
          Geometry(1, 5, 6, 2, 2, 2, 0, true, true),    // ceil mode hangs over the edge
          Geometry(1, 6, 5, 4, 3, 1, 1, false, false),  // stride 1: up to 9 windows per pixel
          Geometry(3, 7, 8, 5, 3, 2, 1, true, false)};  // ceil mode + padding, pad excluded
}

std::string Describe(const Fp32PoolGeometry& g) {
  return absl::StrCat(g.batch, "x", g.in_h, "x", g.in_w, "x", g.channels, " k", g.kernel_h, " s",
                      g.stride_h, " p", g.pad_h, " -> ", g.out_h, "x", g.out_w,
                      g.count_include_pad ? " incl" : " excl");
}

size_t InputSize(const Fp32PoolGeometry& g) { return g.batch * g.in_h * g.in_w * g.channels; }
size_t OutputSize(const Fp32PoolGeometry& g) { return g.batch * g.out_h * g.out_w * g.channels; }

// Distinct values 0.01 apart in random order, centered on 0.
std::vector<double> DistinctValues(size_t n, std::mt19937& rng) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.01 * (static_cast<double>(order[i]) - n / 2.0);
  return v;
}

TEST(PoolGradRefTest, MaxPoolBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed);
  for (const Fp32PoolGeometry& g : Geometries()) {
    SCOPED_TRACE(Describe(g));
    std::vector<double> x = DistinctValues(InputSize(g), rng);
    const std::vector<double> r = testing::UniformDoubles(OutputSize(g), -1, 1, rng);
    std::vector<double> y(OutputSize(g)), dx(InputSize(g));
    std::vector<int32_t> argmax(OutputSize(g));
    const auto loss = [&] {
      MaxPoolForwardRef(g, x.data(), y.data(), argmax.data());
      return Dot(y, r);
    };
    loss();
    MaxPoolBackwardRef(g, argmax.data(), r.data(), dx.data());
    ExpectWithin("dx", dx, CentralDifferences(x, loss, kStep),
                 std::vector<double>(dx.size(), kFiniteDifferenceTolerance));
  }
}

TEST(PoolGradRefTest, AvgPoolBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 1);
  for (const Fp32PoolGeometry& g : Geometries()) {
    SCOPED_TRACE(Describe(g));
    std::vector<double> x = testing::UniformDoubles(InputSize(g), -1, 1, rng);
    const std::vector<double> r = testing::UniformDoubles(OutputSize(g), -1, 1, rng);
    std::vector<double> y(OutputSize(g)), dx(InputSize(g));
    const auto loss = [&] {
      AvgPoolForwardRef(g, x.data(), y.data());
      return Dot(y, r);
    };
    AvgPoolBackwardRef(g, r.data(), dx.data());
    ExpectWithin("dx", dx, CentralDifferences(x, loss, kStep),
                 std::vector<double>(dx.size(), kFiniteDifferenceTolerance));
  }
}

TEST(PoolGradRefTest, GlobalAvgPoolBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 2);
  const size_t batch = 3, pixels = 7 * 5, channels = 4;
  std::vector<double> x = testing::UniformDoubles(batch * pixels * channels, -1, 1, rng);
  const std::vector<double> r = testing::UniformDoubles(batch * channels, -1, 1, rng);
  std::vector<double> y(r.size()), dx(x.size());
  const auto loss = [&] {
    GlobalAvgPoolForwardRef(batch, pixels, channels, x.data(), y.data());
    return Dot(y, r);
  };
  GlobalAvgPoolBackwardRef(batch, pixels, channels, r.data(), dx.data());
  ExpectWithin("dx", dx, CentralDifferences(x, loss, kStep),
               std::vector<double>(dx.size(), kFiniteDifferenceTolerance));
}

std::vector<double> Abs(const std::vector<float>& v) {
  std::vector<double> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

// pool_grad.h's max-pool rule written out per channel, NaNs included: scan the window's real
// pixels in (kh, kw) order from -inf at the first one; a strictly greater value or a NaN takes
// over.
void MaxPoolForwardRule(const Fp32PoolGeometry& g, const std::vector<float>& x,
                        std::vector<float>& y, std::vector<int32_t>& argmax) {
  const auto range = [](size_t o, size_t stride, size_t pad, size_t kernel, size_t size) {
    const int64_t start = static_cast<int64_t>(o * stride) - static_cast<int64_t>(pad);
    return std::make_pair(
        std::max<int64_t>(start, 0),
        std::min(start + static_cast<int64_t>(kernel), static_cast<int64_t>(size)));
  };
  const size_t c = g.channels;
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t oh = 0; oh < g.out_h; ++oh)
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const auto [h0, h1] = range(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
        const auto [w0, w1] = range(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
        for (size_t ch = 0; ch < c; ++ch) {
          const size_t o = ((b * g.out_h + oh) * g.out_w + ow) * c + ch;
          y[o] = -std::numeric_limits<float>::infinity();
          argmax[o] = static_cast<int32_t>(((b * g.in_h + h0) * g.in_w + w0) * c + ch);
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) {
              const size_t i = ((b * g.in_h + h) * g.in_w + w) * c + ch;
              if (x[i] > y[o] || std::isnan(x[i])) {
                y[o] = x[i];
                argmax[o] = static_cast<int32_t>(i);
              }
            }
        }
      }
}

// The forward's Highway kernel (train/ops/max_pool_forward.h) keeps whole vectors of channels in
// registers and takes the rest one by one: on every compiled target this CPU supports, channel
// counts below, at and above a vector (ResNet's 64 too), with ties, NaNs and -inf, it must give
// the rule's values and argmax exactly.
TEST(PoolGradTest, MaxPoolForwardOnEveryTarget) {
  const std::vector<Fp32PoolGeometry> geometries = {
      Geometry(2, 9, 7, 64, 3, 2, 1, false, true),  // ResNet's stem pool, 64 channels
      Geometry(1, 6, 5, 37, 3, 1, 1, false, true),  // odd channels: vectors + a tail
      Geometry(3, 7, 8, 16, 3, 2, 1, true, true),   // exactly one AVX-512 vector, ceil mode
      Geometry(1, 5, 6, 5, 2, 2, 0, true, true)};   // fewer channels than any vector
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    std::mt19937 rng(kSeed + 11);
    for (const Fp32PoolGeometry& g : geometries) {
      for (int variant = 0; variant < 3; ++variant) {  // plain, ties, NaNs and -inf
        SCOPED_TRACE(Describe(g) + " variant " + std::to_string(variant));
        std::vector<float> x = testing::NormalFloats(InputSize(g), 0.0f, 1.0f, rng);
        if (variant >= 1) {
          for (float& v : x) v = std::round(v * 1.5f);
        }
        if (variant == 2) {
          std::uniform_int_distribution<size_t> at(0, x.size() - 1);
          for (size_t k = 0; k < x.size() / 20; ++k) x[at(rng)] = std::nanf("");
          for (size_t k = 0; k < x.size() / 20; ++k)
            x[at(rng)] = -std::numeric_limits<float>::infinity();
        }
        std::vector<float> y(OutputSize(g)), want_y(OutputSize(g));
        std::vector<int32_t> argmax(OutputSize(g)), want_argmax(OutputSize(g));
        MaxPoolForward(g, x.data(), y.data(), argmax.data(), nullptr);
        MaxPoolForwardRule(g, x, want_y, want_argmax);
        int failures = 0;
        for (size_t o = 0; o < y.size(); ++o) {
          const bool same_value = std::isnan(want_y[o]) ? std::isnan(y[o]) : y[o] == want_y[o];
          if ((!same_value || argmax[o] != want_argmax[o]) && ++failures <= 5) {
            ADD_FAILURE() << "output " << o << ": got " << y[o] << " at " << argmax[o] << ", want "
                          << want_y[o] << " at " << want_argmax[o];
          }
        }
        EXPECT_EQ(failures, 0);
      }
    }
  }
  hwy::SetSupportedTargetsForTest(0);  // back to the CPU's own targets
}

TEST(PoolGradTest, KernelsMatchReference) {
  std::mt19937 rng(kSeed + 3);
  for (const Fp32PoolGeometry& g : Geometries()) {
    for (bool ties : {false, true}) {
      SCOPED_TRACE(Describe(g) + (ties ? " ties" : ""));
      std::vector<float> x = testing::NormalFloats(InputSize(g), 0.0f, 1.0f, rng);
      if (ties) {  // few distinct values: the first maximum in scan order must win
        for (float& v : x) v = std::round(v * 1.5f);
      }
      const std::vector<float> dy = testing::NormalFloats(OutputSize(g), 0.0f, 1.0f, rng);

      std::vector<float> y(OutputSize(g)), want_y(OutputSize(g));
      std::vector<int32_t> argmax(OutputSize(g)), want_argmax(OutputSize(g));
      MaxPoolForward(g, x.data(), y.data(), argmax.data(), nullptr);
      MaxPoolForwardRef(g, x.data(), want_y.data(), want_argmax.data());
      ExpectEqualValues("max y", y, want_y);
      ExpectEqualValues("max argmax", argmax, want_argmax);

      // Float sums of at most kernel_h * kernel_w terms (the windows holding one pixel), each
      // addition erring by <= u * (sum of |terms|): (k^2) u sum|terms|; average pooling rounds
      // each term's division once more: (k^2 + 1) u. sum|terms| is the backward of |dy|.
      const double k2 = static_cast<double>(g.kernel_h * g.kernel_w);
      std::vector<double> magnitude(InputSize(g)), tol(InputSize(g));
      std::vector<float> dx(InputSize(g), 7.0f);  // garbage: must be overwritten
      std::vector<double> want_dx(InputSize(g));
      MaxPoolBackward(g, argmax.data(), dy.data(), dx.data(), nullptr);
      MaxPoolBackwardRef(g, want_argmax.data(), ToDouble(dy).data(), want_dx.data());
      MaxPoolBackwardRef(g, want_argmax.data(), Abs(dy).data(), magnitude.data());
      for (size_t i = 0; i < tol.size(); ++i) tol[i] = k2 * kFloatRoundoff * magnitude[i];
      ExpectWithin("max dx", dx, want_dx, tol);

      std::fill(dx.begin(), dx.end(), 7.0f);
      AvgPoolBackward(g, dy.data(), dx.data(), nullptr);
      AvgPoolBackwardRef(g, ToDouble(dy).data(), want_dx.data());
      AvgPoolBackwardRef(g, Abs(dy).data(), magnitude.data());
      for (size_t i = 0; i < tol.size(); ++i) tol[i] = (k2 + 1) * kFloatRoundoff * magnitude[i];
      ExpectWithin("avg dx", dx, want_dx, tol);
    }
  }
  // Global average: one correctly rounded division of dy by the exact float(pixels): u |dx|.
  const size_t batch = 3, pixels = 7 * 5, channels = 6;
  const std::vector<float> dy = testing::NormalFloats(batch * channels, 0.0f, 1.0f, rng);
  std::vector<float> dx(batch * pixels * channels);
  std::vector<double> want(dx.size()), tol(dx.size());
  GlobalAvgPoolBackward(batch, pixels, channels, dy.data(), dx.data());
  GlobalAvgPoolBackwardRef(batch, pixels, channels, ToDouble(dy).data(), want.data());
  for (size_t i = 0; i < tol.size(); ++i) tol[i] = kFloatRoundoff * std::fabs(want[i]);
  ExpectWithin("global dx", dx, want, tol);
}

TEST(PoolGradTest, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(kSeed + 4);
  const Fp32PoolGeometry g = Geometry(5, 16, 16, 16, 3, 2, 1, false, true);
  const std::vector<float> x = testing::NormalFloats(InputSize(g), 0.0f, 1.0f, rng);
  const std::vector<float> dy = testing::NormalFloats(OutputSize(g), 0.0f, 1.0f, rng);
  const auto run = [&](pthreadpool_t pool) {
    std::vector<float> y(OutputSize(g)), dx_max(InputSize(g)), dx_avg(InputSize(g));
    std::vector<int32_t> argmax(OutputSize(g));
    MaxPoolForward(g, x.data(), y.data(), argmax.data(), pool);
    MaxPoolBackward(g, argmax.data(), dy.data(), dx_max.data(), pool);
    AvgPoolBackward(g, dy.data(), dx_avg.data(), pool);
    std::vector<float> all = y;
    for (int32_t i : argmax) all.push_back(static_cast<float>(i));
    all.insert(all.end(), dx_max.begin(), dx_max.end());
    all.insert(all.end(), dx_avg.begin(), dx_avg.end());
    return all;
  };
  testing::ThreadPools pools;
  const std::vector<float> base = run(nullptr);
  for (const auto& [name, pool] : pools.All()) {
    EXPECT_TRUE(testing::BitIdentical(run(pool), base)) << name;
  }
}

TEST(PoolGradTorchTest, MatchesPyTorchExactly) {
  auto cases = testing::RunTorchCases("pool");
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 10u);
  for (const auto& [name, c] : *cases) {
    SCOPED_TRACE(name);
    const std::vector<int64_t> in = c.Shape("x"), out = c.Shape("y");
    const std::vector<int64_t> geometry = c.Ints("geometry");
    Fp32PoolGeometry g;
    g.batch = static_cast<size_t>(in[0]);
    g.in_h = static_cast<size_t>(in[1]);
    g.in_w = static_cast<size_t>(in[2]);
    g.channels = static_cast<size_t>(in[3]);
    g.kernel_h = static_cast<size_t>(geometry[0]);
    g.kernel_w = static_cast<size_t>(geometry[1]);
    g.stride_h = static_cast<size_t>(geometry[2]);
    g.stride_w = static_cast<size_t>(geometry[3]);
    g.pad_h = static_cast<size_t>(geometry[4]);
    g.pad_w = static_cast<size_t>(geometry[5]);
    g.out_h = static_cast<size_t>(geometry[6]);
    g.out_w = static_cast<size_t>(geometry[7]);
    g.count_include_pad = geometry[8] != 0;
    ASSERT_EQ(out[1], static_cast<int64_t>(g.out_h));
    ASSERT_EQ(out[2], static_cast<int64_t>(g.out_w));
    const std::vector<float> x = c.Floats("x"), dy = c.Floats("dy");
    const std::vector<float> want_y = c.Floats("y"), want_dx = c.Floats("dx");
    std::vector<float> y(OutputSize(g)), dx(InputSize(g), 7.0f);
    if (name.rfind("max", 0) == 0) {
      std::vector<int32_t> argmax(OutputSize(g));
      MaxPoolForward(g, x.data(), y.data(), argmax.data(), nullptr);
      MaxPoolBackward(g, argmax.data(), dy.data(), dx.data(), nullptr);
      // PyTorch's index is h * in_w + w within the image plane.
      const std::vector<int64_t> want_index = c.Ints("indices");
      std::vector<int64_t> index(argmax.size());
      const size_t image = g.in_h * g.in_w * g.channels;
      for (size_t o = 0; o < argmax.size(); ++o) {
        const size_t i = static_cast<size_t>(argmax[o]);
        EXPECT_EQ(i % g.channels, o % g.channels) << "argmax in another channel at " << o;
        index[o] = static_cast<int64_t>((i % image) / g.channels);
      }
      ExpectEqualValues("indices", index, want_index);
    } else if (name == "global") {
      const size_t pixels = g.in_h * g.in_w;
      kernels::Fp32GlobalAvgPoolNhwc(g.batch, pixels, g.channels, x.data(), y.data());
      GlobalAvgPoolBackward(g.batch, pixels, g.channels, dy.data(), dx.data());
    } else {
      kernels::Fp32AvgPool2dNhwc(g, x.data(), y.data(), nullptr);
      AvgPoolBackward(g, dy.data(), dx.data(), nullptr);
    }
    ExpectEqualValues("y", y, want_y);
    ExpectEqualValues("dx", dx, want_dx);
  }
}

}  // namespace
}  // namespace qlab::train
