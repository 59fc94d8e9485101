// Tensor-level quantize / dequantize / fake-quantize / min-max: the validated front of
// kernels/quantize.
//
// The kernels take raw pointers and trust their arguments; these functions check everything a
// caller can get wrong once, up front (dtypes, channel axis and count, parameter validity,
// ranges the float arithmetic handles exactly), return a Status naming the offending value, and
// then run the dispatched kernel over the whole tensor. Per-channel parameters work on any axis:
// the tensor is viewed as [outer, channels, inner] around it (NCHW axis 1, NHWC axis 3, OIHW
// axis 0 ...).
#ifndef QLAB_QUANT_QUANTIZE_TENSOR_H_
#define QLAB_QUANT_QUANTIZE_TENSOR_H_

#include <cstddef>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/qparams.h"

namespace qlab {

// float32 -> params.dtype (int8 or uint8), same shape and layout.
absl::StatusOr<Tensor> QuantizeTensor(const Tensor& x, const QuantParams& params);

// int8 / uint8 / int32 (matching params.dtype) -> float32, same shape and layout.
absl::StatusOr<Tensor> DequantizeTensor(const Tensor& q, const QuantParams& params);

// Quantize-then-dequantize in float32 (params.dtype gives the range; any range within +-2^24
// works, so 4- and 2-bit too). With `mask` non-null, also the straight-through estimator's uint8
// mask of the same shape: 1 where the value was inside the range.
struct FakeQuantized {
  Tensor values;
  Tensor mask;  // empty unless requested
};
absl::StatusOr<FakeQuantized> FakeQuantizeTensor(const Tensor& x, const QuantParams& params,
                                                 bool with_mask);

// Range of a float32 tensor, NaNs skipped and counted. InvalidArgument for an empty tensor.
struct Range {
  float min;
  float max;
  size_t nan_count;
};
absl::StatusOr<Range> TensorMinMax(const Tensor& x);

// Per-channel ranges along `axis` (negative counts from the end).
struct ChannelRanges {
  std::vector<float> mins;
  std::vector<float> maxs;
  size_t nan_count;
};
absl::StatusOr<ChannelRanges> TensorMinMaxPerChannel(const Tensor& x, int axis);

}  // namespace qlab

#endif  // QLAB_QUANT_QUANTIZE_TENSOR_H_
