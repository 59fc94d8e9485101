// Tests of kernels/fp32/fp32_gemm_double.h on every Highway target compiled in and supported by
// this CPU: outputs must equal, bit for bit, the scalar oracle's double sum (fp32_ref.h's
// Fp32GemmRef / Fp32Conv2dNhwcRef without bias, residual or ReLU: the same products summed in
// double in the same K order) rounded to float and put through the float epilogue. No tolerance:
// the kernels promise exactly that arithmetic, on every target and thread count.
//
// Shapes: M around the 8-, 2- and 1-row tiles, N around the 16-column panels, K from 1 to 4608,
// row strides wider than the rows (with sentinels in the gaps), every epilogue option, ResNet
// convolution geometries at small spatial sizes (the 7x7 stride-2 RGB stem, 3x3 with and without
// stride, 1x1 downsampling), padding and dilation corners, 1 and 2 threads.

#include <pthreadpool.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/targets.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/fp32/fp32_gemm.h"
#include "kernels/fp32/fp32_gemm_double.h"
#include "kernels/fp32/fp32_ref.h"
#include "kernels/threadpool/pthreadpool_ptr.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261123;
constexpr float kSentinel = -12345.5f;  // in C's row gaps: the kernels write exactly M x N

using PoolPtr = kernels::PthreadpoolPtr;

// Values of mixed magnitudes and signs, so that float summation would round differently.
std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-6, 6);
  std::vector<float> v(size);
  for (float& x : v) x = std::ldexp(mantissa(rng), exponent(rng));
  return v;
}

// The kernels' promise for one output: float(double sum), + bias, + residual, ReLU, in float.
float Epilogue(double sum, const float* bias, size_t col, const float* residual, bool relu) {
  float y = static_cast<float>(sum);
  y += bias != nullptr ? bias[col] : 0.0f;
  if (residual != nullptr) y += *residual;
  return relu ? std::max(y, 0.0f) : y;
}

std::string Target() { return Fp32GemmDoubleTargetName(); }

struct GemmCase {
  size_t m, n, k, lda_pad, ldc_pad, threads;
  bool bias, residual, relu;
  uint32_t seed;
};

