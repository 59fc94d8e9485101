// convert (quant/convert.h): observers -> quantize/dequantize, parameters quantized once.
#include "quant/convert.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "quant/quantization_annotation.h"
#include "quant/quantize_tensor.h"

namespace qlab {
namespace {

// int32 quantization (biases): q = clamp(round_half_even(x / scale), int32 range), the division
// in float32 as PyTorch's quantize_per_channel(..., torch.qint32) does it. Zero points of int32
// parameters are 0 (symmetric), which DeriveBiasQParams guarantees and Validate checks.
absl::StatusOr<Tensor> QuantizeInt32(const Tensor& x, const QuantParams& params) {
  QLAB_RETURN_IF_ERROR(params.Validate());
  if (x.dtype() != DType::kFloat32) {
    return absl::InvalidArgumentError("int32 quantization needs a float32 tensor, got " +
                                      x.DebugString());
  }
  const int64_t channels = static_cast<int64_t>(params.scales.size());
  int64_t inner = 1;
  if (params.axis >= 0) {
    if (params.axis >= x.rank() || x.dim(params.axis) != channels) {
      return absl::InvalidArgumentError(absl::StrCat("int32 quantization of ", x.DebugString(),
                                                     ": ", channels, " per-channel scales on axis ",
                                                     params.axis));
    }
    for (int d = params.axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
  }
  QLAB_ASSIGN_OR_RETURN(Tensor q, Tensor::Create(DType::kInt32, x.shape(), x.layout()));
  const float* in = x.data<float>();
  int32_t* out = q.data<int32_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = params.axis >= 0 ? (i / inner) % channels : 0;
    const float v = std::nearbyint(in[i] / params.scales[c]) + params.zero_points[c];
    if (std::isnan(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("int32 quantization: element ", i, " of ", x.DebugString(), " is NaN"));
    }
    // Clamp in double: float(INT32_MAX) rounds up to 2^31, which does not convert back.
    const double clamped =
        std::min<double>(std::max<double>(v, params.quant_min), params.quant_max);
    out[i] = static_cast<int32_t>(clamped);
  }
  return q;
}

absl::StatusOr<Tensor> QuantizeParameter(const Tensor& value, const QuantParams& params) {
  if (params.dtype == DType::kInt32) return QuantizeInt32(value, params);
  return QuantizeTensor(value, params);
}

class Converter {
 public:
  explicit Converter(const PreparedModel& prepared)
      : prepared_(prepared), graph_(prepared.graph()), params_(prepared.slots().size()) {}

  absl::StatusOr<Graph> Run();

 private:
  absl::StatusOr<QuantParams> ParamsOf(int slot);
  // quantize -> dequantize reading `source`; returns the dequantize node. A parameter source is
  // quantized now and becomes an integer parameter feeding the dequantize.
  absl::StatusOr<NodeId> QuantizeDequantize(NodeId source, const QuantParams& params);
  absl::StatusOr<NodeId> DynamicQuantizeDequantize(NodeId source, const QuantizationSpec& spec);
  absl::Status ConvertObserverNode(NodeId observer);
  absl::Status ConvertDerivedSlot(int slot);

