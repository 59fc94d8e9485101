// Tests of kernels/quantize: every kernel against its scalar oracle (quantize_ref.h) on every
// Highway target compiled in and supported by this CPU, plus hand-computed cases that pin the
// documented semantics (rounding, saturation, NaN/Inf) independently of the oracle.
//
// Every step of these kernels is one IEEE-754 operation or integer math, so outputs must be
// identical, floats included: there is no tolerance anywhere in this file.
//
// Randomness: each case draws from std::mt19937 seeded with kBaseSeed plus a case number, printed
// on failure; `--gtest_random_seed=N` replaces kBaseSeed to explore other data.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "hwy/tests/hwy_gtest.h"
#include "kernels/quantize/quantize.h"
#include "kernels/quantize/quantize_ref.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kBaseSeed = 20261122;
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t BaseSeed() {
  const int flag = ::testing::GTEST_FLAG(random_seed);
  return flag != 0 ? static_cast<uint32_t>(flag) : kBaseSeed;
}

// Odd sizes around every vector width (4, 8, 16 float lanes) and the 4x unrolled loops.
const size_t kSizes[] = {0, 1, 3, 7, 15, 16, 17, 31, 63, 64, 65, 127, 1000, 4099};
// Element offsets into a 64-byte-aligned buffer: misaligned starts.
const size_t kOffsets[] = {0, 1, 3};

// Shapes [outer, channels, inner]: channel innermost (NHWC) with odd channel counts, channel in
// the middle (NCHW) with odd spatial sizes, weights (outer 1), and per-tensor-like.
const ChannelDims kChannelShapes[] = {{5, 17, 1}, {3, 64, 1}, {2, 3, 17}, {1, 33, 49},
                                      {2, 16, 16}, {7, 1, 1}, {1, 5, 1}, {4, 70, 1}};

// Test data mixing the cases a quantizer must get right: values spread over (and beyond) the
// representable range, exact .5 ties of the scale (round half to even), zeros of both signs,
// tiny and huge magnitudes; and optionally +-Inf and NaN.
std::vector<float> MakeData(size_t n, float scale, float span, bool non_finite,
                            std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-span, span);
  std::uniform_int_distribution<int> integer(-300, 300);
  std::uniform_int_distribution<int> kind(0, 9);
  std::vector<float> data(n);
  for (float& v : data) {
    switch (kind(rng)) {
      case 0:
        v = (static_cast<float>(integer(rng)) + 0.5f) * scale;  // a tie after scaling
        break;
      case 1:
        v = static_cast<float>(integer(rng)) * scale;
        break;
      case 2: {
        const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e30f, -1e30f};
        v = specials[static_cast<size_t>(integer(rng) + 300) % 6];
        break;
      }
      case 3:
        if (non_finite) {
          const float specials[] = {kInf, -kInf, std::numeric_limits<float>::quiet_NaN()};
          v = specials[static_cast<size_t>(integer(rng) + 300) % 3];
          break;
        }
        [[fallthrough]];
      default:
        v = uniform(rng);
    }
  }
  return data;
}

// First index where two arrays differ bitwise, or -1.
template <typename T>
long FirstMismatch(const T* a, const T* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return static_cast<long>(i);
  }
  return -1;
}

template <typename T>
std::string Show(T v) {
  if constexpr (sizeof(T) == 1) {
    return std::to_string(static_cast<int>(v));
  } else {
    return ::testing::PrintToString(v);
  }
}

// Asserts bitwise equality and prints the first mismatch with its input.
#define EXPECT_SAME_OUTPUT(actual, expected, n, input, what)                                   \
  do {                                                                                         \
    const long mismatch = FirstMismatch((actual), (expected), (n));                            \
    EXPECT_EQ(mismatch, -1) << what << ": at " << mismatch << " got "                         \
                            << Show((actual)[mismatch < 0 ? 0 : mismatch]) << " expected "    \
                            << Show((expected)[mismatch < 0 ? 0 : mismatch]) << " for input " \
                            << Show((input)[mismatch < 0 ? 0 : mismatch]);                     \
  } while (false)

struct AffineCase {
  float scale;
  int32_t zero_point;
  int32_t quant_min;
  int32_t quant_max;
};

