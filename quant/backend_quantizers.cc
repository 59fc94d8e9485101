// The xnnpack, x86 and tensorrt quantizers (quant/backend_quantizers.h): one pattern annotator,
// three default configs and two styles -- "inputs and outputs" (xnnpack, x86: every quantized op
// consumes and produces quantized tensors) and "inputs only" (tensorrt: Q/DQ before the ops that
// run in int8, so the builder fuses conv + add + relu and chooses output precision itself).
#include "quant/backend_quantizers.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "quant/graph/patterns.h"
#include "quant/quantization_annotation.h"

namespace qlab {
namespace {

QuantFormat Format(DType dtype, int32_t quant_min, int32_t quant_max, QScheme qscheme,
                   int ch_axis = -1) {
  QuantFormat f;
  f.dtype = dtype;
  f.quant_min = quant_min;
  f.quant_max = quant_max;
  f.qscheme = qscheme;
  f.ch_axis = ch_axis;
  return f;
}

absl::StatusOr<QuantizationSpec> Spec(QuantFormat format, std::string observer,
                                      float eps = 1.1920928955078125e-07f) {
  QuantizationSpec::Options options;
  options.format = format;
  options.observer = std::move(observer);
  options.eps = eps;
  return QuantizationSpec::Create(std::move(options));
}

bool IsInputsOnly(Backend backend) { return backend == Backend::kTensorRT; }

// Any node of the chain already claimed (by this quantizer's longer pattern or another
// quantizer) leaves the whole chain alone.
bool AnyAnnotated(const Graph& graph, const Chain& chain) {
  for (const NodeId id : chain.nodes) {
    if (IsAnnotated(graph, id)) return true;
  }
  return false;
}

absl::Status Claim(Graph& graph, NodeId node) {
  QuantizationAnnotation a;
  a.annotated = true;
  return SetAnnotation(graph, node, std::move(a));
}

// The value a residual add's main branch produces: conv / linear (or a not yet folded
// batch_norm after one).
bool IsLayerOutput(const Graph& graph, NodeId id) {
  const OpKind op = graph.node(id).op;
  return op == OpKind::kConv2d || op == OpKind::kLinear || op == OpKind::kBatchNorm;
}

}  // namespace

absl::StatusOr<Backend> ParseBackend(absl::string_view name) {
  if (name == "xnnpack") return Backend::kXnnpack;
  if (name == "x86") return Backend::kX86;
  if (name == "tensorrt") return Backend::kTensorRT;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown quantizer backend \"", name, "\"; known: xnnpack, x86, tensorrt"));
}

const char* BackendName(Backend backend) {
  switch (backend) {
    case Backend::kXnnpack:
      return "xnnpack";
    case Backend::kX86:
      return "x86";
    case Backend::kTensorRT:
      return "tensorrt";
  }
  return "?";
}

BackendQuantizer::BackendQuantizer(Backend backend, QuantizationConfig default_config,
                                   FixedQParamsQuantizationSpec sigmoid_output)
    : backend_(backend),
      default_config_(std::move(default_config)),
      sigmoid_output_(std::move(sigmoid_output)) {
  configs_.SetGlobal(default_config_);
}

