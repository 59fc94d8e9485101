// Tests of train/ops/eltwise_grad.h: the double references' backward passes against central
// finite differences of their forward passes (loss = sum(y * r)); the float kernels against the
// references, exactly (every output is an input value, zero, or one float addition evaluated
// the same way, so no tolerance); bit-identity across thread counts.
#include "train/ops/eltwise_grad.h"

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "train/ops/eltwise_grad_ref.h"
#include "train/ops/ops_test_util.h"

namespace qlab::train {
namespace {

using testing::CentralDifferences;
using testing::Dot;
using testing::ExpectEqualValues;
using testing::ExpectWithin;
using testing::ToDouble;

constexpr uint32_t kSeed = 20240802;

// These ops are piecewise linear, so central differences are exact up to the rounding of the
// two double losses (~1e-16 * sum|y r| / h ~ 1e-11 for h = 1e-5) as long as no input is within
// h of a kink (ReLU inputs are kept >= 0.05 away from 0). A wrong index moves a whole unit of
// gradient: 1e-9 separates the two by orders of magnitude.
constexpr double kStep = 1e-5;
constexpr double kFiniteDifferenceTolerance = 1e-9;

std::vector<double> Tolerance(size_t n) {
  return std::vector<double>(n, kFiniteDifferenceTolerance);
}

// Values in [-2, 2] at least 0.05 away from 0.
std::vector<float> AwayFromZero(size_t n, std::mt19937& rng) {
  std::vector<float> v = testing::UniformFloats(n, 0.05f, 2.0f, rng);
  std::bernoulli_distribution negative(0.5);
  for (float& x : v) x = negative(rng) ? -x : x;
  return v;
}

TEST(EltwiseGradRefTest, ReluBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed);
  for (size_t n : {1, 7, 33}) {
    std::vector<double> x = ToDouble(AwayFromZero(n, rng));
    const std::vector<double> r = testing::UniformDoubles(n, -1, 1, rng);
    std::vector<double> y(n), dx(n);
    const auto loss = [&] {
      ReluForwardRef(x.data(), n, y.data());
      return Dot(y, r);
    };
    ReluBackwardRef(x.data(), r.data(), n, dx.data());
    ExpectWithin(absl::StrCat("n=", n), dx, CentralDifferences(x, loss, kStep), Tolerance(n));
  }
}

std::vector<SliceGeometry> SliceShapes() {
  // ResNet option A (x[:, :, ::2, ::2]) on odd and even sizes, and an offset start.
  return {SliceGeometry{2, 5, 7, 3, 0, 2, 0, 2, 3, 4}, SliceGeometry{1, 8, 8, 4, 0, 2, 0, 2, 4, 4},
          SliceGeometry{3, 7, 5, 2, 1, 3, 2, 1, 2, 3}};
}

std::string Describe(const SliceGeometry& g) {
  return absl::StrCat(g.batch, "x", g.in_h, "x", g.in_w, "x", g.channels, " begin ", g.begin_h, ",",
                      g.begin_w, " step ", g.step_h, ",", g.step_w);
}

TEST(EltwiseGradRefTest, StridedSliceBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 1);
  for (const SliceGeometry& g : SliceShapes()) {
    const size_t in = g.batch * g.in_h * g.in_w * g.channels;
    const size_t out = g.batch * g.out_h * g.out_w * g.channels;
    std::vector<double> x = testing::UniformDoubles(in, -1, 1, rng);
    const std::vector<double> r = testing::UniformDoubles(out, -1, 1, rng);
    std::vector<double> y(out), dx(in);
    const auto loss = [&] {
      StridedSliceForwardRef(g, x.data(), y.data());
      return Dot(y, r);
    };
    StridedSliceBackwardRef(g, r.data(), dx.data());
    ExpectWithin(Describe(g), dx, CentralDifferences(x, loss, kStep), Tolerance(in));
  }
}

TEST(EltwiseGradRefTest, ChannelPadBackwardMatchesFiniteDifferences) {
  std::mt19937 rng(kSeed + 2);
  for (const auto& [rows, channels, before, after] :
       std::vector<std::array<size_t, 4>>{{5, 3, 2, 1}, {7, 16, 8, 8}, {1, 1, 0, 3}}) {
    const size_t width = before + channels + after;
    std::vector<double> x = testing::UniformDoubles(rows * channels, -1, 1, rng);
    const std::vector<double> r = testing::UniformDoubles(rows * width, -1, 1, rng);
    std::vector<double> y(rows * width), dx(rows * channels);
    const auto loss = [&] {
      ChannelPadForwardRef(rows, channels, before, after, x.data(), y.data());
      return Dot(y, r);
    };
    ChannelPadBackwardRef(rows, channels, before, after, r.data(), dx.data());
    ExpectWithin(absl::StrCat(rows, "x", channels, " pad ", before, "+", after), dx,
                 CentralDifferences(x, loss, kStep), Tolerance(x.size()));
  }
}

