// QuantDescriptor -> spec (quant/quant_descriptor.h).
#include "quant/quant_descriptor.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace qlab {

absl::StatusOr<QSpec> SpecFromQuantDescriptor(const QuantDescriptor& d) {
  if (d.num_bits < 2 || d.num_bits > 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantDescriptor: num_bits must be in [2, 8], got ", d.num_bits));
  }
  if (d.is_unsigned && d.axis) {
    return absl::InvalidArgumentError(
        "QuantDescriptor: unsigned per-channel quantization is not supported (axis " +
        std::to_string(*d.axis) + ")");
  }
  QuantFormat format;
  if (d.is_unsigned) {
    format = {DType::kUInt8, 0, (1 << d.num_bits) - 1, QScheme::kPerTensorAffine, -1};
  } else {
    const int32_t bound = (1 << (d.num_bits - 1)) - 1;
    format = {DType::kInt8, -bound, bound,
              d.axis ? QScheme::kPerChannelSymmetric : QScheme::kPerTensorSymmetric,
              d.axis ? *d.axis : -1};
  }
  if (d.amax) {
    if (!(*d.amax > 0.0f) || !std::isfinite(*d.amax)) {
      return absl::InvalidArgumentError(
          absl::StrCat("QuantDescriptor: amax must be finite and > 0, got ", *d.amax));
    }
    if (d.axis) {
      return absl::InvalidArgumentError(
          "QuantDescriptor: a fixed amax with an axis (per-channel fixed ranges) has no "
          "single-spec form; calibrate instead");
    }
    const float scale = *d.amax / static_cast<float>(format.quant_max);
    QLAB_ASSIGN_OR_RETURN(FixedQParamsQuantizationSpec fixed,
                          FixedQParamsQuantizationSpec::Create(format, scale, 0));
    return QSpec(fixed);
  }
  std::string observer;
  if (d.calib_method == "max") {
    observer = d.axis ? "per_channel_minmax" : "minmax";
  } else if (d.calib_method == "entropy" || d.calib_method == "mse" ||
             absl::StartsWith(d.calib_method, "percentile:")) {
    if (d.axis) {
      return absl::InvalidArgumentError(absl::StrCat(
          "QuantDescriptor: calib_method \"", d.calib_method,
          "\" is per tensor; per-channel tensors (axis ", *d.axis, ") calibrate with \"max\""));
    }
    observer = d.calib_method;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("QuantDescriptor: unknown calib_method \"",
                                                   d.calib_method,
                                                   "\"; known: max, entropy, mse, percentile:<p>"));
  }
  QuantizationSpec::Options options;
  options.format = format;
  options.observer = observer;
  QLAB_ASSIGN_OR_RETURN(QuantizationSpec spec, QuantizationSpec::Create(options));
  return QSpec(spec);
}

}  // namespace qlab
