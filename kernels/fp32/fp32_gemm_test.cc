// Tests of kernels/fp32/fp32_gemm.h: GEMM and NHWC convolution against the double-precision
// loops of fp32_ref.h, on every Highway target compiled in and supported by this CPU (on an
// AVX-512 machine: the 14 x 32 AVX3/AVX3_DL tile, the portable AVX2 and SSE4 tiles, SCALAR).
//
// Tolerance: |kernel - reference| <= Fp32SumTolerance(K, sum_k |a_k b_k| + |bias| + |residual|),
// the rigorous worst-case bound of float32 recursive summation of K products (fp32_ref.h says
// why): no output may exceed it, and a wrong index or a missed tap exceeds it by orders of
// magnitude.
//
// Shapes sweep every blocking boundary (M = 1 .. 29 around the 1-, 4- and 14-row tiles; N around
// the 16-column panels and 32-column AVX-512 tiles; K from 1 to 4608 and across the column-chunk
// size), strides wider than the rows, the epilogue options, every convolution shape of ResNet18
// and ResNet50 (and the CIFAR ResNets) at small spatial sizes, padding/stride/dilation corners,
// and 1 vs 2 threads, which must agree bit for bit (the split never changes an output's
// summation order).
//
// Randomness: each case draws from std::mt19937 seeded with kBaseSeed plus a case number, printed
// on failure with the shape; `--gtest_random_seed=N` replaces kBaseSeed to explore other data.

#include <pthreadpool.h>

#include <cmath>
#include <cstdint>
#include <cstring>
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
#include "kernels/fp32/fp32_ref.h"
#include "kernels/threadpool/pthreadpool_ptr.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261201;
// Written into C's row padding; must survive every call (the kernels write exactly M x N).
constexpr float kSentinel = -12345.5f;

uint32_t BaseSeed() {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed;
}

using PoolPtr = kernels::PthreadpoolPtr;


std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

// Compares `actual` (row stride ld) with the reference; returns false after one failure.
bool ExpectWithinTolerance(const std::string& what, const float* actual, size_t rows, size_t cols,
                           size_t ld, const std::vector<double>& expected,
                           const std::vector<double>& magnitude, size_t terms) {
  for (size_t i = 0; i < rows; ++i) {
    for (size_t j = 0; j < ld; ++j) {
      const float got = actual[i * ld + j];
      if (j >= cols) {
        if (got != kSentinel) {
          ADD_FAILURE() << what << ": row padding overwritten at [" << i << "][" << j << "]";
          return false;
        }
        continue;
      }
      const double want = expected[i * cols + j];
      const double tolerance = Fp32SumTolerance(terms, magnitude[i * cols + j]);
      if (!(std::fabs(got - want) <= tolerance)) {
        ADD_FAILURE() << what << ": [" << i << "][" << j << "] = " << got << ", expected " << want
                      << " (tolerance " << tolerance << ")";
        return false;
      }
    }
  }
  return true;
}

// Fp32GemmTester: one GEMM call checked against the reference, XNNPACK style:
//   Fp32GemmTester().m(3).n(17).k(65).relu(true).Test();
class Fp32GemmTester {
 public:
  Fp32GemmTester& m(size_t v) { m_ = v; return *this; }
  Fp32GemmTester& n(size_t v) { n_ = v; return *this; }
  Fp32GemmTester& k(size_t v) { k_ = v; return *this; }
  // Extra elements at the end of each row of A, B, C and the residual.
  Fp32GemmTester& stride_padding(size_t v) { padding_ = v; return *this; }
  Fp32GemmTester& bias(bool v) { bias_ = v; return *this; }
  Fp32GemmTester& residual(bool v) { residual_ = v; return *this; }
  Fp32GemmTester& relu(bool v) { relu_ = v; return *this; }
  // Packs B from its transpose (a linear layer's [out, in] weight) instead.
  Fp32GemmTester& transposed_weights(bool v) { transposed_ = v; return *this; }
  Fp32GemmTester& threads(size_t v) { threads_ = v; return *this; }
  Fp32GemmTester& seed(uint32_t v) { seed_ = v; return *this; }

