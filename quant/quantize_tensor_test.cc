// The Tensor-level quantization front: per-channel on any axis (NCHW and NHWC give the same
// values), round trips, and a specific Status for each kind of bad input.
#include "quant/quantize_tensor.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace qlab {
namespace {

Tensor RandomNCHW(int n, int c, int h, int w, uint32_t seed) {
  Tensor t = *Tensor::Create(DType::kFloat32, {n, c, h, w}, Layout::kNCHW);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

// NCHW -> NHWC copy.
Tensor ToNHWC(const Tensor& x) {
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor y = *Tensor::Create(x.dtype(), {n, h, w, c}, Layout::kNHWC);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t ic = 0; ic < c; ++ic)
      for (int64_t ih = 0; ih < h; ++ih)
        for (int64_t iw = 0; iw < w; ++iw)
          y.data<float>()[((in * h + ih) * w + iw) * c + ic] =
              x.data<float>()[((in * c + ic) * h + ih) * w + iw];
  return y;
}

QuantParams PerChannelInt8(int axis, const ChannelRanges& r) {
  return *ChooseQParamsPerChannel(r.mins, r.maxs, axis,
                                  {DType::kInt8, -128, 127, QScheme::kPerChannelAffine});
}

TEST(QuantizeTensorTest, PerChannelIsTheSameOnNCHWAndNHWC) {
  const Tensor nchw = RandomNCHW(2, 5, 3, 7, 1);
  const Tensor nhwc = ToNHWC(nchw);
  const ChannelRanges r_nchw = *TensorMinMaxPerChannel(nchw, 1);
  const ChannelRanges r_nhwc = *TensorMinMaxPerChannel(nhwc, -1);
  EXPECT_EQ(r_nchw.mins, r_nhwc.mins);
  EXPECT_EQ(r_nchw.maxs, r_nhwc.maxs);
  for (int c = 0; c < 5; ++c) {  // the ranges really are per channel
    float lo = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 21; ++k) lo = std::min(lo, nchw.data<float>()[(i * 5 + c) * 21 + k]);
    EXPECT_EQ(r_nchw.mins[c], lo);
  }
  const Tensor q_nchw = *QuantizeTensor(nchw, PerChannelInt8(1, r_nchw));
  const Tensor q_nhwc = *QuantizeTensor(nhwc, PerChannelInt8(3, r_nhwc));
  EXPECT_EQ(q_nhwc.layout(), Layout::kNHWC);
  const Tensor back_nchw = *DequantizeTensor(q_nchw, PerChannelInt8(1, r_nchw));
  const Tensor back_nhwc = *DequantizeTensor(q_nhwc, PerChannelInt8(3, r_nhwc));
  const Tensor back_as_nhwc = ToNHWC(back_nchw);
  for (int64_t i = 0; i < back_nhwc.numel(); ++i) {
    ASSERT_EQ(back_nhwc.data<float>()[i], back_as_nhwc.data<float>()[i]) << i;
  }
}

TEST(QuantizeTensorTest, RoundTripErrorIsAtMostHalfAStep) {
  const Tensor x = RandomNCHW(1, 3, 8, 8, 2);
  const Range r = *TensorMinMax(x);
  const QuantParams p = *ChooseQParams(r.min, r.max, {DType::kUInt8, 0, 255});
  const Tensor back = *DequantizeTensor(*QuantizeTensor(x, p), p);
  const FakeQuantized fq = *FakeQuantizeTensor(x, p, /*with_mask=*/true);
  for (int64_t i = 0; i < x.numel(); ++i) {
    // Half a step, plus float rounding of x / scale (a few ulps of the step).
    EXPECT_LE(std::abs(back.data<float>()[i] - x.data<float>()[i]), p.scales[0] * 0.5001f);
    EXPECT_EQ(fq.values.data<float>()[i], back.data<float>()[i]);  // same arithmetic
    EXPECT_EQ(fq.mask.data<uint8_t>()[i], 1);  // calibrated on x itself: nothing clipped
  }
}

TEST(QuantizeTensorTest, BadInputsGetSpecificErrors) {
  const Tensor x = RandomNCHW(1, 4, 2, 2, 3);
  const QuantParams per_tensor = *ChooseQParams(-1.0f, 1.0f, {});
  // Wrong input dtype.
  const Tensor q = *QuantizeTensor(x, per_tensor);
  EXPECT_EQ(QuantizeTensor(q, per_tensor).status().code(), absl::StatusCode::kInvalidArgument);
  QuantParams as_uint8 = per_tensor;
  as_uint8.dtype = DType::kUInt8;
  as_uint8.quant_min = 0;
  as_uint8.quant_max = 255;
  as_uint8.zero_points = {128};
  EXPECT_EQ(DequantizeTensor(q, as_uint8).status().code(), absl::StatusCode::kInvalidArgument);
  // Zero scale, qmin > qmax.
  QuantParams bad = per_tensor;
  bad.scales = {0.0f};
  EXPECT_EQ(QuantizeTensor(x, bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = per_tensor;
  std::swap(bad.quant_min, bad.quant_max);
  EXPECT_EQ(FakeQuantizeTensor(x, bad, false).status().code(), absl::StatusCode::kInvalidArgument);
  // Channel count or axis not matching the tensor.
  const float mins[] = {-1, -1, -1}, maxs[] = {1, 1, 1};
  const QuantParams three = *ChooseQParamsPerChannel(
      mins, maxs, 1, {DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric});
  const absl::Status wrong_count = QuantizeTensor(x, three).status();
  EXPECT_EQ(wrong_count.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_count.message().find("4 channels"), absl::string_view::npos);
  QuantParams far_axis = three;
  far_axis.axis = 7;
  EXPECT_EQ(QuantizeTensor(x, far_axis).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TensorMinMaxPerChannel(x, 4).status().code(), absl::StatusCode::kInvalidArgument);
  // int32 for QuantizeTensor; a 2^25 fake-quant range; empty tensors.
  QuantParams int32 = per_tensor;
  int32.dtype = DType::kInt32;
  int32.zero_points = {0};
  EXPECT_EQ(QuantizeTensor(x, int32).status().code(), absl::StatusCode::kInvalidArgument);
  int32.quant_min = -(1 << 25);
  EXPECT_EQ(FakeQuantizeTensor(x, int32, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  const Tensor empty = *Tensor::Create(DType::kFloat32, {0, 3});
  EXPECT_EQ(TensorMinMax(empty).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(QuantizeTensorTest, MinMaxCountsNaN) {
  Tensor x = RandomNCHW(1, 2, 2, 2, 4);
  x.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(TensorMinMax(x)->nan_count, 1u);
  EXPECT_FALSE(std::isnan(TensorMinMax(x)->min));
  EXPECT_EQ(TensorMinMaxPerChannel(x, 1)->nan_count, 1u);
}

}  // namespace
}  // namespace qlab