absl::StatusOr<std::unique_ptr<BackendQuantizer>> BackendQuantizer::Create(
    Backend backend, const std::string& activation_observer, const std::string& weight_observer) {
  const QuantFormat int8_affine = Format(DType::kInt8, -128, 127, QScheme::kPerTensorAffine);
  const QuantFormat uint8_affine = Format(DType::kUInt8, 0, 255, QScheme::kPerTensorAffine);
  const QuantFormat int8_symmetric = Format(DType::kInt8, -127, 127, QScheme::kPerTensorSymmetric);
  auto or_default = [](const std::string& chosen, const char* fallback) {
    return chosen.empty() ? std::string(fallback) : chosen;
  };
  const std::string weight_obs = or_default(weight_observer, "per_channel_minmax");

  QuantizationConfig config;
  QuantFormat sigmoid_format;
  int32_t sigmoid_zero_point = 0;
  switch (backend) {
    case Backend::kXnnpack: {
      // XNNPACK's qs8 operators: asymmetric int8 activations, symmetric per-channel weights on
      // [-127, 127] (so -128 x -128 never overflows the int16 pair sums), int32 bias.
      QLAB_ASSIGN_OR_RETURN(QuantizationSpec act,
                            Spec(int8_affine, or_default(activation_observer, "histogram"),
                                 /*eps=*/1.0f / 4096.0f));
      config.input_activation = act;
      config.output_activation = act;
      QLAB_ASSIGN_OR_RETURN(
          config.weight,
          Spec(Format(DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric, 0), weight_obs));
      config.quantize_bias = true;
      sigmoid_format = int8_affine;
      sigmoid_zero_point = -128;  // [0, 1) onto [-128, 127]
      break;
    }
    case Backend::kX86: {
      // oneDNN's u8s8 convolutions: uint8 activations, int8 per-channel symmetric weights, fp32
      // bias (oneDNN adds it after rescaling).
      QLAB_ASSIGN_OR_RETURN(QuantizationSpec act,
                            Spec(uint8_affine, or_default(activation_observer, "histogram")));
      config.input_activation = act;
      config.output_activation = act;
      QLAB_ASSIGN_OR_RETURN(
          config.weight,
          Spec(Format(DType::kInt8, -128, 127, QScheme::kPerChannelSymmetric, 0), weight_obs));
      config.quantize_bias = false;
      sigmoid_format = uint8_affine;
      sigmoid_zero_point = 0;
      break;
    }
    case Backend::kTensorRT: {
      // TensorRT's explicit-quantization convention (pytorch-quantization's defaults): symmetric
      // int8 with amax / 127 scales, "max" calibration, per-channel weights; only inputs carry
      // Q/DQ, outputs stay float.
      QLAB_ASSIGN_OR_RETURN(config.input_activation,
                            Spec(int8_symmetric, or_default(activation_observer, "minmax")));
      QLAB_ASSIGN_OR_RETURN(
          config.weight,
          Spec(Format(DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric, 0), weight_obs));
      config.quantize_bias = false;
      sigmoid_format = int8_affine;  // unused: tensorrt leaves sigmoid to the builder
      sigmoid_zero_point = -128;
      break;
    }
  }
  QLAB_ASSIGN_OR_RETURN(
      FixedQParamsQuantizationSpec sigmoid,
      FixedQParamsQuantizationSpec::Create(sigmoid_format, 1.0f / 256.0f, sigmoid_zero_point));
  return std::unique_ptr<BackendQuantizer>(
      new BackendQuantizer(backend, std::move(config), std::move(sigmoid)));
}

absl::Status BackendQuantizer::Annotate(Graph& graph) {
  QLAB_RETURN_IF_ERROR(AnnotateLayers(graph));
  QLAB_RETURN_IF_ERROR(AnnotateAdds(graph));
  QLAB_RETURN_IF_ERROR(AnnotateSharedOps(graph));
  return AnnotateSigmoids(graph);
}