  // Runs the kernel; returns C (with row padding) after checking it against the reference.
  std::vector<float> Test() const {
    std::mt19937 rng(seed_);
    const size_t lda = k_ + padding_, ldb = n_ + padding_, ldc = n_ + padding_;
    const std::vector<float> a = RandomFloats(m_ * lda, rng);
    const std::vector<float> b = RandomFloats(k_ * ldb, rng);
    const std::vector<float> bias = RandomFloats(n_, rng);
    const std::vector<float> residual = RandomFloats(m_ * ldc, rng);

    Fp32PackedWeights packed;
    if (transposed_) {
      std::vector<float> bt(n_ * k_);
      for (size_t kk = 0; kk < k_; ++kk) {
        for (size_t j = 0; j < n_; ++j) bt[j * k_ + kk] = b[kk * ldb + j];
      }
      packed = PackFp32WeightsTransposed(bt.data(), n_, k_, k_, bias_ ? bias.data() : nullptr);
    } else {
      packed = PackFp32Weights(b.data(), k_, n_, ldb, bias_ ? bias.data() : nullptr);
    }
    Fp32Epilogue epilogue;
    epilogue.relu = relu_;
    if (residual_) {
      epilogue.residual = residual.data();
      epilogue.residual_stride = ldc;
    }
    std::vector<float> c(m_ * ldc, kSentinel);
    const PoolPtr pool = kernels::MakePthreadpool(threads_);
    Fp32Gemm(a.data(), m_, lda, packed, epilogue, c.data(), ldc, pool.get());

    std::vector<double> expected(m_ * n_), magnitude(m_ * n_);
    Fp32GemmRef(a.data(), m_, k_, lda, b.data(), n_, ldb, bias_ ? bias.data() : nullptr,
                residual_ ? residual.data() : nullptr, ldc, relu_, expected.data(),
                magnitude.data());
    ExpectWithinTolerance(Describe(), c.data(), m_, n_, ldc, expected, magnitude, k_);
    return c;
  }

  std::string Describe() const {
    std::ostringstream s;
    s << "Fp32Gemm target=" << Fp32GemmTargetName() << " m=" << m_ << " n=" << n_ << " k=" << k_
      << " padding=" << padding_ << " bias=" << bias_ << " residual=" << residual_
      << " relu=" << relu_ << " transposed=" << transposed_ << " threads=" << threads_
      << " seed=" << seed_;
    return s.str();
  }

 private:
  size_t m_ = 1, n_ = 1, k_ = 1, padding_ = 0;
  bool bias_ = true, residual_ = false, relu_ = false, transposed_ = false;
  size_t threads_ = 1;
  uint32_t seed_ = kBaseSeed;
};

// Fp32ConvTester: one NHWC convolution checked against the direct double loops:
//   Fp32ConvTester().input_size(7, 7).channels(64, 64).kernel(3, 3).padding(1, 1).Test();
class Fp32ConvTester {
 public:
  Fp32ConvTester& batch(size_t v) { batch_ = v; return *this; }
  Fp32ConvTester& input_size(size_t h, size_t w) { in_h_ = h; in_w_ = w; return *this; }
  Fp32ConvTester& channels(size_t in, size_t out) { in_c_ = in; out_c_ = out; return *this; }
  Fp32ConvTester& kernel(size_t h, size_t w) { kernel_h_ = h; kernel_w_ = w; return *this; }
  Fp32ConvTester& stride(size_t h, size_t w) { stride_h_ = h; stride_w_ = w; return *this; }
  Fp32ConvTester& padding(size_t h, size_t w) { pad_h_ = h; pad_w_ = w; return *this; }
  Fp32ConvTester& dilation(size_t h, size_t w) { dilation_h_ = h; dilation_w_ = w; return *this; }
  Fp32ConvTester& bias(bool v) { bias_ = v; return *this; }
  Fp32ConvTester& residual(bool v) { residual_ = v; return *this; }
  Fp32ConvTester& relu(bool v) { relu_ = v; return *this; }
  Fp32ConvTester& threads(size_t v) { threads_ = v; return *this; }
  Fp32ConvTester& seed(uint32_t v) { seed_ = v; return *this; }

