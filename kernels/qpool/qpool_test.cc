// Tests of kernels/qpool against qpool_ref.h on every Highway target compiled in and supported by
// this CPU. Integer math is exact and the add's float steps are single IEEE operations: no
// tolerance. Channel counts and lengths sweep around every vector width (1, 3, 15, 16, 17, 63,
// 64, 65, ...), windows include ResNet's 3x3/2 pad 1 max pool and padding-only corners, and the
// add runs with fused ReLU, saturation at both ends and exact .5 ties.
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number (printed on failure).
#include "kernels/qpool/qpool.h"

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/fp32/fp32_eltwise.h"
#include "kernels/fp32/fp32_pool.h"
#include "kernels/qpool/qpool_ref.h"
#include "kernels/quantize/quantize.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261125;

std::vector<uint8_t> RandomBytes(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> dist(0, 255);
  std::vector<uint8_t> v(n);
  for (uint8_t& x : v) x = static_cast<uint8_t>(dist(rng));
  return v;
}

const size_t kChannels[] = {1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130};

class QPoolTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(QPoolTest);

TEST_P(QPoolTest, ReportsTarget) {
  EXPECT_STREQ(QPoolKernelsTargetName(), hwy::TargetName(GetParam()));
}

TEST_P(QPoolTest, MaxPoolMatchesReference) {
  struct Window {
    size_t kernel, stride, padding;
  };
  const Window kWindows[] = {{3, 2, 1}, {3, 1, 1}, {2, 2, 0}, {3, 3, 2}, {1, 1, 0}, {3, 2, 0}};
  uint32_t seed = kBaseSeed;
  for (const Window& w : kWindows) {
    for (size_t c : kChannels) {
      for (size_t size : {1, 4, 7}) {
        QPoolShape s;
        s.batch = 1 + seed % 2;
        s.input_height = size;
        s.input_width = size + 1;
        s.channels = c;
        s.kernel_height = s.kernel_width = w.kernel;
        s.stride_height = s.stride_width = w.stride;
        s.padding_top = s.padding_left = s.padding_bottom = s.padding_right = w.padding;
        if (!ValidateQPoolShape(s).ok()) continue;  // e.g. a 3x3 window on 1x2 without padding
        std::mt19937 rng(++seed);
        const auto x = RandomBytes(s.batch * s.input_height * s.input_width * c, rng);
        const size_t out = s.batch * s.output_height() * s.output_width() * c;
        std::vector<uint8_t> expected(out), actual(out + 1, 0xA5);
        QMaxPoolU8_NHWC_Ref(s, x.data(), expected.data());
        QMaxPoolU8_NHWC(s, x.data(), actual.data());
        EXPECT_EQ(actual[out], 0xA5) << "wrote past the output";
        actual.resize(out);
        ASSERT_EQ(actual, expected)
            << "kernel " << w.kernel << " stride " << w.stride << " padding " << w.padding
            << " size " << size << " channels " << c << " seed " << seed;
      }
    }
  }
}

TEST_P(QPoolTest, GlobalAvgPoolMatchesReference) {
  uint32_t seed = kBaseSeed + 1000;
  for (size_t c : kChannels) {
    for (size_t pixels : {1, 7 * 7, 50}) {
      for (int32_t zp : {0, 128, 255}) {
        std::mt19937 rng(++seed);
        const size_t batch = 1 + seed % 3;
        const auto x = RandomBytes(batch * pixels * c, rng);
        QGlobalAvgPoolParams p;
        p.input_zero_point = zp;
        // Output scale 1/2 .. 2x the input's, so that values saturate at both ends sometimes.
        p.multiplier = (0.5f + static_cast<float>(seed % 7) * 0.25f) / static_cast<float>(pixels);
        p.output_zero_point = static_cast<int32_t>(seed % 200);
        p.min = seed % 2 ? p.output_zero_point : 0;  // fused ReLU half the time
        p.max = 255;
        std::vector<uint8_t> expected(batch * c), actual(batch * c);
        std::vector<int32_t> acc(batch * c);
        QGlobalAvgPoolU8_NHWC_Ref(x.data(), batch, pixels, c, p, expected.data());
        QGlobalAvgPoolU8_NHWC(x.data(), batch, pixels, c, p, acc.data(), actual.data());
        ASSERT_EQ(actual, expected)
            << "channels " << c << " pixels " << pixels << " zp " << zp << " seed " << seed;
      }
    }
  }
}

TEST_P(QPoolTest, AddMatchesReference) {
  uint32_t seed = kBaseSeed + 2000;
  for (size_t n : {1, 3, 15, 16, 17, 63, 64, 65, 1000, 4099}) {
    for (bool relu : {false, true}) {
      std::mt19937 rng(++seed);
      const auto a = RandomBytes(n, rng), b = RandomBytes(n, rng);
      std::uniform_real_distribution<float> mult(0.1f, 2.5f);
      std::uniform_int_distribution<int32_t> zp(0, 255);
      QAddParams p;
      p.a_zero_point = zp(rng);
      p.b_zero_point = zp(rng);
      p.a_multiplier = mult(rng);
      p.b_multiplier = mult(rng);
      p.output_zero_point = zp(rng);
      p.min = relu ? p.output_zero_point : 0;
      p.max = 255;
      std::vector<uint8_t> expected(n), actual(n);
      QAddU8Ref(a.data(), b.data(), n, p, expected.data());
      QAddU8(a.data(), b.data(), n, p, actual.data());
      ASSERT_EQ(actual, expected) << "n " << n << " relu " << relu << " seed " << seed;
      // In place (y aliases a), as a residual add into the block's output buffer.
      std::vector<uint8_t> in_place = a;
      QAddU8(in_place.data(), b.data(), n, p, in_place.data());
      ASSERT_EQ(in_place, expected) << "in place, n " << n;
    }
  }
}

