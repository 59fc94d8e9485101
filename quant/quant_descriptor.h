// NVIDIA pytorch-quantization's QuantDescriptor, expressed as qlab specs.
//
// pytorch-quantization describes each TensorQuantizer with a QuantDescriptor (num_bits, axis,
// unsigned, amax, calib_method, fake_quant). qlab's specs say the same things, so a descriptor
// maps to one spec:
//   signed:    int8 container, symmetric on [-(2^(b-1) - 1), 2^(b-1) - 1], scale = amax / bound
//              (the narrow range: pytorch-quantization's scale is bound / amax whichever range it
//              clamps to, and only the narrow range gives ChooseQParams that same scale);
//   unsigned:  uint8 container, [0, 2^b - 1] affine with the range starting at 0 (zero point 0,
//              scale = amax / bound) -- for non-negative tensors (post-ReLU), as in the original;
//   axis:      per-channel symmetric on that axis ("per_channel_minmax" calibration);
//   amax:      a FixedQParamsQuantizationSpec (no calibration);
//   calib_method "max" -> minmax; "histogram" + compute_amax(method) -> "entropy", "mse",
//              "percentile:<p>", one registry spec each (calibration/registry.h).
// The TensorQuantizer switches enable/disable_calib and enable/disable_quant are the
// ObserverSlot::observe / fake_quantize flags of a PrepareQat model (quant/prepare.h); the
// residual quantizer on ResNet adds is the tensorrt backend's add rule
// (quant/backend_quantizers.h).
#ifndef QLAB_QUANT_QUANT_DESCRIPTOR_H_
#define QLAB_QUANT_QUANT_DESCRIPTOR_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "quant/quantization_spec.h"

namespace qlab {

struct QuantDescriptor {
  int num_bits = 8;
  std::optional<int> axis;  // per-channel axis; none: per tensor
  bool is_unsigned = false;
  std::optional<float> amax;  // fixed range, skips calibration (per tensor only)
  // "max", or a histogram method: "entropy", "mse", "percentile:<p>".
  std::string calib_method = "max";
};

// InvalidArgument for num_bits outside [2, 8], an unknown calib_method, amax not finite and
// positive, amax with an axis (per-channel fixed ranges are not expressible as one spec), and
// unsigned with an axis.
absl::StatusOr<QSpec> SpecFromQuantDescriptor(const QuantDescriptor& descriptor);

}  // namespace qlab

#endif  // QLAB_QUANT_QUANT_DESCRIPTOR_H_