  Fp32ConvGeometry Geometry() const {
    Fp32ConvGeometry g;
    g.batch = batch_;
    g.in_h = in_h_;
    g.in_w = in_w_;
    g.in_channels = in_c_;
    g.kernel_h = kernel_h_;
    g.kernel_w = kernel_w_;
    g.stride_h = stride_h_;
    g.stride_w = stride_w_;
    g.pad_h = pad_h_;
    g.pad_w = pad_w_;
    g.dilation_h = dilation_h_;
    g.dilation_w = dilation_w_;
    g.out_h = (in_h_ + 2 * pad_h_ - dilation_h_ * (kernel_h_ - 1) - 1) / stride_h_ + 1;
    g.out_w = (in_w_ + 2 * pad_w_ - dilation_w_ * (kernel_w_ - 1) - 1) / stride_w_ + 1;
    return g;
  }

  // Runs the kernel; returns the NHWC output after checking it against the reference.
  std::vector<float> Test() const {
    const Fp32ConvGeometry g = Geometry();
    std::mt19937 rng(seed_);
    const std::vector<float> input = RandomFloats(batch_ * in_h_ * in_w_ * in_c_, rng);
    const std::vector<float> weight = RandomFloats(out_c_ * in_c_ * kernel_h_ * kernel_w_, rng);
    const std::vector<float> bias = RandomFloats(out_c_, rng);
    const size_t pixels = batch_ * g.out_h * g.out_w;
    const std::vector<float> residual = RandomFloats(pixels * out_c_, rng);

    const Fp32PackedWeights packed = PackFp32ConvWeights(
        weight.data(), out_c_, in_c_, kernel_h_, kernel_w_, bias_ ? bias.data() : nullptr);
    Fp32Epilogue epilogue;
    epilogue.relu = relu_;
    if (residual_) {
      epilogue.residual = residual.data();
      epilogue.residual_stride = out_c_;
    }
    std::vector<float> output(pixels * out_c_, kSentinel);
    const PoolPtr pool = kernels::MakePthreadpool(threads_);
    Fp32Conv2dNhwc(g, input.data(), packed, epilogue, output.data(), pool.get());

    std::vector<double> expected(pixels * out_c_), magnitude(pixels * out_c_);
    Fp32Conv2dNhwcRef(input.data(), batch_, in_h_, in_w_, in_c_, weight.data(), out_c_,
                      kernel_h_, kernel_w_, stride_h_, stride_w_, pad_h_, pad_w_, dilation_h_,
                      dilation_w_, g.out_h, g.out_w, bias_ ? bias.data() : nullptr,
                      residual_ ? residual.data() : nullptr, relu_, expected.data(),
                      magnitude.data());
    ExpectWithinTolerance(Describe(), output.data(), pixels, out_c_, out_c_, expected, magnitude,
                          kernel_h_ * kernel_w_ * in_c_);
    return output;
  }

  std::string Describe() const {
    std::ostringstream s;
    s << "Fp32Conv2dNhwc target=" << Fp32GemmTargetName() << " batch=" << batch_ << " input="
      << in_h_ << "x" << in_w_ << "x" << in_c_ << " out_c=" << out_c_ << " kernel=" << kernel_h_
      << "x" << kernel_w_ << " stride=" << stride_h_ << "x" << stride_w_ << " pad=" << pad_h_
      << "x" << pad_w_ << " dilation=" << dilation_h_ << "x" << dilation_w_ << " bias=" << bias_
      << " residual=" << residual_ << " relu=" << relu_ << " threads=" << threads_
      << " seed=" << seed_;
    return s.str();
  }

 private:
  size_t batch_ = 1, in_h_ = 5, in_w_ = 5, in_c_ = 1, out_c_ = 1;
  size_t kernel_h_ = 1, kernel_w_ = 1, stride_h_ = 1, stride_w_ = 1, pad_h_ = 0, pad_w_ = 0;
  size_t dilation_h_ = 1, dilation_w_ = 1;
  bool bias_ = true, residual_ = false, relu_ = false;
  size_t threads_ = 1;
  uint32_t seed_ = kBaseSeed;
};

