// The four specs of quant/quantization_spec.h: validation on construction, printing, and the
// standard bias derivation.
#include "quant/quantization_spec.h"

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "calibration/registry.h"
#include "core/status_macros.h"

namespace qlab {

std::string EdgeOrNode::ToString(const Graph& graph) const {
  auto name = [&](NodeId id) {
    return graph.Contains(id) ? absl::StrCat("%", graph.node(id).name)
                              : absl::StrCat("<node ", id, ">");
  };
  if (!is_edge()) return name(producer());
  return absl::StrCat("(", name(producer()), " -> ", name(consumer()), ")");
}

QuantTarget QuantFormat::target(float eps) const {
  QuantTarget t;
  t.dtype = dtype;
  t.quant_min = quant_min;
  t.quant_max = quant_max;
  t.qscheme = qscheme;
  t.eps = eps;
  return t;
}

absl::Status QuantFormat::Validate(absl::string_view what) const {
  QuantTarget t = target(1.0f);
  if (absl::Status s = t.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  }
  if (IsPerChannel(qscheme) && ch_axis < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": qscheme ", QSchemeName(qscheme),
                                                   " needs a channel axis (ch_axis >= 0), got ",
                                                   ch_axis));
  }
  if (!IsPerChannel(qscheme) && ch_axis != -1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": qscheme ", QSchemeName(qscheme),
                                                   " is per tensor but ch_axis is ", ch_axis));
  }
  return absl::OkStatus();
}

std::string QuantFormat::ToString() const {
  std::string s =
      absl::StrFormat("%s[%d,%d] %s", DTypeName(dtype), quant_min, quant_max, QSchemeName(qscheme));
  if (IsPerChannel(qscheme)) absl::StrAppend(&s, "(axis=", ch_axis, ")");
  return s;
}

absl::StatusOr<QuantizationSpec> QuantizationSpec::Create(Options options) {
  QLAB_RETURN_IF_ERROR(options.format.Validate("QuantizationSpec"));
  if (!(options.eps > 0.0f) || !std::isfinite(options.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizationSpec: eps must be finite and > 0, got ", options.eps));
  }
  if (options.is_dynamic && IsPerChannel(options.format.qscheme)) {
    return absl::InvalidArgumentError(
        "QuantizationSpec: dynamic quantization is per tensor only, got qscheme " +
        std::string(QSchemeName(options.format.qscheme)));
  }
  bool per_channel_observer = false;
  if (absl::Status s = calibration::ValidateObserverSpec(options.observer, &per_channel_observer);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizationSpec: ", s.message()));
  }
  if (per_channel_observer != IsPerChannel(options.format.qscheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizationSpec: observer \"", options.observer, "\" is ",
                     per_channel_observer ? "per channel" : "per tensor", " but qscheme ",
                     QSchemeName(options.format.qscheme), " is ",
                     IsPerChannel(options.format.qscheme) ? "per channel" : "per tensor"));
  }
  return QuantizationSpec(std::move(options));
}

std::string QuantizationSpec::ToString() const {
  std::string s = absl::StrCat(options_.format.ToString(), " ", options_.observer);
  if (options_.is_dynamic) absl::StrAppend(&s, " dynamic");
  return s;
}

absl::StatusOr<FixedQParamsQuantizationSpec> FixedQParamsQuantizationSpec::Create(
    QuantFormat format, float scale, int32_t zero_point) {
  QLAB_RETURN_IF_ERROR(format.Validate("FixedQParamsQuantizationSpec"));
  if (IsPerChannel(format.qscheme)) {
    return absl::InvalidArgumentError(
        "FixedQParamsQuantizationSpec: fixed parameters are per tensor, got qscheme " +
        std::string(QSchemeName(format.qscheme)));
  }
  if (!(scale > 0.0f) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError(
        absl::StrCat("FixedQParamsQuantizationSpec: scale must be finite and > 0, got ", scale));
  }
  if (zero_point < format.quant_min || zero_point > format.quant_max) {
    return absl::InvalidArgumentError(absl::StrCat("FixedQParamsQuantizationSpec: zero_point ",
                                                   zero_point, " is outside [", format.quant_min,
                                                   ", ", format.quant_max, "]"));
  }
  return FixedQParamsQuantizationSpec(format, scale, zero_point);
}