// int8 asymmetric (zero points at both ends), restricted symmetric [-127, 127], power-of-two
// scales (exact ties), tiny and large scales.
const AffineCase kInt8Cases[] = {{0.25f, 0, -128, 127},    {0.0123f, -128, -128, 127},
                                 {0.0123f, 127, -128, 127}, {3.7f, 5, -128, 127},
                                 {1e-5f, 0, -127, 127},     {0.5f, -3, -128, 127}};
const AffineCase kUint8Cases[] = {{0.25f, 128, 0, 255},  {0.0123f, 0, 0, 255},
                                  {0.0123f, 255, 0, 255}, {3.7f, 77, 0, 255},
                                  {1e-5f, 0, 0, 127},     {0.125f, 200, 0, 255}};
// Fake-quantize also covers 4-bit and 2-bit ranges and a 16-bit range.
const AffineCase kFakeQuantCases[] = {{0.25f, 0, -128, 127}, {0.0123f, 3, 0, 255},
                                      {0.1f, 0, -8, 7},      {0.3f, 1, -2, 1},
                                      {1e-4f, 0, -32768, 32767}};

std::string Describe(const AffineCase& c, size_t n, size_t offset, uint32_t seed) {
  return "scale=" + std::to_string(c.scale) + " zero_point=" + std::to_string(c.zero_point) +
         " range=[" + std::to_string(c.quant_min) + "," + std::to_string(c.quant_max) +
         "] n=" + std::to_string(n) + " offset=" + std::to_string(offset) +
         " seed=" + std::to_string(seed);
}

std::string Describe(const ChannelDims& dims, uint32_t seed) {
  return "dims=[" + std::to_string(dims.outer) + "," + std::to_string(dims.channels) + "," +
         std::to_string(dims.inner) + "] seed=" + std::to_string(seed);
}

// Per-channel parameters: varied scales and zero points inside [quant_min, quant_max].
struct ChannelParams {
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
};
ChannelParams MakeChannelParams(size_t channels, int32_t quant_min, int32_t quant_max,
                                std::mt19937& rng) {
  std::uniform_real_distribution<float> log_scale(-8.0f, 1.0f);
  std::uniform_int_distribution<int32_t> zp(quant_min, quant_max);
  ChannelParams p;
  for (size_t c = 0; c < channels; ++c) {
    p.scales.push_back(std::exp2(log_scale(rng)));
    p.zero_points.push_back(zp(rng));
  }
  return p;
}

class QuantizeKernelsTest : public hwy::TestWithParamTarget {};
HWY_TARGET_INSTANTIATE_TEST_SUITE_P(QuantizeKernelsTest);

template <typename Q>
void CheckQuantizePerTensor(const AffineCase* cases, size_t num_cases) {
  uint32_t seed = BaseSeed();
  for (size_t ci = 0; ci < num_cases; ++ci) {
    const AffineCase& c = cases[ci];
    for (size_t n : kSizes) {
      for (size_t offset : kOffsets) {
        std::mt19937 rng(++seed);
        SCOPED_TRACE(Describe(c, n, offset, seed));
        const float span = 300.0f * c.scale;
        std::vector<float> x(offset);
        const std::vector<float> data = MakeData(n, c.scale, span, /*non_finite=*/true, rng);
        x.insert(x.end(), data.begin(), data.end());
        std::vector<Q> actual(n + offset), expected(n + offset);
        Quantize(x.data() + offset, n, {c.scale, c.zero_point, c.quant_min, c.quant_max},
                 actual.data() + offset);
        QuantizeRef(x.data() + offset, ChannelDims{1, 1, n},
                    {&c.scale, &c.zero_point, c.quant_min, c.quant_max}, expected.data() + offset);
        EXPECT_SAME_OUTPUT(actual.data() + offset, expected.data() + offset, n,
                           x.data() + offset, "Quantize");
      }
    }
  }
}

TEST_P(QuantizeKernelsTest, QuantizeToInt8MatchesReference) {
  CheckQuantizePerTensor<int8_t>(kInt8Cases, std::size(kInt8Cases));
}
TEST_P(QuantizeKernelsTest, QuantizeToUint8MatchesReference) {
  CheckQuantizePerTensor<uint8_t>(kUint8Cases, std::size(kUint8Cases));
}