// Multipliers 0.5 on odd differences give sums at exactly k + 0.5: rounding must be half to even.
TEST_P(QPoolTest, AddRoundsTiesToEven) {
  std::vector<uint8_t> a(100), b(100, 0);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i);
  QAddParams p;
  p.a_multiplier = 0.5f;
  p.b_multiplier = 1.0f;
  p.output_zero_point = 10;
  std::vector<uint8_t> y(a.size());
  QAddU8(a.data(), b.data(), a.size(), p, y.data());
  EXPECT_EQ(y[1], 10);  // 0.5 -> 0
  EXPECT_EQ(y[3], 12);  // 1.5 -> 2
  EXPECT_EQ(y[5], 12);  // 2.5 -> 2
  std::vector<uint8_t> expected(a.size());
  QAddU8Ref(a.data(), b.data(), a.size(), p, expected.data());
  EXPECT_EQ(y, expected);
}

// The float form against its reference, over channel counts around every vector width.
TEST_P(QPoolTest, GlobalAvgPoolFloatFormMatchesReference) {
  uint32_t seed = kBaseSeed + 3000;
  for (size_t c : kChannels) {
    for (size_t pixels : {1, 7 * 7, 64}) {
      for (int32_t zp : {0, 128, 255}) {
        std::mt19937 rng(++seed);
        const size_t batch = 1 + seed % 3;
        const auto x = RandomBytes(batch * pixels * c, rng);
        std::uniform_real_distribution<float> scale(0.001f, 0.1f);
        QGlobalAvgPoolParams p;
        p.input_zero_point = zp;
        p.input_scale = scale(rng);
        // Output scale 1/2 .. 2x the input's: values saturate at both ends sometimes.
        p.output_inverse_scale = 1.0f / (p.input_scale * (0.5f + (seed % 7) * 0.25f));
        p.output_zero_point = static_cast<int32_t>(seed % 200);
        p.min = seed % 2 ? p.output_zero_point : 0;
        p.max = 255;
        std::vector<uint8_t> expected(batch * c), actual(batch * c);
        std::vector<int32_t> acc(batch * c);
        QGlobalAvgPoolU8_NHWC_Ref(x.data(), batch, pixels, c, p, expected.data());
        QGlobalAvgPoolU8_NHWC(x.data(), batch, pixels, c, p, acc.data(), actual.data());
        ASSERT_EQ(actual, expected)
            << "channels " << c << " pixels " << pixels << " zp " << zp << " seed " << seed;
      }
    }
  }
}

// The float forms are the Q/DQ reference's own operations: dequantize, kernels/fp32's average
// (or add), quantize, bit for bit. This is what lets the int8 engine agree with the fake-quant
// evaluation exactly on these layers.
TEST_P(QPoolTest, FloatFormsEqualDequantizeFloatOpQuantize) {
  std::mt19937 rng(kBaseSeed + 4000);
  const size_t batch = 3, pixels = 64, channels = 67;
  const auto x = RandomBytes(batch * pixels * channels, rng);
  const float x_scale = 0.0371f, y_scale = 0.0213f;
  const int32_t x_zp = 3, y_zp = 0;
  std::vector<float> dequantized(x.size()), averaged(batch * channels);
  Dequantize(x.data(), x.size(), x_scale, x_zp, dequantized.data());
  Fp32GlobalAvgPoolNhwc(batch, pixels, channels, dequantized.data(), averaged.data());
  std::vector<uint8_t> expected(batch * channels), actual(batch * channels);
  Quantize(averaged.data(), averaged.size(), AffineParams{y_scale, y_zp, 0, 255}, expected.data());
  QGlobalAvgPoolParams p;
  p.input_zero_point = x_zp;
  p.input_scale = x_scale;
  p.output_inverse_scale = 1.0f / y_scale;  // as Quantize computes it
  p.output_zero_point = y_zp;
  std::vector<int32_t> acc(batch * channels);
  QGlobalAvgPoolU8_NHWC(x.data(), batch, pixels, channels, p, acc.data(), actual.data());
  EXPECT_EQ(actual, expected);

  const size_t n = 4099;
  const auto a = RandomBytes(n, rng), b = RandomBytes(n, rng);
  const float a_scale = 0.0419f, b_scale = 0.0274f, sum_scale = 0.0533f;
  const int32_t a_zp = 0, b_zp = 131, sum_zp = 7;
  std::vector<float> fa(n), fb(n), sum(n);
  Dequantize(a.data(), n, a_scale, a_zp, fa.data());
  Dequantize(b.data(), n, b_scale, b_zp, fb.data());
  Fp32Add(fa.data(), fb.data(), n, /*relu=*/true, sum.data(), nullptr);
  std::vector<uint8_t> add_expected(n), add_actual(n);
  Quantize(sum.data(), n, AffineParams{sum_scale, sum_zp, 0, 255}, add_expected.data());
  QAddParams q;
  q.a_zero_point = a_zp;
  q.a_multiplier = a_scale;
  q.b_zero_point = b_zp;
  q.b_multiplier = b_scale;
  q.output_multiplier = 1.0f / sum_scale;
  q.output_zero_point = sum_zp;
  q.min = sum_zp;  // the fused ReLU
  QAddU8(a.data(), b.data(), n, q, add_actual.data());
  EXPECT_EQ(add_actual, add_expected);
}