QuantParams FixedQParamsQuantizationSpec::params() const {
  QuantParams p;
  p.dtype = format_.dtype;
  p.quant_min = format_.quant_min;
  p.quant_max = format_.quant_max;
  p.qscheme = format_.qscheme;
  p.axis = -1;
  p.scales = {scale_};
  p.zero_points = {zero_point_};
  return p;
}

absl::StatusOr<DerivedQuantizationSpec> DerivedQuantizationSpec::Create(
    std::vector<EdgeOrNode> derived_from, DeriveQParamsFn derive_fn, QuantFormat format) {
  if (derived_from.empty()) {
    return absl::InvalidArgumentError(
        "DerivedQuantizationSpec: derived_from is empty: a derived spec needs at least one "
        "source edge or node");
  }
  if (!derive_fn) {
    return absl::InvalidArgumentError("DerivedQuantizationSpec: derive_fn is empty");
  }
  QLAB_RETURN_IF_ERROR(format.Validate("DerivedQuantizationSpec"));
  return DerivedQuantizationSpec(std::move(derived_from), std::move(derive_fn), format);
}

absl::StatusOr<QuantParams> DeriveBiasQParams(absl::Span<const QuantParams> sources) {
  if (sources.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bias qparams derive from (activation, weight): expected 2 sources, got ", sources.size()));
  }
  const QuantParams& act = sources[0];
  const QuantParams& weight = sources[1];
  if (act.scales.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bias qparams: the activation must be quantized per tensor, got ",
                     act.scales.size(), " scales"));
  }
  QuantParams bias;
  bias.dtype = DType::kInt32;
  bias.quant_min = std::numeric_limits<int32_t>::min();
  bias.quant_max = std::numeric_limits<int32_t>::max();
  // The product is formed in float32, as the integer kernels' requantization multiplier
  // (act_scale x weight_scale / out_scale) is, so bias and accumulator share one scale exactly.
  for (const float w : weight.scales) bias.scales.push_back(act.scales[0] * w);
  bias.zero_points.assign(bias.scales.size(), 0);
  if (IsPerChannel(weight.qscheme)) {
    bias.qscheme = QScheme::kPerChannelSymmetric;
    bias.axis = 0;
  } else {
    bias.qscheme = QScheme::kPerTensorSymmetric;
    bias.axis = -1;
  }
  return bias;
}

absl::StatusOr<DerivedQuantizationSpec> BiasSpecFor(const Graph& graph, NodeId layer) {
  const Node& node = graph.node(layer);
  if ((node.op != OpKind::kConv2d && node.op != OpKind::kLinear) || node.inputs.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("BiasSpecFor: %", node.name, " is not a conv2d or linear with a weight"));
  }
  QuantFormat format;
  format.dtype = DType::kInt32;
  format.quant_min = std::numeric_limits<int32_t>::min();
  format.quant_max = std::numeric_limits<int32_t>::max();
  format.qscheme = QScheme::kPerChannelSymmetric;
  format.ch_axis = 0;
  return DerivedQuantizationSpec::Create(
      {EdgeOrNode::Input(node.inputs[0], layer), EdgeOrNode::Input(node.inputs[1], layer)},
      DeriveBiasQParams, format);
}

std::string QSpecToString(const QSpec& spec, const Graph& graph) {
  if (const auto* s = std::get_if<QuantizationSpec>(&spec)) return s->ToString();
  if (const auto* s = std::get_if<SharedQuantizationSpec>(&spec)) {
    return absl::StrCat("shared(", s->shared_with().ToString(graph), ")");
  }
  if (const auto* s = std::get_if<FixedQParamsQuantizationSpec>(&spec)) {
    return absl::StrFormat("fixed(%s scale=%g zero_point=%d)", s->format().ToString(), s->scale(),
                           s->zero_point());
  }
  const auto& d = std::get<DerivedQuantizationSpec>(spec);
  std::vector<std::string> sources;
  for (const EdgeOrNode& e : d.derived_from()) sources.push_back(e.ToString(graph));
  return absl::StrCat("derived(", d.format().ToString(), " from ", absl::StrJoin(sources, ", "),
                      ")");
}

}  // namespace qlab