TEST(EltwiseGradTest, ReluAndAccumulateMatchReference) {
  std::mt19937 rng(kSeed + 3);
  for (size_t n : {1, 3, 17, 16384, 40001}) {
    SCOPED_TRACE(absl::StrCat("n=", n));
    std::vector<float> x = testing::UniformFloats(n, -1, 1, rng);
    x[0] = 0.0f;  // the kink itself: gradient 0, as PyTorch
    const std::vector<float> dy = testing::UniformFloats(n, -1, 1, rng);
    std::vector<float> y(n), dx(n), want_y(n), want_dx(n);
    ReluForward(x.data(), n, y.data(), nullptr);
    ReluBackward(y.data(), dy.data(), n, dx.data(), nullptr);
    ReluForwardRef(x.data(), n, want_y.data());
    ReluBackwardRef(x.data(), dy.data(), n, want_dx.data());
    ExpectEqualValues("relu y", y, want_y);
    ExpectEqualValues("relu dx", dx, want_dx);
    // In place: dx over dy.
    std::vector<float> in_place = dy;
    ReluBackward(y.data(), in_place.data(), n, in_place.data(), nullptr);
    ExpectEqualValues("relu dx in place", in_place, want_dx);

    std::vector<float> dst = testing::UniformFloats(n, -1, 1, rng), want = dst;
    for (size_t i = 0; i < n; ++i) want[i] += dy[i];
    Accumulate(dy.data(), n, dst.data(), nullptr);
    ExpectEqualValues("accumulate", dst, want);
  }
}

TEST(EltwiseGradTest, SliceAndPadMatchReference) {
  std::mt19937 rng(kSeed + 4);
  for (const SliceGeometry& g : SliceShapes()) {
    SCOPED_TRACE(Describe(g));
    const size_t in = g.batch * g.in_h * g.in_w * g.channels;
    const size_t out = g.batch * g.out_h * g.out_w * g.channels;
    const std::vector<float> x = testing::UniformFloats(in, -1, 1, rng);
    const std::vector<float> dy = testing::UniformFloats(out, -1, 1, rng);
    std::vector<float> y(out), want_y(out);
    // dx starts as garbage: the backward must overwrite every element.
    std::vector<float> dx(in, 7.0f), want_dx(in);
    StridedSliceForward(g, x.data(), y.data());
    StridedSliceBackward(g, dy.data(), dx.data());
    StridedSliceForwardRef(g, x.data(), want_y.data());
    StridedSliceBackwardRef(g, dy.data(), want_dx.data());
    ExpectEqualValues("slice y", y, want_y);
    ExpectEqualValues("slice dx", dx, want_dx);
  }
  // The option-A shortcut of a CIFAR ResNet stage: 16 -> 32 channels, 8 zero channels each side.
  const size_t rows = 2 * 16 * 16, channels = 16, before = 8, after = 8;
  const std::vector<float> x = testing::UniformFloats(rows * channels, -1, 1, rng);
  const std::vector<float> dy =
      testing::UniformFloats(rows * (before + channels + after), -1, 1, rng);
  std::vector<float> y(dy.size(), 7.0f), want_y(dy.size()), dx(x.size()), want_dx(x.size());
  ChannelPadForward(rows, channels, before, after, x.data(), y.data());
  ChannelPadBackward(rows, channels, before, after, dy.data(), dx.data());
  ChannelPadForwardRef(rows, channels, before, after, x.data(), want_y.data());
  ChannelPadBackwardRef(rows, channels, before, after, dy.data(), want_dx.data());
  ExpectEqualValues("pad y", y, want_y);
  ExpectEqualValues("pad dx", dx, want_dx);
}

TEST(EltwiseGradTest, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(kSeed + 5);
  const size_t n = 3 * 16384 + 5;  // 4 chunks, the last one partial
  const std::vector<float> x = testing::UniformFloats(n, -1, 1, rng);
  const std::vector<float> dy = testing::UniformFloats(n, -1, 1, rng);
  const std::vector<float> dst0 = testing::UniformFloats(n, -1, 1, rng);
  const auto run = [&](pthreadpool_t pool) {
    std::vector<float> y(n), dx(n), dst = dst0;
    ReluForward(x.data(), n, y.data(), pool);
    ReluBackward(y.data(), dy.data(), n, dx.data(), pool);
    Accumulate(dx.data(), n, dst.data(), pool);
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), dst.begin(), dst.end());
    return y;
  };
  testing::ThreadPools pools;
  const std::vector<float> base = run(nullptr);
  for (const auto& [name, pool] : pools.All()) {
    EXPECT_TRUE(testing::BitIdentical(run(pool), base)) << name;
  }
}

}  // namespace
}  // namespace qlab::train