// Two threads give the same bytes as the calling thread alone, and as the reference, for shapes
// large enough to be split (max pool rows, channel blocks of one or several images, element
// blocks of the add, with remainders that are not whole vectors).
TEST_P(QPoolTest, ThreadedResultsEqualSingleThreaded) {
  std::mt19937 rng(kBaseSeed + 5000);
  ThreadPool two(2);
  ASSERT_EQ(two.threads(), 2u) << "no worker thread: the test would not split anything";

  QPoolShape s;
  s.batch = 2;
  s.input_height = s.input_width = 57;
  s.channels = 67;
  s.kernel_height = s.kernel_width = 3;
  s.stride_height = s.stride_width = 2;
  s.padding_top = s.padding_left = s.padding_bottom = s.padding_right = 1;
  const auto x = RandomBytes(s.batch * 57 * 57 * s.channels, rng);
  const size_t pooled = s.batch * s.output_height() * s.output_width() * s.channels;
  std::vector<uint8_t> expected(pooled), single(pooled), threaded(pooled);
  QMaxPoolU8_NHWC_Ref(s, x.data(), expected.data());
  QMaxPoolU8_NHWC(s, x.data(), single.data(), nullptr);
  QMaxPoolU8_NHWC(s, x.data(), threaded.data(), &two);
  EXPECT_EQ(single, expected);
  EXPECT_EQ(threaded, expected);

  for (const bool float_form : {false, true}) {
    for (const size_t batch : {1, 3}) {
      for (const size_t channels : {130, 512, 2049}) {
        const size_t pixels = 49;
        const auto in = RandomBytes(batch * pixels * channels, rng);
        QGlobalAvgPoolParams p;
        p.input_zero_point = 5;
        p.multiplier = 0.8f / pixels;
        p.output_zero_point = 3;
        if (float_form) {
          p.input_scale = 0.02f;
          p.output_inverse_scale = 1.0f / 0.025f;
        }
        std::vector<uint8_t> want(batch * channels), one(batch * channels),
            two_threads(batch * channels);
        std::vector<int32_t> acc(batch * channels);
        QGlobalAvgPoolU8_NHWC_Ref(in.data(), batch, pixels, channels, p, want.data());
        QGlobalAvgPoolU8_NHWC(in.data(), batch, pixels, channels, p, acc.data(), one.data(),
                              nullptr);
        QGlobalAvgPoolU8_NHWC(in.data(), batch, pixels, channels, p, acc.data(), two_threads.data(),
                              &two);
        EXPECT_EQ(one, want) << "float form " << float_form << " batch " << batch << " channels "
                             << channels;
        EXPECT_EQ(two_threads, want)
            << "float form " << float_form << " batch " << batch << " channels " << channels;
      }
    }
  }

  const size_t n = 200003;
  const auto a = RandomBytes(n, rng), b = RandomBytes(n, rng);
  QAddParams q;
  q.a_zero_point = 17;
  q.a_multiplier = 0.7f;
  q.b_zero_point = 201;
  q.b_multiplier = 1.3f;
  q.output_zero_point = 9;
  q.min = 9;
  std::vector<uint8_t> add_want(n), add_one(n), add_two(n);
  QAddU8Ref(a.data(), b.data(), n, q, add_want.data());
  QAddU8(a.data(), b.data(), n, q, add_one.data(), nullptr);
  QAddU8(a.data(), b.data(), n, q, add_two.data(), &two);
  EXPECT_EQ(add_one, add_want);
  EXPECT_EQ(add_two, add_want);
}

TEST(QPoolShapeTest, Validation) {
  QPoolShape s;
  s.input_height = s.input_width = 4;
  s.kernel_height = s.kernel_width = 3;
  EXPECT_TRUE(ValidateQPoolShape(s).ok());
  s.padding_top = 3;
  EXPECT_EQ(ValidateQPoolShape(s).code(), absl::StatusCode::kInvalidArgument);
  s.padding_top = 0;
  s.stride_width = 0;
  EXPECT_FALSE(ValidateQPoolShape(s).ok());
  s.stride_width = 1;
  s.input_width = 2;
  EXPECT_FALSE(ValidateQPoolShape(s).ok());
}

}  // namespace
}  // namespace qlab::kernels