void TestGemm(const GemmCase& t) {
  std::ostringstream name;
  name << "gemm target=" << Target() << " m=" << t.m << " n=" << t.n << " k=" << t.k
       << " lda+" << t.lda_pad << " ldc+" << t.ldc_pad << " bias=" << t.bias
       << " residual=" << t.residual << " relu=" << t.relu << " threads=" << t.threads
       << " seed=" << t.seed;
  SCOPED_TRACE(name.str());
  std::mt19937 rng(t.seed);
  const size_t lda = t.k + t.lda_pad, ldc = t.n + t.ldc_pad;
  const std::vector<float> a = RandomFloats(t.m * lda, rng);
  const std::vector<float> b = RandomFloats(t.k * t.n, rng);
  const std::vector<float> bias = RandomFloats(t.n, rng);
  const std::vector<float> residual = RandomFloats(t.m * t.n, rng);
  const Fp32PackedWeights packed = PackFp32Weights(b.data(), t.k, t.n, t.n, t.bias ? bias.data() : nullptr);
  Fp32Epilogue epilogue;
  epilogue.relu = t.relu;
  if (t.residual) {
    epilogue.residual = residual.data();
    epilogue.residual_stride = t.n;
  }
  std::vector<float> c(t.m * ldc, kSentinel);
  const PoolPtr pool = kernels::MakePthreadpool(t.threads);
  Fp32GemmDoubleAccumulation(a.data(), t.m, lda, packed, epilogue, c.data(), ldc, pool.get());

  std::vector<double> sums(t.m * t.n), magnitude(t.m * t.n);
  Fp32GemmRef(a.data(), t.m, t.k, lda, b.data(), t.n, t.n, nullptr, nullptr, 0, false,
              sums.data(), magnitude.data());
  size_t mismatches = 0;
  for (size_t i = 0; i < t.m; ++i) {
    for (size_t j = 0; j < ldc; ++j) {
      const float want = j >= t.n ? kSentinel
                                  : Epilogue(sums[i * t.n + j], t.bias ? bias.data() : nullptr, j,
                                             t.residual ? &residual[i * t.n + j] : nullptr, t.relu);
      if (c[i * ldc + j] != want && ++mismatches <= 5) {
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << c[i * ldc + j] << ", want " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

struct ConvCase {
  size_t batch, in_h, in_w, in_c, out_c, kernel, stride, pad, dilation, threads;
  bool residual, relu;
  uint32_t seed;
};

void TestConv(const ConvCase& t) {
  std::ostringstream name;
  name << "conv target=" << Target() << " batch=" << t.batch << " input=" << t.in_h << "x"
       << t.in_w << "x" << t.in_c << " out_c=" << t.out_c << " kernel=" << t.kernel
       << " stride=" << t.stride << " pad=" << t.pad << " dilation=" << t.dilation
       << " residual=" << t.residual << " relu=" << t.relu << " threads=" << t.threads
       << " seed=" << t.seed;
  SCOPED_TRACE(name.str());
  Fp32ConvGeometry g;
  g.batch = t.batch;
  g.in_h = t.in_h;
  g.in_w = t.in_w;
  g.in_channels = t.in_c;
  g.kernel_h = g.kernel_w = t.kernel;
  g.stride_h = g.stride_w = t.stride;
  g.pad_h = g.pad_w = t.pad;
  g.dilation_h = g.dilation_w = t.dilation;
  g.out_h = (t.in_h + 2 * t.pad - t.dilation * (t.kernel - 1) - 1) / t.stride + 1;
  g.out_w = (t.in_w + 2 * t.pad - t.dilation * (t.kernel - 1) - 1) / t.stride + 1;
  std::mt19937 rng(t.seed);
  const std::vector<float> input = RandomFloats(t.batch * t.in_h * t.in_w * t.in_c, rng);
  const std::vector<float> weight = RandomFloats(t.out_c * t.in_c * t.kernel * t.kernel, rng);
  const std::vector<float> bias = RandomFloats(t.out_c, rng);
  const size_t pixels = t.batch * g.out_h * g.out_w;
  const std::vector<float> residual = RandomFloats(pixels * t.out_c, rng);
  const Fp32PackedWeights packed =
      PackFp32ConvWeights(weight.data(), t.out_c, t.in_c, t.kernel, t.kernel, bias.data());
  Fp32Epilogue epilogue;
  epilogue.relu = t.relu;
  if (t.residual) {
    epilogue.residual = residual.data();
    epilogue.residual_stride = t.out_c;
  }
  std::vector<float> output(pixels * t.out_c, kSentinel);
  const PoolPtr pool = kernels::MakePthreadpool(t.threads);
  Fp32Conv2dNhwcDoubleAccumulation(g, input.data(), packed, epilogue, output.data(), pool.get());

  std::vector<double> sums(pixels * t.out_c), magnitude(pixels * t.out_c);
  Fp32Conv2dNhwcRef(input.data(), t.batch, t.in_h, t.in_w, t.in_c, weight.data(), t.out_c,
                    t.kernel, t.kernel, t.stride, t.stride, t.pad, t.pad, t.dilation, t.dilation,
                    g.out_h, g.out_w, nullptr, nullptr, false, sums.data(), magnitude.data());
  size_t mismatches = 0;
  for (size_t i = 0; i < pixels * t.out_c; ++i) {
    const float want = Epilogue(sums[i], bias.data(), i % t.out_c,
                                t.residual ? &residual[i] : nullptr, t.relu);
    if (output[i] != want && ++mismatches <= 5) {
      ADD_FAILURE() << "output[" << i << "] = " << output[i] << ", want " << want;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

class Fp32GemmDoubleTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(Fp32GemmDoubleTest);

TEST_P(Fp32GemmDoubleTest, ReportsTarget) {
  std::cout << "fp32 double-accumulation gemm dispatches to " << Target() << "\n";
  EXPECT_STREQ(Fp32GemmDoubleTargetName(), hwy::TargetName(GetParam()));
}

// The sum is formed in double: in float, 2^24 + 1 rounds back to 2^24 and the result is 0.
TEST_P(Fp32GemmDoubleTest, SumsInDouble) {
  const float a[3] = {16777216.0f, 1.0f, -16777216.0f};
  const float b[3] = {1.0f, 1.0f, 1.0f};
  const Fp32PackedWeights packed = PackFp32Weights(b, 3, 1, 1, nullptr);
  float c = kSentinel;
  Fp32GemmDoubleAccumulation(a, 1, 3, packed, Fp32Epilogue(), &c, 1, nullptr);
  EXPECT_EQ(c, 1.0f);
}

TEST_P(Fp32GemmDoubleTest, GemmShapesMatchOracleExactly) {
  uint32_t seed = kBaseSeed;
  for (size_t m : {1, 2, 3, 7, 8, 9, 16, 17, 31}) {
    for (size_t n : {1, 7, 15, 16, 17, 33, 64}) {
      for (size_t k : {1, 2, 17, 129, 576}) {
        ++seed;
        TestGemm({m, n, k, seed % 3, seed % 5 == 0 ? 3u : 0u, 1 + seed % 2, seed % 2 == 0,
                  seed % 3 == 0, seed % 4 < 2, seed});
      }
    }
  }
  TestGemm({17, 161, 4608, 1, 0, 2, true, true, true, ++seed});  // ResNet50's deepest K
  TestGemm({100, 10, 64, 0, 0, 2, true, false, false, ++seed});   // a CIFAR ResNet's linear
}

TEST_P(Fp32GemmDoubleTest, ConvShapesMatchOracleExactly) {
  uint32_t seed = kBaseSeed + 100000;
  const ConvCase cases[] = {
      // batch, h, w, in_c, out_c, kernel, stride, pad, dilation, threads, residual, relu, seed
      {2, 13, 11, 3, 64, 7, 2, 3, 1, 2, false, true, 0},    // ImageNet stem
      {2, 9, 9, 3, 16, 3, 1, 1, 1, 1, false, true, 0},      // CIFAR stem
      {1, 8, 8, 16, 16, 3, 1, 1, 1, 2, true, true, 0},      // CIFAR block, fused residual
      {3, 7, 5, 32, 17, 3, 2, 1, 1, 1, false, false, 0},    // strided 3x3, odd sizes
      {1, 7, 7, 64, 33, 1, 2, 0, 1, 2, false, false, 0},    // 1x1 stride-2 downsample
      {2, 6, 6, 40, 31, 1, 1, 0, 1, 1, true, false, 0},     // pointwise
      {1, 9, 8, 5, 9, 3, 1, 2, 2, 2, false, true, 0},       // dilation with wide padding
      {1, 3, 3, 7, 5, 5, 1, 2, 1, 1, true, true, 0},        // kernel wider than the input
      {1, 4, 4, 512, 20, 3, 1, 1, 1, 2, false, true, 0},    // K = 4608
  };
  for (ConvCase c : cases) {
    c.seed = ++seed;
    TestConv(c);
  }
}

// One thread or two: the same bits (a row tile is one thread's, its order is fixed).
TEST_P(Fp32GemmDoubleTest, ThreadCountDoesNotChangeResults) {
  const ConvCase base = {4, 10, 10, 16, 48, 3, 1, 1, 1, 1, true, true, kBaseSeed + 7};
  ConvCase two = base;
  two.threads = 2;
  TestConv(base);
  TestConv(two);  // both equal the same oracle bit for bit, hence each other
}

}  // namespace
}  // namespace qlab::kernels