template <typename Q>
void CheckQuantizePerChannel(int32_t quant_min, int32_t quant_max) {
  uint32_t seed = BaseSeed() + 1000;
  for (const ChannelDims& dims : kChannelShapes) {
    std::mt19937 rng(++seed);
    SCOPED_TRACE(Describe(dims, seed));
    const ChannelParams p = MakeChannelParams(dims.channels, quant_min, quant_max, rng);
    const std::vector<float> x = MakeData(dims.size(), 0.1f, 40.0f, /*non_finite=*/true, rng);
    std::vector<Q> actual(dims.size()), expected(dims.size());
    const PerChannelAffineParams params{p.scales.data(), p.zero_points.data(), quant_min,
                                        quant_max};
    QuantizePerChannel(x.data(), dims, params, actual.data());
    QuantizeRef(x.data(), dims, params, expected.data());
    EXPECT_SAME_OUTPUT(actual.data(), expected.data(), dims.size(), x.data(),
                       "QuantizePerChannel");
  }
}

TEST_P(QuantizeKernelsTest, QuantizePerChannelMatchesReference) {
  CheckQuantizePerChannel<int8_t>(-128, 127);
  CheckQuantizePerChannel<int8_t>(-127, 127);
  CheckQuantizePerChannel<uint8_t>(0, 255);
}

// Semantics pinned by hand, independent of the oracle.
TEST_P(QuantizeKernelsTest, QuantizeRoundsHalfToEvenAndSaturates) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // scale 0.5, zero point 10: x / 0.5 = 2x exactly.
  const float x[] = {1.25f, 1.75f, -1.25f, 0.0f, -0.0f, 1000.0f, -1000.0f, kInf, -kInf, nan,
                     58.5f, 58.75f};
  const int8_t expected[] = {12, 14, 8, 10, 10, 127, -128, 127, -128, 10, 127, 127};
  // 2.5 -> 2, 3.5 -> 4, -2.5 -> -2 (ties to even); NaN -> zero point; +-Inf and out-of-range
  // values saturate; 117 + 10 = 127 is the last representable value.
  int8_t actual[std::size(x)];
  Quantize(x, std::size(x), {0.5f, 10, -128, 127}, actual);
  for (size_t i = 0; i < std::size(x); ++i) {
    EXPECT_EQ(actual[i], expected[i]) << "x=" << x[i];
  }
  uint8_t actual_u8[std::size(x)];
  const uint8_t expected_u8[] = {2, 4, 0, 0, 0, 255, 0, 255, 0, 0, 117, 118};
  Quantize(x, std::size(x), {0.5f, 0, 0, 255}, actual_u8);
  for (size_t i = 0; i < std::size(x); ++i) {
    EXPECT_EQ(actual_u8[i], expected_u8[i]) << "x=" << x[i];
  }
}

template <typename Q>
void CheckDequantize(int32_t quant_min, int32_t quant_max) {
  uint32_t seed = BaseSeed() + 2000;
  std::uniform_int_distribution<int32_t> value(quant_min, quant_max);
  for (size_t n : kSizes) {
    for (size_t offset : kOffsets) {
      std::mt19937 rng(++seed);
      SCOPED_TRACE("n=" + std::to_string(n) + " offset=" + std::to_string(offset) +
                   " seed=" + std::to_string(seed));
      std::vector<Q> q(n + offset);
      for (Q& v : q) v = static_cast<Q>(value(rng));
      std::vector<float> actual(n + offset), expected(n + offset);
      const float scale = 0.0371f;
      const int32_t zero_point = value(rng);
      Dequantize(q.data() + offset, n, scale, zero_point, actual.data() + offset);
      DequantizeRef(q.data() + offset, ChannelDims{1, 1, n}, &scale, &zero_point,
                    expected.data() + offset);
      EXPECT_SAME_OUTPUT(actual.data() + offset, expected.data() + offset, n,
                         q.data() + offset, "Dequantize");
    }
  }
  for (const ChannelDims& dims : kChannelShapes) {
    std::mt19937 rng(++seed);
    SCOPED_TRACE(Describe(dims, seed));
    const ChannelParams p = MakeChannelParams(dims.channels, quant_min, quant_max, rng);
    std::vector<Q> q(dims.size());
    for (Q& v : q) v = static_cast<Q>(value(rng));
    std::vector<float> actual(dims.size()), expected(dims.size());
    DequantizePerChannel(q.data(), dims, p.scales.data(), p.zero_points.data(), actual.data());
    DequantizeRef(q.data(), dims, p.scales.data(), p.zero_points.data(), expected.data());
    EXPECT_SAME_OUTPUT(actual.data(), expected.data(), dims.size(), q.data(),
                       "DequantizePerChannel");
  }
}

