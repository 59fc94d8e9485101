#include "quant/qparams.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace qlab {
namespace {

struct ScaleZeroPoint {
  float scale;
  int32_t zero_point;
};

// PyTorch's _calculate_qparams for one range, float32 arithmetic throughout.
ScaleZeroPoint ComputeScaleZeroPoint(float min, float max, const QuantTarget& t) {
  const float min_neg = std::min(min, 0.0f);
  const float max_pos = std::max(max, 0.0f);
  const int64_t range = int64_t{t.quant_max} - t.quant_min;
  if (IsSymmetric(t.qscheme)) {
    // PyTorch divides by float(quant_max - quant_min) / 2, a double rounded to float32.
    const float half_range = static_cast<float>(static_cast<double>(range) / 2.0);
    const float scale = std::max(std::max(-min_neg, max_pos) / half_range, t.eps);
    int32_t zero_point = 0;
    if (t.dtype == DType::kUInt8) {
      zero_point = (t.quant_min == 0 && t.quant_max == 255) ? 128 : (t.quant_min + t.quant_max) / 2;
    }
    return {scale, zero_point};
  }
  const float scale = std::max((max_pos - min_neg) / static_cast<float>(range), t.eps);
  // std::nearbyint rounds half to even in the default rounding mode, like torch.round.
  const int64_t zero_point =
      int64_t{t.quant_min} - static_cast<int64_t>(std::nearbyint(min_neg / scale));
  return {scale, static_cast<int32_t>(std::clamp<int64_t>(zero_point, t.quant_min, t.quant_max))};
}

absl::Status CheckRange(float min, float max, const std::string& where) {
  if (std::isnan(min) || std::isnan(max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("observed range", where, " contains NaN: min=", min, " max=", max));
  }
  if (min == std::numeric_limits<float>::infinity() &&
      max == -std::numeric_limits<float>::infinity()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no values observed", where, " (min=+inf, max=-inf): calibrate before choosing qparams"));
  }
  if (std::isinf(min) || std::isinf(max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("observed range", where, " is not finite: min=", min, " max=", max));
  }
  if (min > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("observed range", where, " has min > max: min=", min, " max=", max));
  }
  return absl::OkStatus();
}

}  // namespace

const char* QSchemeName(QScheme s) {
  switch (s) {
    case QScheme::kPerTensorAffine:
      return "per_tensor_affine";
    case QScheme::kPerTensorSymmetric:
      return "per_tensor_symmetric";
    case QScheme::kPerChannelAffine:
      return "per_channel_affine";
    case QScheme::kPerChannelSymmetric:
      return "per_channel_symmetric";
  }
  return "unknown";
}

absl::StatusOr<std::pair<int32_t, int32_t>> DTypeRange(DType dtype) {
  switch (dtype) {
    case DType::kInt8:
      return std::make_pair(int32_t{-128}, int32_t{127});
    case DType::kUInt8:
      return std::make_pair(int32_t{0}, int32_t{255});
    case DType::kInt32:
      return std::make_pair(std::numeric_limits<int32_t>::min(),
                            std::numeric_limits<int32_t>::max());
    case DType::kFloat32:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", DTypeName(dtype), " is not a quantized integer type"));
}

absl::Status QuantTarget::Validate() const {
  QLAB_ASSIGN_OR_RETURN(const auto limits, DTypeRange(dtype));
  if (quant_min >= quant_max || quant_min < limits.first || quant_max > limits.second) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quant range [", quant_min, ", ", quant_max, "] is not a non-empty range within ",
        DTypeName(dtype), "'s [", limits.first, ", ", limits.second, "]"));
  }
  if (!(eps > 0.0f) || std::isinf(eps)) {
    return absl::InvalidArgumentError(absl::StrCat("eps must be finite and > 0, got ", eps));
  }
  return absl::OkStatus();
}

