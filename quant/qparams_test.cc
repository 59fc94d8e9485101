// ChooseQParams on hand-computed cases (PyTorch's rules written out), validation errors, and
// QuantizeMultiplier. qparams_conformance_test compares against PyTorch itself.
#include "quant/qparams.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace qlab {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

QuantTarget Int8Affine() { return {DType::kInt8, -128, 127, QScheme::kPerTensorAffine}; }
QuantTarget UInt8Affine() { return {DType::kUInt8, 0, 255, QScheme::kPerTensorAffine}; }
QuantTarget Int8Symmetric(int32_t quant_min = -128) {
  return {DType::kInt8, quant_min, 127, QScheme::kPerTensorSymmetric};
}

TEST(ChooseQParamsTest, AffineWidensRangeToIncludeZero) {
  // [1, 3] is widened to [0, 3]: scale = 3 / 255, zero point = quant_min.
  const QuantParams p = *ChooseQParams(1.0f, 3.0f, UInt8Affine());
  EXPECT_EQ(p.scales[0], 3.0f / 255.0f);
  EXPECT_EQ(p.zero_points[0], 0);
  // [-2, -1] widened to [-2, 0]: zero point at the top.
  const QuantParams n = *ChooseQParams(-2.0f, -1.0f, Int8Affine());
  EXPECT_EQ(n.scales[0], 2.0f / 255.0f);
  EXPECT_EQ(n.zero_points[0], 127);
}

TEST(ChooseQParamsTest, AffineZeroPointRoundsHalfToEven) {
  // min' = -1.5 * scale exactly with scale = 1: 255 = max - min => max = 253.5, and
  // -128 - round(-1.5) = -128 + 2 = -126 (ties to even: -1.5 -> -2).
  const QuantParams p = *ChooseQParams(-1.5f, 253.5f, Int8Affine());
  EXPECT_EQ(p.scales[0], 1.0f);
  EXPECT_EQ(p.zero_points[0], -126);
  // -2.5 -> -2: zero point -126 again.
  const QuantParams q = *ChooseQParams(-2.5f, 252.5f, Int8Affine());
  EXPECT_EQ(q.zero_points[0], -126);
}

TEST(ChooseQParamsTest, SymmetricRanges) {
  // Full int8: divide by 255 / 2 = 127.5; restricted [-127, 127]: by 127.
  EXPECT_EQ(ChooseQParams(-2.0f, 1.0f, Int8Symmetric())->scales[0], 2.0f / 127.5f);
  const QuantParams restricted = *ChooseQParams(-1.0f, 2.54f, Int8Symmetric(-127));
  EXPECT_EQ(restricted.scales[0], 2.54f / 127.0f);
  EXPECT_EQ(restricted.zero_points[0], 0);
  // uint8 symmetric: zero point 128 for the default range, floor of mid-range otherwise.
  EXPECT_EQ(ChooseQParams(-1.0f, 1.0f, {DType::kUInt8, 0, 255, QScheme::kPerTensorSymmetric})
                ->zero_points[0],
            128);
  EXPECT_EQ(ChooseQParams(-1.0f, 1.0f, {DType::kUInt8, 0, 127, QScheme::kPerTensorSymmetric})
                ->zero_points[0],
            63);
}

TEST(ChooseQParamsTest, ConstantAndZeroRangesAreValid) {
  const QuantParams zero = *ChooseQParams(0.0f, 0.0f, Int8Affine());
  EXPECT_EQ(zero.scales[0], std::numeric_limits<float>::epsilon());  // floored at eps
  EXPECT_EQ(zero.zero_points[0], -128);
  EXPECT_TRUE(zero.Validate().ok());
  const QuantParams constant = *ChooseQParams(5.0f, 5.0f, Int8Symmetric());
  EXPECT_EQ(constant.scales[0], 5.0f / 127.5f);
  QuantTarget coarse_eps = Int8Affine();
  coarse_eps.eps = 0x1p-12f;
  EXPECT_EQ(ChooseQParams(0.0f, 1e-6f, coarse_eps)->scales[0], 0x1p-12f);
}

TEST(ChooseQParamsTest, PerChannel) {
  const float mins[] = {-1.0f, 0.5f, -4.0f};
  const float maxs[] = {1.0f, 2.0f, 0.0f};
  const QuantParams p = *ChooseQParamsPerChannel(
      mins, maxs, /*axis=*/0, {DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric});
  ASSERT_EQ(p.num_channels(), 3u);
  EXPECT_EQ(p.scales[0], 1.0f / 127.0f);
  EXPECT_EQ(p.scales[1], 2.0f / 127.0f);
  EXPECT_EQ(p.scales[2], 4.0f / 127.0f);
  EXPECT_EQ(p.axis, 0);
  EXPECT_TRUE(p.Validate().ok());
}