TEST_P(QuantizeKernelsTest, DequantizeMatchesReference) {
  CheckDequantize<int8_t>(-128, 127);
  CheckDequantize<uint8_t>(0, 255);
  // int32 (bias): values and zero points kept so that q - zero_point cannot overflow.
  CheckDequantize<int32_t>(-(1 << 30), 1 << 30);
}

TEST_P(QuantizeKernelsTest, DequantizeKnownValues) {
  const int8_t q[] = {-128, 0, 10, 127};
  float y[4];
  Dequantize(q, 4, 0.5f, 10, y);
  EXPECT_EQ(y[0], -69.0f);
  EXPECT_EQ(y[1], -5.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 58.5f);
}

TEST_P(QuantizeKernelsTest, FakeQuantizeMatchesReference) {
  uint32_t seed = BaseSeed() + 3000;
  for (const AffineCase& c : kFakeQuantCases) {
    for (size_t n : kSizes) {
      for (size_t offset : kOffsets) {
        std::mt19937 rng(++seed);
        SCOPED_TRACE(Describe(c, n, offset, seed));
        const float span = 1.3f * c.scale * static_cast<float>(c.quant_max - c.quant_min);
        std::vector<float> x(offset);
        const std::vector<float> data = MakeData(n, c.scale, span, /*non_finite=*/true, rng);
        x.insert(x.end(), data.begin(), data.end());
        std::vector<float> actual(n + offset), expected(n + offset);
        std::vector<uint8_t> mask(n + offset), expected_mask(n + offset);
        const AffineParams params{c.scale, c.zero_point, c.quant_min, c.quant_max};
        FakeQuantize(x.data() + offset, n, params, actual.data() + offset, mask.data() + offset);
        FakeQuantizeRef(x.data() + offset, ChannelDims{1, 1, n},
                        {&c.scale, &c.zero_point, c.quant_min, c.quant_max},
                        expected.data() + offset, expected_mask.data() + offset);
        EXPECT_SAME_OUTPUT(actual.data() + offset, expected.data() + offset, n,
                           x.data() + offset, "FakeQuantize");
        EXPECT_SAME_OUTPUT(mask.data() + offset, expected_mask.data() + offset, n,
                           x.data() + offset, "FakeQuantize mask");
        // Without a mask pointer the values are the same.
        std::vector<float> no_mask(n + offset);
        FakeQuantize(x.data() + offset, n, params, no_mask.data() + offset, nullptr);
        EXPECT_SAME_OUTPUT(no_mask.data() + offset, expected.data() + offset, n,
                           x.data() + offset, "FakeQuantize without mask");
      }
    }
  }
  for (const ChannelDims& dims : kChannelShapes) {
    std::mt19937 rng(++seed);
    SCOPED_TRACE(Describe(dims, seed));
    const ChannelParams p = MakeChannelParams(dims.channels, -8, 7, rng);
    const std::vector<float> x = MakeData(dims.size(), 0.1f, 4.0f, /*non_finite=*/true, rng);
    std::vector<float> actual(dims.size()), expected(dims.size());
    std::vector<uint8_t> mask(dims.size()), expected_mask(dims.size());
    const PerChannelAffineParams params{p.scales.data(), p.zero_points.data(), -8, 7};
    FakeQuantizePerChannel(x.data(), dims, params, actual.data(), mask.data());
    FakeQuantizeRef(x.data(), dims, params, expected.data(), expected_mask.data());
    EXPECT_SAME_OUTPUT(actual.data(), expected.data(), dims.size(), x.data(),
                       "FakeQuantizePerChannel");
    EXPECT_SAME_OUTPUT(mask.data(), expected_mask.data(), dims.size(), x.data(),
                       "FakeQuantizePerChannel mask");
  }
}