absl::Status QuantParams::Validate() const {
  QLAB_RETURN_IF_ERROR((QuantTarget{dtype, quant_min, quant_max, qscheme}.Validate()));
  if (scales.size() != zero_points.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(scales.size(), " scales but ", zero_points.size(), " zero points"));
  }
  if (IsPerChannel(qscheme)) {
    if (axis < 0 || scales.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(QSchemeName(qscheme), " needs axis >= 0 ",
                                                     "and at least one channel, got axis ", axis,
                                                     " and ", scales.size(), " channels"));
    }
  } else if (axis != -1 || scales.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(QSchemeName(qscheme),
                                                   " needs axis -1 and one scale, got axis ", axis,
                                                   " and ", scales.size(), " scales"));
  }
  for (size_t c = 0; c < scales.size(); ++c) {
    if (!(scales[c] > 0.0f) || std::isinf(scales[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale[", c, "] = ", scales[c], " is not finite and > 0"));
    }
    if (zero_points[c] < quant_min || zero_points[c] > quant_max) {
      return absl::InvalidArgumentError(absl::StrCat("zero_point[", c, "] = ", zero_points[c],
                                                     " is outside [", quant_min, ", ", quant_max,
                                                     "]"));
    }
  }
  return absl::OkStatus();
}

std::string QuantParams::DebugString() const {
  std::string s =
      absl::StrCat(DTypeName(dtype), "[", quant_min, ",", quant_max, "] ", QSchemeName(qscheme));
  if (IsPerChannel(qscheme)) absl::StrAppend(&s, " axis=", axis);
  constexpr size_t kShown = 4;
  const size_t shown = std::min(scales.size(), kShown);
  absl::StrAppend(&s, " scale=", absl::StrJoin(scales.begin(), scales.begin() + shown, ","),
                  scales.size() > kShown ? ",..." : "", " zero_point=",
                  absl::StrJoin(zero_points.begin(), zero_points.begin() + shown, ","),
                  zero_points.size() > kShown ? ",..." : "");
  return s;
}

absl::StatusOr<QuantParams> ChooseQParams(float min, float max, const QuantTarget& target) {
  QLAB_RETURN_IF_ERROR(target.Validate());
  if (IsPerChannel(target.qscheme)) {
    return absl::InvalidArgumentError(absl::StrCat("ChooseQParams needs a per-tensor qscheme, got ",
                                                   QSchemeName(target.qscheme),
                                                   " (use ChooseQParamsPerChannel)"));
  }
  QLAB_RETURN_IF_ERROR(CheckRange(min, max, ""));
  const ScaleZeroPoint qp = ComputeScaleZeroPoint(min, max, target);
  return QuantParams{target.dtype, target.quant_min, target.quant_max, target.qscheme,
                     /*axis=*/-1,  {qp.scale},       {qp.zero_point}};
}

absl::StatusOr<QuantParams> ChooseQParamsPerChannel(absl::Span<const float> mins,
                                                    absl::Span<const float> maxs, int axis,
                                                    const QuantTarget& target) {
  QLAB_RETURN_IF_ERROR(target.Validate());
  if (!IsPerChannel(target.qscheme)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ChooseQParamsPerChannel needs a per-channel qscheme, got ", QSchemeName(target.qscheme)));
  }
  if (axis < 0) {
    return absl::InvalidArgumentError(absl::StrCat("channel axis must be >= 0, got ", axis));
  }
  if (mins.size() != maxs.size() || mins.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("need one min and one max per channel, got ",
                                                   mins.size(), " mins and ", maxs.size(),
                                                   " maxs"));
  }
  QuantParams params{
      target.dtype, target.quant_min, target.quant_max, target.qscheme, axis, {}, {}};
  params.scales.reserve(mins.size());
  params.zero_points.reserve(mins.size());
  for (size_t c = 0; c < mins.size(); ++c) {
    QLAB_RETURN_IF_ERROR(CheckRange(mins[c], maxs[c], absl::StrCat(" of channel ", c)));
    const ScaleZeroPoint qp = ComputeScaleZeroPoint(mins[c], maxs[c], target);
    params.scales.push_back(qp.scale);
    params.zero_points.push_back(qp.zero_point);
  }
  return params;
}

absl::StatusOr<FixedPointMultiplier> QuantizeMultiplier(double real_multiplier) {
  if (!(real_multiplier >= 0x1p-32 && real_multiplier < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fixed-point requantization needs a real multiplier in [2^-32, 1), got ", real_multiplier));
  }
  int exponent = 0;
  const double mantissa = std::frexp(real_multiplier, &exponent);  // in [0.5, 1)
  int64_t multiplier = static_cast<int64_t>(std::nearbyint(std::ldexp(mantissa, 31)));
  int shift = 31 - exponent;
  if (multiplier == (int64_t{1} << 31)) {  // mantissa rounded up to 1.0
    multiplier = int64_t{1} << 30;
    --shift;
  }
  if (shift < 31) {  // real_multiplier within 2^-32 of 1: the largest representable value
    multiplier = (int64_t{1} << 31) - 1;
    shift = 31;
  }
  return FixedPointMultiplier{static_cast<int32_t>(multiplier), shift};
}

}  // namespace qlab