  const PreparedModel& prepared_;
  Graph graph_;
  std::vector<std::optional<QuantParams>> params_;  // per slot, computed once
};

absl::StatusOr<QuantParams> Converter::ParamsOf(int slot_index) {
  if (params_[slot_index]) return *params_[slot_index];
  const ObserverSlot& slot = prepared_.slots()[slot_index];
  absl::StatusOr<QuantParams> params;
  const auto* observed = std::get_if<QuantizationSpec>(&slot.spec);
  const auto* derived = std::get_if<DerivedQuantizationSpec>(&slot.spec);
  if (observed != nullptr && slot.observer->num_batches() == 0) {
    // A weight group never run through calibration (e.g. convert straight after prepare for
    // weight-only inspection): its values are constants, so observe them now, on a copy.
    std::unique_ptr<calibration::Observer> observer = slot.observer->Clone();
    for (const EdgeOrNode& member : slot.members) {
      const Node& producer = graph_.node(member.producer());
      if (producer.op != OpKind::kParameter) {
        return prepared_.SlotQParams(slot_index).status();  // the "calibrate first" error
      }
      QLAB_RETURN_IF_ERROR(observer->Observe(producer.value));
    }
    params = observer->ComputeQParams(observed->target());
  } else if (derived != nullptr) {
    // Same rule as PreparedModel::SlotQParams, but through ParamsOf so that unobserved weight
    // sources get the fallback above.
    std::vector<QuantParams> sources;
    for (const EdgeOrNode& source : derived->derived_from()) {
      QLAB_ASSIGN_OR_RETURN(const int source_slot, prepared_.SlotOf(source));
      QLAB_ASSIGN_OR_RETURN(QuantParams p, ParamsOf(source_slot));
      sources.push_back(std::move(p));
    }
    params = derived->derive_fn()(sources);
    if (params.ok()) {
      params->dtype = derived->format().dtype;
      params->quant_min = derived->format().quant_min;
      params->quant_max = derived->format().quant_max;
      if (absl::Status s = params->Validate(); !s.ok()) params = s;
    }
  } else {
    params = prepared_.SlotQParams(slot_index);
  }
  if (!params.ok()) {
    return absl::Status(params.status().code(),
                        absl::StrCat("convert: slot ", slot_index, " (", slot.DebugString(graph_),
                                     "): ", params.status().message()));
  }
  params_[slot_index] = *params;
  return *params;
}

absl::StatusOr<NodeId> Converter::QuantizeDequantize(NodeId source, const QuantParams& params) {
  const Node& node = graph_.node(source);
  const std::string base = node.name;
  NodeId quantized;
  if (node.op == OpKind::kParameter) {
    QLAB_ASSIGN_OR_RETURN(Tensor q, QuantizeParameter(node.value, params));
    QLAB_ASSIGN_OR_RETURN(quantized, graph_.AddParameter(graph_.UniqueName(base + ".q"), q));
  } else {
    QLAB_ASSIGN_OR_RETURN(
        quantized, graph_.AddNode(OpKind::kQuantize, graph_.UniqueName(base + ".q"), {source},
                                  QuantizeAttrs{params, false}));
  }
  return graph_.AddNode(OpKind::kDequantize, graph_.UniqueName(base + ".dq"), {quantized},
                        QuantizeAttrs{params, false});
}

absl::StatusOr<NodeId> Converter::DynamicQuantizeDequantize(NodeId source,
                                                            const QuantizationSpec& spec) {
  // Only the target travels: scale and zero point are chosen from each run's range by the
  // dynamic quantize node and read back by its dynamic dequantize.
  QuantizeAttrs attrs;
  attrs.params.dtype = spec.format().dtype;
  attrs.params.quant_min = spec.format().quant_min;
  attrs.params.quant_max = spec.format().quant_max;
  attrs.params.qscheme = spec.format().qscheme;
  attrs.dynamic = true;
  attrs.eps = spec.eps();
  const std::string base = graph_.node(source).name;
  QLAB_ASSIGN_OR_RETURN(
      const NodeId quantized,
      graph_.AddNode(OpKind::kQuantize, graph_.UniqueName(base + ".q"), {source}, attrs));
  return graph_.AddNode(OpKind::kDequantize, graph_.UniqueName(base + ".dq"), {quantized}, attrs);
}

absl::Status Converter::ConvertObserverNode(NodeId observer) {
  const Node& node = graph_.node(observer);
  const NodeId source = node.inputs[0];
  const int slot = node.attr<ObserverAttrs>().slot;
  const auto* spec = std::get_if<QuantizationSpec>(&prepared_.slots()[slot].spec);
  NodeId dequantized;
  if (spec != nullptr && spec->is_dynamic()) {
    QLAB_ASSIGN_OR_RETURN(dequantized, DynamicQuantizeDequantize(source, *spec));
  } else {
    QLAB_ASSIGN_OR_RETURN(const QuantParams params, ParamsOf(slot));
    QLAB_ASSIGN_OR_RETURN(dequantized, QuantizeDequantize(source, params));
  }
  QLAB_RETURN_IF_ERROR(graph_.ReplaceAllUsesWith(observer, dequantized));
  return graph_.RemoveNode(observer);
}

absl::Status Converter::ConvertDerivedSlot(int slot) {
  QLAB_ASSIGN_OR_RETURN(const QuantParams params, ParamsOf(slot));
  for (const EdgeOrNode& member : prepared_.slots()[slot].members) {
    QLAB_ASSIGN_OR_RETURN(const NodeId dequantized, QuantizeDequantize(member.producer(), params));
    if (!member.is_edge()) {
      QLAB_RETURN_IF_ERROR(graph_.ReplaceAllUsesWith(member.producer(), dequantized));
      continue;
    }
    const std::vector<NodeId> inputs = graph_.node(member.consumer()).inputs;
    bool rewired = false;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (inputs[i] != member.producer()) continue;
      QLAB_RETURN_IF_ERROR(
          graph_.ReplaceInput(member.consumer(), static_cast<int>(i), dequantized));
      rewired = true;
    }
    if (!rewired) {
      // The edge now runs through an observer's quantize/dequantize: a derived spec on an
      // observed activation would quantize twice.
      return absl::UnimplementedError(absl::StrCat(
          "convert: derived spec on ", member.ToString(graph_),
          " whose producer is also observed; derived specs are supported on unobserved edges "
          "(biases)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Graph> Converter::Run() {
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph_.TopologicalOrder());
  for (const NodeId id : order) {
    const OpKind op = graph_.node(id).op;
    if (op == OpKind::kObserver || op == OpKind::kFakeQuantize) {
      QLAB_RETURN_IF_ERROR(ConvertObserverNode(id));
    }
  }
  for (size_t slot = 0; slot < prepared_.slots().size(); ++slot) {
    if (std::holds_alternative<DerivedQuantizationSpec>(prepared_.slots()[slot].spec)) {
      QLAB_RETURN_IF_ERROR(ConvertDerivedSlot(static_cast<int>(slot)));
    }
  }
  graph_.RemoveDeadNodes();
  ClearAnnotations(graph_);
  QLAB_RETURN_IF_ERROR(graph_.InferShapes());
  return std::move(graph_);
}

}  // namespace

absl::StatusOr<Graph> Convert(const PreparedModel& prepared) { return Converter(prepared).Run(); }

}  // namespace qlab