TEST_P(QuantizeKernelsTest, FakeQuantizeKnownValuesAndMask) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 4-bit signed, scale 0.5, zero point 0: representable values -4.0 ... 3.5.
  const float x[] = {1.25f, -4.0f, -4.3f, 3.5f, 3.74f, 3.76f, 100.0f, kInf, -kInf, nan};
  const float expected[] = {1.0f, -4.0f, -4.0f, 3.5f, 3.5f, 3.5f, 3.5f, 3.5f, -4.0f, 0.0f};
  // The mask looks at the rounded, unclamped value: -4.3 rounds to -9 (outside), 3.74 rounds to
  // 7 (inside), 3.76 rounds to 8 (outside).
  const uint8_t expected_mask[] = {1, 1, 0, 1, 1, 0, 0, 0, 0, 0};
  float y[std::size(x)];
  uint8_t mask[std::size(x)];
  FakeQuantize(x, std::size(x), {0.5f, 0, -8, 7}, y, mask);
  for (size_t i = 0; i < std::size(x); ++i) {
    EXPECT_EQ(y[i], expected[i]) << "x=" << x[i];
    EXPECT_EQ(mask[i], expected_mask[i]) << "x=" << x[i];
  }
}

std::vector<int32_t> MakeAccumulators(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> small(-100000, 100000);
  std::uniform_int_distribution<int32_t> any(std::numeric_limits<int32_t>::min(),
                                             std::numeric_limits<int32_t>::max());
  std::uniform_int_distribution<int> kind(0, 7);
  std::vector<int32_t> acc(n);
  for (int32_t& a : acc) {
    switch (kind(rng)) {
      case 0:
        a = any(rng);
        break;
      case 1:
        a = (kind(rng) & 1) ? std::numeric_limits<int32_t>::max()
                            : std::numeric_limits<int32_t>::min();
        break;
      default:
        a = small(rng);
    }
  }
  return acc;
}

template <typename Q>
void CheckRequantize(const RequantizeOutput& output) {
  uint32_t seed = BaseSeed() + 4000;
  std::uniform_real_distribution<float> log_multiplier(-16.0f, -1.0f);
  std::uniform_int_distribution<int32_t> fixed_multiplier(1 << 30, std::numeric_limits<int32_t>::max());
  std::uniform_int_distribution<int32_t> shift(31, 62);
  std::vector<ChannelDims> shapes;
  for (size_t n : kSizes) shapes.push_back({1, 1, n});
  shapes.insert(shapes.end(), std::begin(kChannelShapes), std::end(kChannelShapes));
  for (const ChannelDims& dims : shapes) {
    std::mt19937 rng(++seed);
    SCOPED_TRACE(Describe(dims, seed) + " output zero_point=" +
                 std::to_string(output.zero_point));
    const std::vector<int32_t> acc = MakeAccumulators(dims.size(), rng);
    std::vector<float> multipliers;
    std::vector<int32_t> fixed, shifts;
    for (size_t c = 0; c < dims.channels; ++c) {
      multipliers.push_back(std::exp2(log_multiplier(rng)));
      fixed.push_back(fixed_multiplier(rng));
      // Mostly realistic shifts (real multipliers 2^-1 ... 2^-16), sometimes the extremes.
      shifts.push_back(c % 5 == 4 ? shift(rng) : 31 + static_cast<int32_t>(c % 16));
    }
    std::vector<Q> actual(dims.size()), expected(dims.size());
    Requantize(acc.data(), dims, multipliers.data(), output, actual.data());
    RequantizeRef(acc.data(), dims, multipliers.data(), output, expected.data());
    EXPECT_SAME_OUTPUT(actual.data(), expected.data(), dims.size(), acc.data(), "Requantize");
    RequantizeFixedPoint(acc.data(), dims, fixed.data(), shifts.data(), output, actual.data());
    RequantizeFixedPointRef(acc.data(), dims, fixed.data(), shifts.data(), output,
                            expected.data());
    EXPECT_SAME_OUTPUT(actual.data(), expected.data(), dims.size(), acc.data(),
                       "RequantizeFixedPoint");
  }
}

TEST_P(QuantizeKernelsTest, RequantizeMatchesReference) {
  CheckRequantize<int8_t>({0, -128, 127});
  CheckRequantize<int8_t>({-128, -128, 127});
  CheckRequantize<int8_t>({127, -128, 127});
  CheckRequantize<int8_t>({-128, -128, 127});
  CheckRequantize<uint8_t>({0, 0, 255});    // fused ReLU: clamp at the zero point
  CheckRequantize<uint8_t>({255, 0, 255});
  CheckRequantize<uint8_t>({128, 128, 255});  // ReLU with zero point 128
}