TEST(ChooseQParamsTest, BadRangesAndTargetsAreErrors) {
  EXPECT_EQ(ChooseQParams(NAN, 1.0f, Int8Affine()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParams(2.0f, 1.0f, Int8Affine()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParams(-kInf, 1.0f, Int8Affine()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChooseQParams(kInf, -kInf, Int8Affine()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A range outside the dtype, an empty range, float32 as a quantized type, bad eps.
  const absl::Status out_of_dtype =
      ChooseQParams(0.0f, 1.0f, {DType::kInt8, -128, 200, QScheme::kPerTensorAffine}).status();
  EXPECT_EQ(out_of_dtype.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out_of_dtype.message().find("200"), absl::string_view::npos);
  EXPECT_FALSE(ChooseQParams(0.0f, 1.0f, {DType::kUInt8, 5, 5}).ok());
  EXPECT_FALSE(ChooseQParams(0.0f, 1.0f, {DType::kFloat32, 0, 1}).ok());
  QuantTarget zero_eps = Int8Affine();
  zero_eps.eps = 0.0f;
  EXPECT_FALSE(ChooseQParams(0.0f, 1.0f, zero_eps).ok());
  // Scheme mismatches and per-channel shape errors name what is wrong.
  EXPECT_FALSE(
      ChooseQParams(0.0f, 1.0f, {DType::kInt8, -128, 127, QScheme::kPerChannelAffine}).ok());
  const float mins[] = {0.0f, NAN};
  const float maxs[] = {1.0f, 1.0f};
  const absl::Status nan_channel =
      ChooseQParamsPerChannel(mins, maxs, 0, {DType::kInt8, -128, 127, QScheme::kPerChannelAffine})
          .status();
  EXPECT_NE(nan_channel.message().find("channel 1"), absl::string_view::npos);
  EXPECT_FALSE(ChooseQParamsPerChannel(mins, absl::MakeConstSpan(maxs, 1), 0,
                                       {DType::kInt8, -128, 127, QScheme::kPerChannelAffine})
                   .ok());
}

TEST(QuantParamsTest, ValidateNamesTheOffendingValue) {
  QuantParams p{DType::kUInt8, 0, 255, QScheme::kPerTensorAffine, -1, {0.1f}, {300}};
  absl::Status s = p.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("300"), absl::string_view::npos);
  p.zero_points = {3};
  p.scales = {0.0f};
  EXPECT_NE(p.Validate().message().find("scale[0]"), absl::string_view::npos);
  p.scales = {0.1f, 0.2f};
  p.zero_points = {0, 0};
  EXPECT_FALSE(p.Validate().ok());  // two scales for a per-tensor scheme
  p.qscheme = QScheme::kPerChannelAffine;
  EXPECT_FALSE(p.Validate().ok());  // per-channel without an axis
  p.axis = 1;
  EXPECT_TRUE(p.Validate().ok());
  EXPECT_EQ(p.DebugString(), "uint8[0,255] per_channel_affine axis=1 scale=0.1,0.2 zero_point=0,0");
}

TEST(QuantizeMultiplierTest, RepresentsTheRealMultiplier) {
  for (double real : {0.5, 0.75, 0.123456789, 1e-3, 3.3e-7, 0x1p-32, 0.9999999}) {
    const FixedPointMultiplier m = *QuantizeMultiplier(real);
    EXPECT_GE(m.multiplier, 1 << 30) << real;
    EXPECT_GE(m.shift, 31) << real;
    EXPECT_LE(m.shift, 62) << real;
    // Rounded to nearest: relative error at most half a unit in the last of 31 bits.
    EXPECT_NEAR(std::ldexp(static_cast<double>(m.multiplier), -m.shift), real, real * 0x1p-30)
        << real;
  }
  EXPECT_EQ(QuantizeMultiplier(0.5)->multiplier, 1 << 30);
  EXPECT_EQ(QuantizeMultiplier(0.5)->shift, 31);
  EXPECT_FALSE(QuantizeMultiplier(1.0).ok());
  EXPECT_FALSE(QuantizeMultiplier(0.0).ok());
  EXPECT_FALSE(QuantizeMultiplier(-0.5).ok());
  EXPECT_FALSE(QuantizeMultiplier(NAN).ok());
}

}  // namespace
}  // namespace qlab