class Fp32GemmTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(Fp32GemmTest);

TEST_P(Fp32GemmTest, ReportsTarget) {
  // Under the test harness, dispatch is restricted to this test's target.
  std::cout << "fp32 gemm dispatches to " << Fp32GemmTargetName() << "\n";
  EXPECT_STREQ(Fp32GemmTargetName(), hwy::TargetName(GetParam()));
}

// Every (M, N, K) around the tile and panel boundaries; epilogue options rotate.
TEST_P(Fp32GemmTest, SmallShapesMatchReference) {
  const size_t kMs[] = {1, 2, 3, 4, 5, 7, 13, 14, 15, 27, 28, 29};
  const size_t kNs[] = {1, 2, 7, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65};
  const size_t kKs[] = {1, 2, 3, 8, 17, 64, 129};
  uint32_t seed = BaseSeed();
  for (size_t m : kMs) {
    for (size_t n : kNs) {
      for (size_t k : kKs) {
        ++seed;
        Fp32GemmTester()
            .m(m).n(n).k(k)
            .bias(seed % 2 == 0)
            .residual(seed % 3 == 0)
            .relu(seed % 4 < 2)
            .seed(seed)
            .Test();
      }
    }
  }
}

// Deep K (the ResNet50 range, up to 3 x 3 x 512 = 4608) and N past the column chunk (a chunk
// holds 512 KiB of packed weights: 2 panels at K = 4608), so tasks span several chunks.
TEST_P(Fp32GemmTest, LargeShapesMatchReference) {
  uint32_t seed = BaseSeed() + 100000;
  for (size_t k : {576, 1153, 4608}) {
    for (size_t m : {1, 15, 30}) {
      for (size_t n : {17, 96, 161}) {
        Fp32GemmTester().m(m).n(n).k(k).residual(true).relu(true).seed(++seed).Test();
      }
    }
  }
}

// Row strides beyond the rows; weights packed from a linear layer's transposed layout.
TEST_P(Fp32GemmTest, StridesAndTransposedWeights) {
  uint32_t seed = BaseSeed() + 200000;
  for (size_t padding : {1, 3, 16}) {
    for (size_t m : {1, 5, 14, 17}) {
      for (size_t n : {1, 17, 33}) {
        for (size_t k : {3, 65}) {
          Fp32GemmTester().m(m).n(n).k(k).stride_padding(padding).residual(true).seed(++seed).Test();
          Fp32GemmTester().m(m).n(n).k(k).transposed_weights(true).relu(true).seed(++seed).Test();
        }
      }
    }
  }
}

// Threads split by output tiles; each output's summation order is fixed, so 2 threads must give
// exactly the 1-thread result (and both must match the reference).
TEST_P(Fp32GemmTest, TwoThreadsBitIdenticalToOne) {
  uint32_t seed = BaseSeed() + 300000;
  for (size_t m : {1, 13, 49, 200}) {
    for (size_t n : {10, 64, 130}) {
      for (size_t k : {27, 576, 4608}) {
        ++seed;
        const Fp32GemmTester tester = Fp32GemmTester().m(m).n(n).k(k).relu(true).seed(seed);
        const std::vector<float> one = Fp32GemmTester(tester).threads(1).Test();
        const std::vector<float> two = Fp32GemmTester(tester).threads(2).Test();
        ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
            << tester.Describe();
      }
    }
  }
}

TEST_P(Fp32GemmTest, EmptyMIsNoOp) {
  const float b[3] = {1, 2, 3};
  const Fp32PackedWeights packed = PackFp32Weights(b, 1, 3, 3, nullptr);
  float c[3] = {kSentinel, kSentinel, kSentinel};
  Fp32Gemm(nullptr, 0, 1, packed, Fp32Epilogue{}, c, 3, nullptr);
  for (float v : c) EXPECT_EQ(v, kSentinel);
}

// One conv layer shape: channels, kernel, stride, padding (ResNet convs pad kernel / 2).
struct ConvShape {
  size_t in_c, out_c, kernel, stride;
};

