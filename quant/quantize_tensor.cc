#include "quant/quantize_tensor.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/quantize/quantize.h"

namespace qlab {
namespace {

absl::Status ExpectDType(const Tensor& t, DType dtype, const char* what) {
  if (t.dtype() != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be ", DTypeName(dtype), ", got ", t.DebugString()));
  }
  return absl::OkStatus();
}

// `t` viewed as [outer, channels, inner] around a valid `axis`.
kernels::ChannelDims DimsAroundAxis(const Tensor& t, int axis) {
  kernels::ChannelDims dims{1, static_cast<size_t>(t.dim(axis)), 1};
  for (int a = 0; a < axis; ++a) dims.outer *= static_cast<size_t>(t.dim(a));
  for (int a = axis + 1; a < t.rank(); ++a) dims.inner *= static_cast<size_t>(t.dim(a));
  return dims;
}

// Validates `params` against tensor `t` and returns the [outer, channels, inner] view the
// kernels take (channels = 1 for per-tensor parameters).
absl::StatusOr<kernels::ChannelDims> KernelDims(const Tensor& t, const QuantParams& params) {
  QLAB_RETURN_IF_ERROR(params.Validate());
  const size_t numel = static_cast<size_t>(t.numel());
  if (!IsPerChannel(params.qscheme)) return kernels::ChannelDims{1, 1, numel};
  if (params.axis >= t.rank()) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel axis ", params.axis, " is out of range for ", t.DebugString()));
  }
  if (t.dim(params.axis) != static_cast<int64_t>(params.num_channels())) {
    return absl::InvalidArgumentError(
        absl::StrCat(params.num_channels(), " per-channel parameters for axis ", params.axis,
                     " of ", t.DebugString(), ", which has ", t.dim(params.axis), " channels"));
  }
  return DimsAroundAxis(t, params.axis);
}

kernels::PerChannelAffineParams KernelParams(const QuantParams& p) {
  return {p.scales.data(), p.zero_points.data(), p.quant_min, p.quant_max};
}

}  // namespace

absl::StatusOr<Tensor> QuantizeTensor(const Tensor& x, const QuantParams& params) {
  QLAB_RETURN_IF_ERROR(ExpectDType(x, DType::kFloat32, "QuantizeTensor input"));
  if (params.dtype != DType::kInt8 && params.dtype != DType::kUInt8) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizeTensor produces int8 or uint8, got ", params.DebugString()));
  }
  QLAB_ASSIGN_OR_RETURN(const kernels::ChannelDims dims, KernelDims(x, params));
  QLAB_ASSIGN_OR_RETURN(Tensor q, Tensor::Create(params.dtype, x.shape(), x.layout()));
  if (params.dtype == DType::kInt8) {
    kernels::QuantizePerChannel(x.data<float>(), dims, KernelParams(params), q.data<int8_t>());
  } else {
    kernels::QuantizePerChannel(x.data<float>(), dims, KernelParams(params), q.data<uint8_t>());
  }
  return q;
}

absl::StatusOr<Tensor> DequantizeTensor(const Tensor& q, const QuantParams& params) {
  QLAB_RETURN_IF_ERROR(ExpectDType(q, params.dtype, "DequantizeTensor input"));
  QLAB_ASSIGN_OR_RETURN(const kernels::ChannelDims dims, KernelDims(q, params));
  QLAB_ASSIGN_OR_RETURN(Tensor x, Tensor::Create(DType::kFloat32, q.shape(), q.layout()));
  const float* scales = params.scales.data();
  const int32_t* zero_points = params.zero_points.data();
  switch (params.dtype) {
    case DType::kInt8:
      kernels::DequantizePerChannel(q.data<int8_t>(), dims, scales, zero_points, x.data<float>());
      break;
    case DType::kUInt8:
      kernels::DequantizePerChannel(q.data<uint8_t>(), dims, scales, zero_points, x.data<float>());
      break;
    case DType::kInt32:
      // The kernel computes q - zero_point in int32; only zero point 0 is safe for every q.
      for (int32_t zp : params.zero_points) {
        if (zp != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("int32 dequantization needs zero point 0, got ", zp));
        }
      }
      kernels::DequantizePerChannel(q.data<int32_t>(), dims, scales, zero_points, x.data<float>());
      break;
    case DType::kFloat32:
      return absl::InvalidArgumentError("DequantizeTensor of a float32 tensor");
  }
  return x;
}

absl::StatusOr<FakeQuantized> FakeQuantizeTensor(const Tensor& x, const QuantParams& params,
                                                 bool with_mask) {
  QLAB_RETURN_IF_ERROR(ExpectDType(x, DType::kFloat32, "FakeQuantizeTensor input"));
  // The kernel's float arithmetic is exact only for integers within +-2^24.
  constexpr int32_t kExactLimit = 1 << 24;
  if (params.quant_min < -kExactLimit || params.quant_max > kExactLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("fake-quantize range [", params.quant_min, ", ", params.quant_max,
                     "] exceeds +-2^24, where float32 stops representing every integer"));
  }
  QLAB_ASSIGN_OR_RETURN(const kernels::ChannelDims dims, KernelDims(x, params));
  FakeQuantized out;
  QLAB_ASSIGN_OR_RETURN(out.values, Tensor::Create(DType::kFloat32, x.shape(), x.layout()));
  if (with_mask) {
    QLAB_ASSIGN_OR_RETURN(out.mask, Tensor::Create(DType::kUInt8, x.shape(), x.layout()));
  }
  kernels::FakeQuantizePerChannel(x.data<float>(), dims, KernelParams(params),
                                  out.values.data<float>(),
                                  with_mask ? out.mask.data<uint8_t>() : nullptr);
  return out;
}

absl::StatusOr<Range> TensorMinMax(const Tensor& x) {
  QLAB_RETURN_IF_ERROR(ExpectDType(x, DType::kFloat32, "TensorMinMax input"));
  if (x.numel() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot take the range of empty tensor ", x.DebugString()));
  }
  const kernels::MinMaxResult r = kernels::MinMax(x.data<float>(), static_cast<size_t>(x.numel()));
  return Range{r.min, r.max, r.nan_count};
}

absl::StatusOr<ChannelRanges> TensorMinMaxPerChannel(const Tensor& x, int axis) {
  QLAB_RETURN_IF_ERROR(ExpectDType(x, DType::kFloat32, "TensorMinMaxPerChannel input"));
  const int resolved = axis < 0 ? axis + x.rank() : axis;
  if (resolved < 0 || resolved >= x.rank()) {
    return absl::InvalidArgumentError(
        absl::StrCat("channel axis ", axis, " is out of range for ", x.DebugString()));
  }
  if (x.numel() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot take the ranges of empty tensor ", x.DebugString()));
  }
  const kernels::ChannelDims dims = DimsAroundAxis(x, resolved);
  ChannelRanges ranges{std::vector<float>(dims.channels), std::vector<float>(dims.channels), 0};
  ranges.nan_count =
      kernels::MinMaxPerChannel(x.data<float>(), dims, ranges.mins.data(), ranges.maxs.data());
  return ranges;
}

}  // namespace qlab