absl::Status BackendQuantizer::AnnotateLayers(Graph& graph) {
  using K = OpKind;
  const std::vector<std::vector<OpKind>> patterns = {
      {K::kConv2d, K::kBatchNorm, K::kRelu},
      {K::kConv2d, K::kBatchNorm},
      {K::kConv2d, K::kRelu},
      {K::kConv2d},
      {K::kLinear, K::kRelu},
      {K::kLinear},
  };
  for (const std::vector<OpKind>& pattern : patterns) {
    for (const Chain& chain : FindChains(graph, pattern)) {
      if (AnyAnnotated(graph, chain)) continue;
      const NodeId layer = chain.first();
      const QuantizationConfig* config = configs_.For(graph, layer);
      if (config == nullptr) continue;
      const Node& node = graph.node(layer);
      QuantizationAnnotation a;
      a.annotated = true;
      if (config->input_activation)
        a.input_qspec_map.push_back({node.inputs[0], *config->input_activation});
      if (config->weight) a.input_qspec_map.push_back({node.inputs[1], *config->weight});
      if (config->quantize_bias && node.inputs.size() > 2 && config->input_activation &&
          config->weight) {
        QLAB_ASSIGN_OR_RETURN(DerivedQuantizationSpec bias, BiasSpecFor(graph, layer));
        a.input_qspec_map.push_back({node.inputs[2], std::move(bias)});
      }
      const bool output_here = chain.nodes.size() == 1;
      if (output_here && config->output_activation && !IsInputsOnly(backend_)) {
        a.output_qspec = *config->output_activation;
      }
      QLAB_RETURN_IF_ERROR(SetAnnotation(graph, layer, std::move(a)));
      for (size_t i = 1; i < chain.nodes.size(); ++i) {
        QuantizationAnnotation rest;
        rest.annotated = true;
        if (i + 1 == chain.nodes.size() && config->output_activation && !IsInputsOnly(backend_)) {
          rest.output_qspec = *config->output_activation;
        }
        QLAB_RETURN_IF_ERROR(SetAnnotation(graph, chain.nodes[i], std::move(rest)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status BackendQuantizer::AnnotateAdds(Graph& graph) {
  for (const std::vector<OpKind>& pattern :
       {std::vector<OpKind>{OpKind::kAdd, OpKind::kRelu}, std::vector<OpKind>{OpKind::kAdd}}) {
    for (const Chain& chain : FindChains(graph, pattern)) {
      if (AnyAnnotated(graph, chain)) continue;
      const NodeId add = chain.first();
      const QuantizationConfig* config = configs_.For(graph, add);
      if (config == nullptr) continue;
      const std::vector<NodeId> inputs = graph.node(add).inputs;
      QuantizationAnnotation a;
      a.annotated = true;
      if (config->input_activation) {
        std::vector<NodeId> quantized;
        if (IsInputsOnly(backend_)) {
          // The residual (identity) input only: the main branch's conv output fuses into the
          // add in TensorRT and must stay unquantized there. Both branches convs (a downsample
          // shortcut): the second input is the shortcut, as in `out += identity`.
          for (const NodeId in : inputs) {
            if (!IsLayerOutput(graph, in)) quantized.push_back(in);
          }
          if (quantized.empty()) quantized.push_back(inputs.back());
        } else {
          quantized = inputs;
        }
        for (const NodeId in : quantized) {
          if (a.InputSpec(in) == nullptr)
            a.input_qspec_map.push_back({in, *config->input_activation});
        }
      }
      QLAB_RETURN_IF_ERROR(SetAnnotation(graph, add, std::move(a)));
      for (size_t i = 1; i < chain.nodes.size(); ++i) {
        QLAB_RETURN_IF_ERROR(Claim(graph, chain.nodes[i]));
      }
      // The output spec sits on the last node of the pattern.
      if (config->output_activation && !IsInputsOnly(backend_)) {
        QuantizationAnnotation last = *graph.node(chain.last()).annotation;
        last.output_qspec = *config->output_activation;
        QLAB_RETURN_IF_ERROR(
            SetAnnotation(graph, chain.last(), std::move(last), /*allow_overwrite=*/true));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status BackendQuantizer::AnnotateSharedOps(Graph& graph) {
  for (const NodeId id : graph.node_ids()) {
    const Node& node = graph.node(id);
    const bool is_pool = node.op == OpKind::kMaxPool2d || node.op == OpKind::kAvgPool2d ||
                         node.op == OpKind::kAdaptiveAvgPool2d;
    const bool is_reshaping = node.op == OpKind::kFlatten || node.op == OpKind::kCat ||
                              node.op == OpKind::kIdentity || node.op == OpKind::kStridedSlice ||
                              node.op == OpKind::kChannelPad;
    if ((!is_pool && !is_reshaping) || IsAnnotated(graph, id)) continue;
    const QuantizationConfig* config = configs_.For(graph, id);
    if (config == nullptr) continue;
    if (config->is_float()) {
      QLAB_RETURN_IF_ERROR(Claim(graph, id));
      continue;
    }
    if (!config->input_activation) continue;
    if (IsInputsOnly(backend_) && !is_pool) continue;  // tensorrt: only pools run quantized
    QuantizationAnnotation a;
    a.annotated = true;
    const NodeId first = node.inputs[0];
    a.input_qspec_map.push_back({first, *config->input_activation});
    if (!IsInputsOnly(backend_)) {
      // The value moves (or is selected) without arithmetic: every input and the output share
      // the first input's parameters, so the op runs on integers unchanged.
      const SharedQuantizationSpec shared(EdgeOrNode::Input(first, id));
      for (size_t i = 1; i < node.inputs.size(); ++i) {
        if (a.InputSpec(node.inputs[i]) == nullptr)
          a.input_qspec_map.push_back({node.inputs[i], shared});
      }
      a.output_qspec = shared;
    }
    QLAB_RETURN_IF_ERROR(SetAnnotation(graph, id, std::move(a)));
  }
  return absl::OkStatus();
}

absl::Status BackendQuantizer::AnnotateSigmoids(Graph& graph) {
  if (IsInputsOnly(backend_)) return absl::OkStatus();
  for (const NodeId id : FindNodes(graph, OpKind::kSigmoid)) {
    if (IsAnnotated(graph, id)) continue;
    const QuantizationConfig* config = configs_.For(graph, id);
    if (config == nullptr) continue;
    QuantizationAnnotation a;
    a.annotated = true;
    if (!config->is_float()) {
      if (config->input_activation) {
        a.input_qspec_map.push_back({graph.node(id).inputs[0], *config->input_activation});
      }
      // sigmoid's range is (0, 1): a fixed 1/256 step covers it without calibration.
      a.output_qspec = sigmoid_output_;
    }
    QLAB_RETURN_IF_ERROR(SetAnnotation(graph, id, std::move(a)));
  }
  return absl::OkStatus();
}

absl::Status BackendQuantizer::Validate(const Graph& graph) const {
  for (const NodeId id : graph.node_ids()) {
    const Node& node = graph.node(id);
    if (node.annotation == nullptr) continue;
    for (const auto& [input, spec] : node.annotation->input_qspec_map) {
      const auto* s = std::get_if<QuantizationSpec>(&spec);
      if (s == nullptr) continue;
      const bool is_weight = graph.node(input).op == OpKind::kParameter;
      if (!is_weight && IsPerChannel(s->format().qscheme)) {
        return absl::InvalidArgumentError(absl::StrCat(
            name(), ": activation %", graph.node(input).name, " -> %", node.name,
            " is quantized per channel; the integer kernels take per-tensor activations"));
      }
      if (is_weight && !IsSymmetric(s->format().qscheme)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name(), ": weight %", graph.node(input).name, " of %", node.name,
                         " is quantized ", QSchemeName(s->format().qscheme),
                         "; the integer kernels need symmetric weights (zero point 0)"));
      }
      if (!qat_ && is_weight && (node.op == OpKind::kConv2d || node.op == OpKind::kLinear)) {
        for (const NodeId user : graph.Users(id)) {
          if (graph.node(user).op == OpKind::kBatchNorm) {
            return absl::InvalidArgumentError(absl::StrCat(
                name(), ": %", node.name, " has quantized weights but feeds batch_norm %",
                graph.node(user).name,
                ": fold batch norm first (FoldBatchNorm) so the folded weights are quantized"));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace qlab