// Every distinct conv shape of torchvision ResNet18 and ResNet50 (ImageNet), one line per stage,
// plus the CIFAR ResNet20-56 convs (16-32-64 channels), run at small spatial sizes: the kernels'
// blocking does not depend on the spatial size except through M, which the GEMM tests sweep.
constexpr ConvShape kResNetConvs[] = {
    {3, 64, 7, 2},  // stem 7x7/2 (both models)
    // ResNet18 basic blocks: 3x3 convs, 3x3/2 + 1x1/2 downsample at each stage entry.
    {64, 64, 3, 1}, {64, 128, 3, 2}, {128, 128, 3, 1}, {64, 128, 1, 2},
    {128, 256, 3, 2}, {256, 256, 3, 1}, {128, 256, 1, 2},
    {256, 512, 3, 2}, {512, 512, 3, 1}, {256, 512, 1, 2},
    // ResNet50 bottlenecks, stage 1 (56x56): 1x1 reduce, 3x3, 1x1 expand, downsample 1x1/1.
    {64, 64, 1, 1}, {64, 256, 1, 1}, {256, 64, 1, 1},
    // Stage 2 (28x28; stride on the 3x3, v1.5).
    {256, 128, 1, 1}, {128, 128, 3, 2}, {128, 512, 1, 1}, {256, 512, 1, 2}, {512, 128, 1, 1},
    // Stage 3 (14x14).
    {512, 256, 1, 1}, {256, 256, 3, 2}, {256, 1024, 1, 1}, {512, 1024, 1, 2}, {1024, 256, 1, 1},
    // Stage 4 (7x7).
    {1024, 512, 1, 1}, {512, 512, 3, 2}, {512, 2048, 1, 1}, {1024, 2048, 1, 2},
    {2048, 512, 1, 1},
    // CIFAR ResNets: 3x3/1 stem, 16-32-64 basic blocks.
    {3, 16, 3, 1}, {16, 16, 3, 1}, {16, 32, 3, 2}, {32, 32, 3, 1}, {32, 64, 3, 2},
    {64, 64, 3, 1},
};

TEST_P(Fp32GemmTest, ResNetConvShapesMatchReference) {
  uint32_t seed = BaseSeed() + 400000;
  for (const ConvShape& s : kResNetConvs) {
    // Larger inputs for narrow layers (more rows, still cheap); 5x5 for K x N in the millions.
    const size_t size = s.in_c * s.out_c * s.kernel * s.kernel > (1u << 20) ? 5 : 9;
    const size_t pad = s.kernel / 2;
    Fp32ConvTester()
        .input_size(size + (s.kernel == 7 ? 7 : 0), size)
        .channels(s.in_c, s.out_c)
        .kernel(s.kernel, s.kernel)
        .stride(s.stride, s.stride)
        .padding(pad, pad)
        .residual(s.kernel == 1)  // the last conv of a block carries the skip connection
        .relu(true)
        .seed(++seed)
        .Test();
  }
}

// Padding, stride, dilation and batch corners on odd channel counts (below 16 input channels
// filter-row runs of the column-padded input, or gathered rows when dilated in W; indirect from
// 16 up), including windows that see only padding.
TEST_P(Fp32GemmTest, ConvGeometryCornersMatchReference) {
  uint32_t seed = BaseSeed() + 500000;
  for (size_t in_c : {1, 3, 15, 16, 17}) {
    for (size_t out_c : {1, 17, 33}) {
      for (size_t kernel : {1, 2, 3, 5}) {
        for (size_t stride : {1, 2, 3}) {
          for (size_t pad : {size_t{0}, kernel / 2, kernel - 1}) {
            ++seed;
            const size_t in_h = 4 + seed % 5, in_w = 3 + seed % 7, dilation = 1 + seed % 2;
            const size_t kernel_w = kernel == 5 ? 3 : kernel, dilation_w = 1 + seed / 5 % 2;
            // Skip geometries whose dilated window does not fit the padded input.
            if (in_h + 2 * pad < dilation * (kernel - 1) + 1 ||
                in_w + 2 * pad < dilation_w * (kernel_w - 1) + 1) {
              continue;
            }
            Fp32ConvTester()
                .batch(1 + seed % 3)
                .input_size(in_h, in_w)
                .channels(in_c, out_c)
                .kernel(kernel, kernel_w)
                .stride(stride, stride == 3 ? 1 : stride)
                .padding(pad, pad)
                .dilation(dilation, dilation_w)
                .bias(seed % 2 == 0)
                .residual(seed % 3 == 0)
                .relu(seed % 4 < 2)
                .seed(seed)
                .Test();
          }
        }
      }
    }
  }
}