TEST_P(QuantizeKernelsTest, RequantizeFixedPointRoundsTiesUp) {
  // multiplier 2^30 with shift 31 is exactly 0.5: ties appear at odd accumulators.
  const int32_t acc[] = {100, 3, -3, 1, -1, 5, 254, 256, std::numeric_limits<int32_t>::min()};
  const int8_t expected[] = {50, 2, -1, 1, 0, 3, 127, 127, -128};
  const int32_t multiplier = 1 << 30, shift = 31;
  int8_t y[std::size(acc)];
  RequantizeFixedPoint(acc, ChannelDims{1, 1, std::size(acc)}, &multiplier, &shift,
                       {0, -128, 127}, y);
  for (size_t i = 0; i < std::size(acc); ++i) {
    EXPECT_EQ(y[i], expected[i]) << "acc=" << acc[i];
  }
  // Float form: 0.5 with ties to even.
  const float half = 0.5f;
  const int8_t expected_float[] = {50, 2, -2, 0, 0, 2, 127, 127, -128};
  Requantize(acc, ChannelDims{1, 1, std::size(acc)}, &half, {0, -128, 127}, y);
  for (size_t i = 0; i < std::size(acc); ++i) {
    EXPECT_EQ(y[i], expected_float[i]) << "acc=" << acc[i];
  }
}

TEST_P(QuantizeKernelsTest, MinMaxMatchesReference) {
  uint32_t seed = BaseSeed() + 5000;
  for (bool non_finite : {false, true}) {
    for (size_t n : kSizes) {
      for (size_t offset : kOffsets) {
        std::mt19937 rng(++seed);
        SCOPED_TRACE("n=" + std::to_string(n) + " offset=" + std::to_string(offset) +
                     " seed=" + std::to_string(seed));
        std::vector<float> x(offset);
        const std::vector<float> data = MakeData(n, 0.1f, 50.0f, non_finite, rng);
        x.insert(x.end(), data.begin(), data.end());
        const MinMaxResult actual = MinMax(x.data() + offset, n);
        const MinMaxResult expected = MinMaxRef(x.data() + offset, n);
        // == rather than bitwise: min(-0.0, +0.0) may return either zero.
        EXPECT_EQ(actual.min, expected.min);
        EXPECT_EQ(actual.max, expected.max);
        EXPECT_EQ(actual.nan_count, expected.nan_count);
      }
    }
    for (const ChannelDims& dims : kChannelShapes) {
      std::mt19937 rng(++seed);
      SCOPED_TRACE(Describe(dims, seed));
      const std::vector<float> x = MakeData(dims.size(), 0.1f, 50.0f, non_finite, rng);
      std::vector<float> mins(dims.channels), maxs(dims.channels);
      std::vector<float> expected_mins(dims.channels), expected_maxs(dims.channels);
      const size_t nans = MinMaxPerChannel(x.data(), dims, mins.data(), maxs.data());
      const size_t expected_nans =
          MinMaxPerChannelRef(x.data(), dims, expected_mins.data(), expected_maxs.data());
      EXPECT_EQ(nans, expected_nans);
      for (size_t c = 0; c < dims.channels; ++c) {
        EXPECT_EQ(mins[c], expected_mins[c]) << "channel " << c;
        EXPECT_EQ(maxs[c], expected_maxs[c]) << "channel " << c;
      }
    }
  }
}

TEST_P(QuantizeKernelsTest, MinMaxSkipsAndCountsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(100, 1.0f);
  x[0] = nan;
  x[17] = -3.0f;
  x[50] = nan;
  x[99] = 8.0f;  // in the tail for every vector width
  const MinMaxResult r = MinMax(x.data(), x.size());
  EXPECT_EQ(r.min, -3.0f);
  EXPECT_EQ(r.max, 8.0f);
  EXPECT_EQ(r.nan_count, 2u);

  const MinMaxResult empty = MinMax(x.data(), 0);
  EXPECT_EQ(empty.min, kInf);
  EXPECT_EQ(empty.max, -kInf);
  EXPECT_EQ(empty.nan_count, 0u);

  const float all_nan[] = {nan, nan, nan};
  const MinMaxResult none = MinMax(all_nan, 3);
  EXPECT_EQ(none.min, kInf);
  EXPECT_EQ(none.max, -kInf);
  EXPECT_EQ(none.nan_count, 3u);
}

}  // namespace
}  // namespace qlab::kernels
