// Tests of kernels/qpool against qpool_ref.h on every Highway target compiled in and supported by
// this CPU. Integer math is exact and the add's float steps are single IEEE operations: no
// tolerance. Channel counts and lengths sweep around every vector width (1, 3, 15, 16, 17, 63,
// 64, 65, ...), windows include ResNet's 3x3/2 pad 1 max pool and padding-only corners, and the
// add runs with fused ReLU, saturation at both ends and exact .5 ties.
// Randomness: std::mt19937 seeded with kBaseSeed plus a case number (printed on failure).
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/qpool/qpool.h"
#include "kernels/qpool/qpool_ref.h"

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
        ASSERT_EQ(actual, expected) << "kernel " << w.kernel << " stride " << w.stride
                                    << " padding " << w.padding << " size " << size
                                    << " channels " << c << " seed " << seed;
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
        ASSERT_EQ(actual, expected) << "channels " << c << " pixels " << pixels << " zp " << zp
                                    << " seed " << seed;
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