TEST_P(Fp32GemmTest, ConvTwoThreadsBitIdenticalToOne) {
  uint32_t seed = BaseSeed() + 600000;
  for (const ConvShape& s : {ConvShape{3, 64, 7, 2}, ConvShape{64, 64, 3, 1},
                             ConvShape{128, 256, 3, 2}, ConvShape{256, 64, 1, 1}}) {
    ++seed;
    const size_t pad = s.kernel / 2;
    const Fp32ConvTester tester = Fp32ConvTester()
                                      .batch(2)
                                      .input_size(11, 11)
                                      .channels(s.in_c, s.out_c)
                                      .kernel(s.kernel, s.kernel)
                                      .stride(s.stride, s.stride)
                                      .padding(pad, pad)
                                      .relu(true)
                                      .seed(seed);
    const std::vector<float> one = Fp32ConvTester(tester).threads(1).Test();
    const std::vector<float> two = Fp32ConvTester(tester).threads(2).Test();
    ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
        << tester.Describe();
  }
}

// The packed layout by hand: K = 2, N = 18 gives 2 panels; panel 1 holds columns 16, 17, zeros.
TEST(Fp32PackTest, LayoutAndBiasPadding) {
  float b[2 * 18], bias[18];
  for (int kk = 0; kk < 2; ++kk) {
    for (int j = 0; j < 18; ++j) b[kk * 18 + j] = static_cast<float>(100 * kk + j);
  }
  for (int j = 0; j < 18; ++j) bias[j] = static_cast<float>(-j);
  const Fp32PackedWeights p = PackFp32Weights(b, 2, 18, 18, bias);
  EXPECT_EQ(p.panels, 2u);
  ASSERT_EQ(p.data.size(), 2u * 2 * 16);
  EXPECT_EQ(p.data[0 * 16 + 5], 5.0f);             // panel 0, k 0, column 5
  EXPECT_EQ(p.data[1 * 16 + 5], 105.0f);           // panel 0, k 1, column 5
  EXPECT_EQ(p.data[(1 * 2 + 1) * 16 + 1], 117.0f);  // panel 1, k 1, column 17
  EXPECT_EQ(p.data[(1 * 2 + 1) * 16 + 2], 0.0f);    // padding
  EXPECT_EQ(p.bias[17], -17.0f);
  EXPECT_EQ(p.bias[18], 0.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.data.data()) % 64, 0u);
}

// OIHW conv weights land at K index (kh * kw_size + kw) * in_c + ic.
TEST(Fp32PackTest, ConvWeightOrder) {
  // out 1, in 2, 2x2 kernel: w[0][i][kh][kw] = 10 * i + 2 * kh + kw.
  float w[8];
  for (int i = 0; i < 2; ++i) {
    for (int kh = 0; kh < 2; ++kh) {
      for (int kw = 0; kw < 2; ++kw) w[(i * 2 + kh) * 2 + kw] = static_cast<float>(10 * i + 2 * kh + kw);
    }
  }
  const Fp32PackedWeights p = PackFp32ConvWeights(w, 1, 2, 2, 2, nullptr);
  ASSERT_EQ(p.k, 8u);
  const float expected[8] = {0, 10, 1, 11, 2, 12, 3, 13};  // (kh, kw, ic)
  for (size_t kk = 0; kk < 8; ++kk) EXPECT_EQ(p.data[kk * 16], expected[kk]) << kk;
}

}  // namespace
}  // namespace qlab::kernels
