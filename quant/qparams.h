// Quantization parameters and how they are chosen from an observed range.
//
// QuantParams says how real values map to integers: q = clamp(round(x / scale) + zero_point,
// quant_min, quant_max), per tensor or per channel along one axis. ChooseQParams turns an
// observed [min, max] into scale and zero point with PyTorch's rules
// (torch.ao.quantization.observer, `_calculate_qparams`, PyTorch 1.13), because qlab's observers
// are tested for bit-identical qparams against PyTorch's:
//   - the range is widened to include 0 (so that 0.0 is exactly representable: zero padding);
//   - affine:    scale = (max' - min') / (quant_max - quant_min), zero_point =
//                quant_min - round_half_even(min' / scale), clamped to the range;
//   - symmetric: scale = max(|min'|, max') / ((quant_max - quant_min) / 2), zero_point = 0
//                (128 for uint8 [0, 255], PyTorch's default; the floor of the mid-range for
//                other uint8 ranges), so the restricted weight range [-127, 127] gives
//                scale = amax / 127;
//   - scale is floored at eps (float32 epsilon by default), all arithmetic in float32.
#ifndef QLAB_QUANT_QPARAMS_H_
#define QLAB_QUANT_QPARAMS_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/dtype.h"

namespace qlab {

enum class QScheme : uint8_t {
  kPerTensorAffine,
  kPerTensorSymmetric,
  kPerChannelAffine,
  kPerChannelSymmetric,
};

constexpr bool IsPerChannel(QScheme s) {
  return s == QScheme::kPerChannelAffine || s == QScheme::kPerChannelSymmetric;
}
constexpr bool IsSymmetric(QScheme s) {
  return s == QScheme::kPerTensorSymmetric || s == QScheme::kPerChannelSymmetric;
}
// "per_tensor_affine", ... (PyTorch's names).
const char* QSchemeName(QScheme s);

// The integer range a dtype can hold: int8 [-128, 127], uint8 [0, 255], int32 [-2^31, 2^31-1].
// InvalidArgument for float32.
absl::StatusOr<std::pair<int32_t, int32_t>> DTypeRange(DType dtype);

// What to quantize to: the integer type and the sub-range used within it (e.g. int8 [-127, 127]
// for restricted-range weights, int8 [-8, 7] for 4-bit values in an int8 container).
struct QuantTarget {
  DType dtype = DType::kInt8;
  int32_t quant_min = -128;
  int32_t quant_max = 127;
  QScheme qscheme = QScheme::kPerTensorAffine;
  // Smallest scale ChooseQParams returns (PyTorch observers' `eps`).
  float eps = std::numeric_limits<float>::epsilon();

  // InvalidArgument unless dtype is an integer type, quant_min < quant_max within its range and
  // eps is finite and positive.
  absl::Status Validate() const;
};

// Parameters of a quantized tensor.
struct QuantParams {
  DType dtype = DType::kInt8;
  int32_t quant_min = -128;
  int32_t quant_max = 127;
  QScheme qscheme = QScheme::kPerTensorAffine;
  // Channel axis for the per-channel schemes; -1 for per-tensor.
  int axis = -1;
  // One entry per tensor, or one per channel along `axis`.
  std::vector<float> scales;
  std::vector<int32_t> zero_points;

  // InvalidArgument naming the offending value unless: the range is valid for dtype, per-channel
  // schemes have axis >= 0 and at least one channel, per-tensor ones axis -1 and exactly one
  // scale, scales and zero points have equal counts, every scale is finite and > 0, and every
  // zero point lies in [quant_min, quant_max].
  absl::Status Validate() const;

  size_t num_channels() const { return scales.size(); }
  std::string DebugString() const;
};

// Per-tensor parameters from an observed range. InvalidArgument for NaN, min > max, infinite
// bounds or an invalid target; FailedPrecondition for the "nothing observed" range
// (min = +Inf, max = -Inf). A constant tensor (min == max) gives valid parameters.
absl::StatusOr<QuantParams> ChooseQParams(float min, float max, const QuantTarget& target);

// Per-channel parameters along `axis` from per-channel ranges (the target's qscheme must be a
// per-channel one). Errors as ChooseQParams, naming the channel.
absl::StatusOr<QuantParams> ChooseQParamsPerChannel(absl::Span<const float> mins,
                                                    absl::Span<const float> maxs, int axis,
                                                    const QuantTarget& target);

// A real multiplier in [2^-32, 1) as the fixed-point pair used by the integer requantization
// kernels: real ~= multiplier * 2^-shift with multiplier in [2^30, 2^31) and shift in [31, 62],
// multiplier rounded to nearest. InvalidArgument outside that range.
struct FixedPointMultiplier {
  int32_t multiplier;
  int32_t shift;
};
absl::StatusOr<FixedPointMultiplier> QuantizeMultiplier(double real_multiplier);

}  // namespace qlab

#endif  // QLAB_QUANT_QPARAMS_H_
