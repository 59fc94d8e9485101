// Graph: node storage, rewiring, topological order, Dump(), and shape inference for every op.
//
// Shape inference is written once, as InferOutputType (node + input types -> output type), so
// that the builders, InferShapes() and the interpreter (which re-derives shapes for each run's
// batch) apply the same rules. The output-size formulas are PyTorch's (aten/src/ATen/native/
// Pool.h `pooling_output_shape`, Convolution.cpp), so a graph that builds here is one PyTorch
// would accept with the same attributes.
#include "quant/graph/graph.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/check.h"
#include "core/status_macros.h"

namespace qlab {
namespace {

// `conv2d "layer1.0.conv1": <details>`: every validation message names the node first.
template <typename... Args>
absl::Status NodeError(const Node& node, const Args&... details) {
  return absl::InvalidArgumentError(
      absl::StrCat(OpKindName(node.op), " \"", node.name, "\": ", details...));
}

std::string TypeString(const ValueType& type) {
  return absl::StrCat(DTypeName(type.dtype), ShapeString(type.shape));
}

std::string PairString(const std::array<int64_t, 2>& v) {
  return absl::StrCat("[", v[0], ",", v[1], "]");
}

// Number of inputs an op takes: [min, max] (max -1: unbounded).
std::pair<int, int> Arity(OpKind op) {
  switch (op) {
    case OpKind::kInput:
    case OpKind::kParameter:
      return {0, 0};
    case OpKind::kConv2d:
    case OpKind::kLinear:
      return {2, 3};
    case OpKind::kBatchNorm:
      return {5, 5};
    case OpKind::kAdd:
      return {2, 2};
    case OpKind::kCat:
      return {1, -1};
    case OpKind::kRelu:
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d:
    case OpKind::kAdaptiveAvgPool2d:
    case OpKind::kFlatten:
    case OpKind::kSigmoid:
    case OpKind::kStridedSlice:
    case OpKind::kChannelPad:
    case OpKind::kIdentity:
    case OpKind::kObserver:
    case OpKind::kFakeQuantize:
    case OpKind::kQuantize:
    case OpKind::kDequantize:
      return {1, 1};
  }
  return {0, 0};
}

// The attribute struct an op carries, as a default-constructed NodeAttrs (monostate: none).
NodeAttrs DefaultAttrs(OpKind op) {
  switch (op) {
    case OpKind::kConv2d:
      return Conv2dAttrs{};
    case OpKind::kBatchNorm:
      return BatchNormAttrs{};
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d:
      return Pool2dAttrs{};
    case OpKind::kAdaptiveAvgPool2d:
      return AdaptiveAvgPool2dAttrs{};
    case OpKind::kFlatten:
      return FlattenAttrs{};
    case OpKind::kCat:
      return CatAttrs{};
    case OpKind::kStridedSlice:
      return StridedSliceAttrs{};
    case OpKind::kChannelPad:
      return ChannelPadAttrs{};
    case OpKind::kObserver:
    case OpKind::kFakeQuantize:
      return ObserverAttrs{};
    case OpKind::kQuantize:
    case OpKind::kDequantize:
      return QuantizeAttrs{};
    default:
      return std::monostate{};
  }
}

absl::Status ExpectFloat(const Node& node, const ValueType& type, absl::string_view what) {
  if (type.dtype != DType::kFloat32) {
    return NodeError(node, what, " must be float32, got ", TypeString(type));
  }
  return absl::OkStatus();
}

absl::Status ExpectRank(const Node& node, const ValueType& type, int rank, absl::string_view what) {
  if (static_cast<int>(type.shape.size()) != rank) {
    return NodeError(node, what, " must have rank ", rank, ", got ", TypeString(type));
  }
  return absl::OkStatus();
}

// A per-channel vector ([C] float32) such as a bias or a batch-norm statistic.
absl::Status ExpectVector(const Node& node, const ValueType& type, int64_t channels,
                          absl::string_view what) {
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, type, what));
  if (type.shape.size() != 1 || type.shape[0] != channels) {
    return NodeError(node, what, " must be [", channels, "], got ", ShapeString(type.shape));
  }
  return absl::OkStatus();
}

// floor(a / b) for b > 0 (C++ division truncates towards zero).
int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

absl::StatusOr<ValueType> InferConv2d(const Node& node, absl::Span<const ValueType> in) {
  const auto& a = node.attr<Conv2dAttrs>();
  const ValueType& x = in[0];
  const ValueType& w = in[1];
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, x, 4, "input"));
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, w, "weight"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, w, 4, "weight"));
  for (int i = 0; i < 2; ++i) {
    if (a.stride[i] <= 0) return NodeError(node, "stride ", PairString(a.stride), " must be > 0");
    if (a.padding[i] < 0) {
      return NodeError(node, "padding ", PairString(a.padding), " must be >= 0");
    }
    if (a.dilation[i] <= 0) {
      return NodeError(node, "dilation ", PairString(a.dilation), " must be > 0");
    }
  }
  const int64_t channels = x.shape[1];
  const int64_t out_channels = w.shape[0];
  if (a.groups <= 0) return NodeError(node, "groups ", a.groups, " must be > 0");
  if (channels % a.groups != 0) {
    return NodeError(node, "groups ", a.groups, " does not divide the input's ", channels,
                     " channels");
  }
  if (out_channels % a.groups != 0) {
    return NodeError(node, "groups ", a.groups, " does not divide the weight's ", out_channels,
                     " output channels");
  }
  if (w.shape[1] * a.groups != channels) {
    if (a.groups == 1) {
      return NodeError(node, "weight has ", w.shape[1], " input channels per group, input has ",
                       channels);
    }
    return NodeError(node, "weight has ", w.shape[1], " input channels per group, input has ",
                     channels, " channels in ", a.groups, " groups (", channels / a.groups,
                     " per group)");
  }
  if (in.size() == 3) QLAB_RETURN_IF_ERROR(ExpectVector(node, in[2], out_channels, "bias"));
  Shape out = {x.shape[0], out_channels, 0, 0};
  for (int i = 0; i < 2; ++i) {
    const int64_t size = x.shape[2 + i];
    const int64_t kernel = w.shape[2 + i];
    const int64_t span = a.dilation[i] * (kernel - 1) + 1;  // the dilated kernel's extent
    if (kernel <= 0 || size + 2 * a.padding[i] < span) {
      return NodeError(node, "kernel ", ShapeString({w.shape[2], w.shape[3]}), " with dilation ",
                       PairString(a.dilation), " does not fit the padded input ", TypeString(x),
                       " (padding ", PairString(a.padding), ")");
    }
    out[2 + i] = (size + 2 * a.padding[i] - span) / a.stride[i] + 1;
  }
  return ValueType{out, DType::kFloat32};
}

absl::StatusOr<ValueType> InferLinear(const Node& node, absl::Span<const ValueType> in) {
  const ValueType& x = in[0];
  const ValueType& w = in[1];
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, x, 2, "input"));
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, w, "weight"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, w, 2, "weight"));
  if (w.shape[1] != x.shape[1]) {
    return NodeError(node, "weight has ", w.shape[1], " input features, input has ", x.shape[1]);
  }
  if (in.size() == 3) QLAB_RETURN_IF_ERROR(ExpectVector(node, in[2], w.shape[0], "bias"));
  return ValueType{{x.shape[0], w.shape[0]}, DType::kFloat32};
}

absl::StatusOr<ValueType> InferBatchNorm(const Node& node, absl::Span<const ValueType> in) {
  const auto& a = node.attr<BatchNormAttrs>();
  const ValueType& x = in[0];
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  if (x.shape.size() != 2 && x.shape.size() != 4) {
    return NodeError(node, "input must be [N, C] or [N, C, H, W], got ", TypeString(x));
  }
  if (!std::isfinite(a.eps) || a.eps < 0) return NodeError(node, "eps ", a.eps, " must be >= 0");
  if (!std::isfinite(a.momentum)) return NodeError(node, "momentum ", a.momentum, " not finite");
  const int64_t channels = x.shape[1];
  static constexpr const char* kNames[] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 0; i < 4; ++i) {
    QLAB_RETURN_IF_ERROR(ExpectVector(node, in[1 + i], channels, kNames[i]));
  }
  return x;
}

absl::StatusOr<ValueType> InferPool2d(const Node& node, const ValueType& x) {
  const auto& a = node.attr<Pool2dAttrs>();
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, x, 4, "input"));
  Shape out = x.shape;
  for (int i = 0; i < 2; ++i) {
    if (a.kernel[i] <= 0) return NodeError(node, "kernel ", PairString(a.kernel), " must be > 0");
    if (a.stride[i] <= 0) return NodeError(node, "stride ", PairString(a.stride), " must be > 0");
    if (a.padding[i] < 0) {
      return NodeError(node, "padding ", PairString(a.padding), " must be >= 0");
    }
    // PyTorch: "pad should be at most half of kernel size".
    if (a.padding[i] > a.kernel[i] / 2) {
      return NodeError(node, "padding ", PairString(a.padding), " must be at most half the kernel ",
                       PairString(a.kernel));
    }
    const int64_t size = x.shape[2 + i];
    // PyTorch's pooling_output_shape: floor or ceil of (size + 2 pad - kernel) / stride, plus
    // one; in ceil mode the last window must start inside the input or its left padding.
    const int64_t extra = a.ceil_mode ? a.stride[i] - 1 : 0;
    int64_t o = FloorDiv(size + 2 * a.padding[i] - a.kernel[i] + extra, a.stride[i]) + 1;
    if (a.ceil_mode && (o - 1) * a.stride[i] >= size + a.padding[i]) --o;
    if (o <= 0) {
      return NodeError(node, "kernel ", PairString(a.kernel), " is larger than the padded input ",
                       TypeString(x), " (padding ", PairString(a.padding), ")");
    }
    out[2 + i] = o;
  }
  return ValueType{out, DType::kFloat32};
}

absl::StatusOr<ValueType> InferAdaptiveAvgPool2d(const Node& node, const ValueType& x) {
  const auto& a = node.attr<AdaptiveAvgPool2dAttrs>();
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  QLAB_RETURN_IF_ERROR(ExpectRank(node, x, 4, "input"));
  if (a.output_size[0] <= 0 || a.output_size[1] <= 0) {
    return NodeError(node, "output_size ", PairString(a.output_size), " must be > 0");
  }
  if (x.shape[2] <= 0 || x.shape[3] <= 0) {
    return NodeError(node, "input ", TypeString(x), " has an empty spatial dimension");
  }
  return ValueType{{x.shape[0], x.shape[1], a.output_size[0], a.output_size[1]}, DType::kFloat32};
}

absl::StatusOr<ValueType> InferFlatten(const Node& node, const ValueType& x) {
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  const int64_t start = node.attr<FlattenAttrs>().start_dim;
  const int64_t resolved = start < 0 ? start + rank : start;
  // Axis 0 is the batch, which ops keep: flattening it would tie shapes to the build batch.
  if (resolved < 1 || resolved >= rank) {
    return NodeError(node, "start_dim ", start, " must name a non-batch axis of ", TypeString(x));
  }
  Shape out(x.shape.begin(), x.shape.begin() + resolved);
  int64_t features = 1;
  for (int64_t i = resolved; i < rank; ++i) features *= x.shape[i];
  out.push_back(features);
  return ValueType{out, DType::kFloat32};
}

absl::StatusOr<ValueType> InferCat(const Node& node, absl::Span<const ValueType> in) {
  const ValueType& first = in[0];
  const int64_t rank = static_cast<int64_t>(first.shape.size());
  const int64_t axis = node.attr<CatAttrs>().axis;
  const int64_t resolved = axis < 0 ? axis + rank : axis;
  if (resolved < 1 || resolved >= rank) {
    return NodeError(node, "axis ", axis, " must name a non-batch axis of ", TypeString(first));
  }
  Shape out = first.shape;
  out[resolved] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    QLAB_RETURN_IF_ERROR(ExpectFloat(node, in[i], absl::StrCat("input ", i)));
    bool fits = static_cast<int64_t>(in[i].shape.size()) == rank;
    for (int64_t d = 0; fits && d < rank; ++d) {
      fits = d == resolved || in[i].shape[d] == first.shape[d];
    }
    if (!fits) {
      return NodeError(node, "input ", i, " ", TypeString(in[i]), " does not match input 0 ",
                       TypeString(first), " outside axis ", resolved);
    }
    out[resolved] += in[i].shape[resolved];
  }
  return ValueType{out, DType::kFloat32};
}

absl::StatusOr<ValueType> InferStridedSlice(const Node& node, const ValueType& x) {
  const auto& a = node.attr<StridedSliceAttrs>();
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  const size_t rank = x.shape.size();
  if (a.begin.size() != rank || a.end.size() != rank || a.step.size() != rank) {
    return NodeError(node, "begin/end/step need one entry per axis of ", TypeString(x), ", got ",
                     a.begin.size(), "/", a.end.size(), "/", a.step.size());
  }
  Shape out(rank);
  for (size_t d = 0; d < rank; ++d) {
    if (a.begin[d] < 0 || a.end[d] < 0 || a.step[d] <= 0) {
      return NodeError(node, "axis ", d, " slice ", a.begin[d], ":", a.end[d], ":", a.step[d],
                       " needs begin >= 0, end >= 0, step > 0");
    }
    const int64_t end = std::min(a.end[d], x.shape[d]);  // Python clamps `end`
    if (a.begin[d] >= end) {
      return NodeError(node, "axis ", d, " slice ", a.begin[d], ":", a.end[d], ":", a.step[d],
                       " of ", TypeString(x), " is empty");
    }
    out[d] = (end - a.begin[d] + a.step[d] - 1) / a.step[d];
  }
  return ValueType{out, DType::kFloat32};
}

absl::StatusOr<ValueType> InferChannelPad(const Node& node, const ValueType& x) {
  const auto& a = node.attr<ChannelPadAttrs>();
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  if (x.shape.size() < 2) {
    return NodeError(node, "input ", TypeString(x), " has no channel axis");
  }
  if (a.before < 0 || a.after < 0) {
    return NodeError(node, "before ", a.before, " and after ", a.after, " must be >= 0");
  }
  Shape out = x.shape;
  out[1] += a.before + a.after;
  return ValueType{out, DType::kFloat32};
}

// Parameters of a quantize/dequantize node against the tensor they apply to.
absl::Status CheckQuantizeAttrs(const Node& node, const QuantizeAttrs& a, const ValueType& x) {
  const QuantParams& p = a.params;
  if (a.dynamic) {
    // Scales and zero points are chosen per run; only the target must be valid.
    if (IsPerChannel(p.qscheme)) {
      return NodeError(node, "dynamic quantization is per tensor, got ", QSchemeName(p.qscheme));
    }
    const absl::Status target =
        QuantTarget{p.dtype, p.quant_min, p.quant_max, p.qscheme}.Validate();
    if (!target.ok()) return NodeError(node, target.message());
  } else {
    const absl::Status valid = p.Validate();
    if (!valid.ok()) return NodeError(node, valid.message());
    if (IsPerChannel(p.qscheme)) {
      if (p.axis >= static_cast<int>(x.shape.size())) {
        return NodeError(node, "channel axis ", p.axis, " out of range for ", TypeString(x));
      }
      if (x.shape[p.axis] != static_cast<int64_t>(p.num_channels())) {
        return NodeError(node, p.num_channels(), " per-channel parameters for axis ", p.axis,
                         " of ", TypeString(x));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ValueType> InferQuantize(const Node& node, const ValueType& x) {
  const auto& a = node.attr<QuantizeAttrs>();
  QLAB_RETURN_IF_ERROR(ExpectFloat(node, x, "input"));
  if (a.params.dtype != DType::kInt8 && a.params.dtype != DType::kUInt8) {
    return NodeError(node, "quantizes to int8 or uint8, got ", DTypeName(a.params.dtype));
  }
  QLAB_RETURN_IF_ERROR(CheckQuantizeAttrs(node, a, x));
  return ValueType{x.shape, a.params.dtype};
}

absl::StatusOr<ValueType> InferDequantize(const Node& node, const ValueType& q) {
  const auto& a = node.attr<QuantizeAttrs>();
  if (q.dtype == DType::kFloat32 || q.dtype != a.params.dtype) {
    return NodeError(node, "input must be ", DTypeName(a.params.dtype),
                     " (int8, uint8 or int32 as its parameters say), got ", TypeString(q));
  }
  QLAB_RETURN_IF_ERROR(CheckQuantizeAttrs(node, a, q));
  return ValueType{q.shape, DType::kFloat32};
}

std::string ParamsString(const QuantizeAttrs& a) {
  const QuantParams& p = a.params;
  std::string s = absl::StrCat("dtype=", DTypeName(p.dtype), ", range=[", p.quant_min, ",",
                               p.quant_max, "], qscheme=", QSchemeName(p.qscheme));
  if (a.dynamic) return absl::StrCat(s, ", dynamic=true");
  // Per-channel parameters can run to thousands of values: show the first few.
  static constexpr size_t kShown = 4;
  const auto short_list = [](const auto& values) {
    const size_t shown = std::min(values.size(), kShown);
    return absl::StrCat("[", absl::StrJoin(values.begin(), values.begin() + shown, ","),
                        values.size() > kShown ? ",..." : "", "]");
  };
  if (IsPerChannel(p.qscheme)) {
    absl::StrAppend(&s, ", axis=", p.axis, ", scale=", short_list(p.scales),
                    ", zero_point=", short_list(p.zero_points));
  } else if (!p.scales.empty() && !p.zero_points.empty()) {
    absl::StrAppend(&s, ", scale=", p.scales[0], ", zero_point=", p.zero_points[0]);
  }
  return s;
}

}  // namespace

absl::string_view OpKindName(OpKind op) {
  switch (op) {
    case OpKind::kInput:
      return "input";
    case OpKind::kParameter:
      return "parameter";
    case OpKind::kConv2d:
      return "conv2d";
    case OpKind::kLinear:
      return "linear";
    case OpKind::kBatchNorm:
      return "batch_norm";
    case OpKind::kRelu:
      return "relu";
    case OpKind::kAdd:
      return "add";
    case OpKind::kMaxPool2d:
      return "max_pool2d";
    case OpKind::kAvgPool2d:
      return "avg_pool2d";
    case OpKind::kAdaptiveAvgPool2d:
      return "adaptive_avg_pool2d";
    case OpKind::kFlatten:
      return "flatten";
    case OpKind::kCat:
      return "cat";
    case OpKind::kSigmoid:
      return "sigmoid";
    case OpKind::kStridedSlice:
      return "strided_slice";
    case OpKind::kChannelPad:
      return "channel_pad";
    case OpKind::kIdentity:
      return "identity";
    case OpKind::kObserver:
      return "observer";
    case OpKind::kFakeQuantize:
      return "fake_quantize";
    case OpKind::kQuantize:
      return "quantize";
    case OpKind::kDequantize:
      return "dequantize";
  }
  return "unknown";
}

absl::StatusOr<ValueType> InferOutputType(const Node& node, absl::Span<const ValueType> inputs) {
  const auto [min_inputs, max_inputs] = Arity(node.op);
  const int count = static_cast<int>(inputs.size());
  if (count < min_inputs || (max_inputs >= 0 && count > max_inputs)) {
    return NodeError(node, "takes ",
                     min_inputs == max_inputs ? absl::StrCat(min_inputs)
                     : max_inputs < 0         ? absl::StrCat("at least ", min_inputs)
                                              : absl::StrCat(min_inputs, " or ", max_inputs),
                     " inputs, got ", count);
  }
  if (node.attrs.index() != DefaultAttrs(node.op).index()) {
    return NodeError(node, "attributes of the wrong kind for this op (variant index ",
                     node.attrs.index(), ")");
  }
  switch (node.op) {
    case OpKind::kInput:
      return ValueType{node.shape, node.dtype};
    case OpKind::kParameter:
      return ValueType{node.value.shape(), node.value.dtype()};
    case OpKind::kConv2d:
      return InferConv2d(node, inputs);
    case OpKind::kLinear:
      return InferLinear(node, inputs);
    case OpKind::kBatchNorm:
      return InferBatchNorm(node, inputs);
    case OpKind::kRelu:
    case OpKind::kSigmoid:
    case OpKind::kIdentity:
    case OpKind::kObserver:
    case OpKind::kFakeQuantize:
      QLAB_RETURN_IF_ERROR(ExpectFloat(node, inputs[0], "input"));
      if ((node.op == OpKind::kObserver || node.op == OpKind::kFakeQuantize) &&
          node.attr<ObserverAttrs>().slot < 0) {
        return NodeError(node, "observer slot ", node.attr<ObserverAttrs>().slot, " must be >= 0");
      }
      return inputs[0];
    case OpKind::kAdd:
      QLAB_RETURN_IF_ERROR(ExpectFloat(node, inputs[0], "input 0"));
      QLAB_RETURN_IF_ERROR(ExpectFloat(node, inputs[1], "input 1"));
      if (inputs[0].shape != inputs[1].shape) {
        return NodeError(node, "input shapes differ: ", ShapeString(inputs[0].shape), " and ",
                         ShapeString(inputs[1].shape));
      }
      return inputs[0];
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d:
      return InferPool2d(node, inputs[0]);
    case OpKind::kAdaptiveAvgPool2d:
      return InferAdaptiveAvgPool2d(node, inputs[0]);
    case OpKind::kFlatten:
      return InferFlatten(node, inputs[0]);
    case OpKind::kCat:
      return InferCat(node, inputs);
    case OpKind::kStridedSlice:
      return InferStridedSlice(node, inputs[0]);
    case OpKind::kChannelPad:
      return InferChannelPad(node, inputs[0]);
    case OpKind::kQuantize:
      return InferQuantize(node, inputs[0]);
    case OpKind::kDequantize:
      return InferDequantize(node, inputs[0]);
  }
  return NodeError(node, "unknown op kind ", static_cast<int>(node.op));
}

std::string AttrsString(const Node& node) {
  switch (node.op) {
    case OpKind::kConv2d: {
      const auto& a = node.attr<Conv2dAttrs>();
      return absl::StrCat("stride=", PairString(a.stride), ", padding=", PairString(a.padding),
                          ", dilation=", PairString(a.dilation), ", groups=", a.groups);
    }
    case OpKind::kBatchNorm: {
      const auto& a = node.attr<BatchNormAttrs>();
      return absl::StrCat("eps=", a.eps, ", momentum=", a.momentum);
    }
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d: {
      const auto& a = node.attr<Pool2dAttrs>();
      std::string s = absl::StrCat(
          "kernel=", PairString(a.kernel), ", stride=", PairString(a.stride),
          ", padding=", PairString(a.padding), ", ceil_mode=", a.ceil_mode ? "true" : "false");
      if (node.op == OpKind::kAvgPool2d) {
        absl::StrAppend(&s, ", count_include_pad=", a.count_include_pad ? "true" : "false");
      }
      return s;
    }
    case OpKind::kAdaptiveAvgPool2d:
      return absl::StrCat("output_size=",
                          PairString(node.attr<AdaptiveAvgPool2dAttrs>().output_size));
    case OpKind::kFlatten:
      return absl::StrCat("start_dim=", node.attr<FlattenAttrs>().start_dim);
    case OpKind::kCat:
      return absl::StrCat("axis=", node.attr<CatAttrs>().axis);
    case OpKind::kStridedSlice: {
      const auto& a = node.attr<StridedSliceAttrs>();
      return absl::StrCat("begin=[", absl::StrJoin(a.begin, ","), "], end=[",
                          absl::StrJoin(a.end, ","), "], step=[", absl::StrJoin(a.step, ","), "]");
    }
    case OpKind::kChannelPad: {
      const auto& a = node.attr<ChannelPadAttrs>();
      return absl::StrCat("before=", a.before, ", after=", a.after);
    }
    case OpKind::kObserver:
    case OpKind::kFakeQuantize:
      return absl::StrCat("slot=", node.attr<ObserverAttrs>().slot);
    case OpKind::kQuantize:
    case OpKind::kDequantize:
      return ParamsString(node.attr<QuantizeAttrs>());
    default:
      return "";
  }
}

// --- Graph -------------------------------------------------------------------------------------

Graph::Graph(const Graph& other) { *this = other; }

Graph& Graph::operator=(const Graph& other) {
  if (this == &other) return *this;
  nodes_.clear();
  nodes_.reserve(other.nodes_.size());
  for (const auto& node : other.nodes_) {
    // Node's own copy shares `value` storage and the annotation pointer, as documented.
    nodes_.push_back(node ? std::make_unique<Node>(*node) : nullptr);
  }
  by_name_ = other.by_name_;
  outputs_ = other.outputs_;
  return *this;
}

absl::StatusOr<NodeId> Graph::AddInput(std::string name, Shape shape, DType dtype) {
  Node node;
  node.op = OpKind::kInput;
  node.name = std::move(name);
  node.shape = std::move(shape);
  node.dtype = dtype;
  return Insert(std::move(node));
}

absl::StatusOr<NodeId> Graph::AddParameter(std::string name, Tensor value) {
  Node node;
  node.op = OpKind::kParameter;
  node.name = std::move(name);
  node.value = std::move(value);
  return Insert(std::move(node));
}

absl::StatusOr<NodeId> Graph::AddNode(OpKind op, std::string name, std::vector<NodeId> inputs,
                                      NodeAttrs attrs) {
  if (op == OpKind::kInput || op == OpKind::kParameter) {
    return absl::InvalidArgumentError(absl::StrCat("AddNode cannot make ", OpKindName(op), " \"",
                                                   name, "\": use AddInput / AddParameter"));
  }
  Node node;
  node.op = op;
  node.name = std::move(name);
  node.inputs = std::move(inputs);
  node.attrs = std::holds_alternative<std::monostate>(attrs) ? DefaultAttrs(op) : std::move(attrs);
  return Insert(std::move(node));
}

absl::StatusOr<NodeId> Graph::Insert(Node node) {
  if (node.name.empty()) node.name = UniqueName(OpKindName(node.op));
  if (by_name_.contains(node.name)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a node named \"", node.name, "\" already exists (", OpKindName(node.op), " not added)"));
  }
  if (nodes_.size() >= static_cast<size_t>(std::numeric_limits<NodeId>::max())) {
    return absl::ResourceExhaustedError("graph has the maximum number of node ids");
  }
  node.id = static_cast<NodeId>(nodes_.size());
  QLAB_RETURN_IF_ERROR(InferNode(node));
  by_name_[node.name] = node.id;
  nodes_.push_back(std::make_unique<Node>(std::move(node)));
  return nodes_.back()->id;
}

absl::Status Graph::InferNode(Node& node) const {
  if (node.op == OpKind::kInput) {
    if (node.shape.empty()) {
      return NodeError(node, "needs a batch axis, got shape ", ShapeString(node.shape));
    }
    const absl::StatusOr<int64_t> numel =
        CheckedNumElements(node.dtype, node.shape, Layout::kRowMajor);
    if (!numel.ok()) return NodeError(node, numel.status().message());
    return absl::OkStatus();
  }
  std::vector<ValueType> types;
  types.reserve(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const NodeId in = node.inputs[i];
    if (!Contains(in)) return NodeError(node, "input ", i, " (node id ", in, ") does not exist");
    types.push_back(ValueType{nodes_[in]->shape, nodes_[in]->dtype});
  }
  if (node.op == OpKind::kDequantize && node.attr<QuantizeAttrs>().dynamic &&
      !node.inputs.empty()) {
    const Node& producer = *nodes_[node.inputs[0]];
    if (producer.op != OpKind::kQuantize || !producer.attr<QuantizeAttrs>().dynamic) {
      return NodeError(node, "a dynamic dequantize must read a dynamic quantize, got ",
                       OpKindName(producer.op), " \"", producer.name, "\"");
    }
  }
  QLAB_ASSIGN_OR_RETURN(ValueType out, InferOutputType(node, types));
  node.shape = std::move(out.shape);
  node.dtype = out.dtype;
  return absl::OkStatus();
}

absl::Status Graph::SetOutputs(std::vector<NodeId> outputs) {
  if (outputs.empty()) return absl::InvalidArgumentError("a graph needs at least one output");
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!Contains(outputs[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("output ", i, " (node id ", outputs[i], ") does not exist"));
    }
  }
  outputs_ = std::move(outputs);
  return absl::OkStatus();
}

std::vector<NodeId> Graph::inputs() const {
  std::vector<NodeId> ids;
  for (const auto& node : nodes_) {
    if (node && node->op == OpKind::kInput) ids.push_back(node->id);
  }
  return ids;
}

bool Graph::Contains(NodeId id) const {
  return id >= 0 && static_cast<size_t>(id) < nodes_.size() && nodes_[id] != nullptr;
}

const Node& Graph::node(NodeId id) const {
  QLAB_CHECK_MSG(Contains(id), "Graph::node: no such node id");
  return *nodes_[id];
}

Node& Graph::mutable_node(NodeId id) {
  QLAB_CHECK_MSG(Contains(id), "Graph::mutable_node: no such node id");
  return *nodes_[id];
}

absl::StatusOr<NodeId> Graph::FindNode(absl::string_view name) const {
  const auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return absl::NotFoundError(absl::StrCat("no node named \"", name, "\""));
  }
  return it->second;
}

std::vector<NodeId> Graph::node_ids() const {
  std::vector<NodeId> ids;
  for (const auto& node : nodes_) {
    if (node) ids.push_back(node->id);
  }
  return ids;
}

int Graph::num_nodes() const { return static_cast<int>(by_name_.size()); }

std::vector<NodeId> Graph::Users(NodeId id) const {
  std::vector<NodeId> users;
  for (const auto& node : nodes_) {
    if (node && std::find(node->inputs.begin(), node->inputs.end(), id) != node->inputs.end()) {
      users.push_back(node->id);
    }
  }
  return users;
}

absl::StatusOr<std::vector<NodeId>> Graph::TopologicalOrder() const {
  // Kahn's algorithm; a min-heap on the id picks, among the ready nodes, the one created first.
  const size_t n = nodes_.size();
  std::vector<int> unmet(n, 0);  // input edges whose producer is not emitted yet
  std::vector<std::vector<NodeId>> consumers(n);
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<NodeId>> ready;
  int live = 0;
  for (const auto& node : nodes_) {
    if (!node) continue;
    ++live;
    unmet[node->id] = static_cast<int>(node->inputs.size());
    for (NodeId in : node->inputs) {
      QLAB_CHECK_MSG(Contains(in), "a node reads a removed node");
      consumers[in].push_back(node->id);
    }
    if (node->inputs.empty()) ready.push(node->id);
  }
  std::vector<NodeId> order;
  order.reserve(live);
  std::vector<bool> emitted(n, false);
  while (!ready.empty()) {
    const NodeId id = ready.top();
    ready.pop();
    order.push_back(id);
    emitted[id] = true;
    for (NodeId c : consumers[id]) {
      if (--unmet[c] == 0) ready.push(c);
    }
  }
  if (static_cast<int>(order.size()) == live) return order;

  // Every node left over has an input that is left over too. Walking such inputs backwards from
  // any of them must revisit a node: that node lies on a cycle (the start may only lie
  // downstream of one).
  NodeId walker = kNoNode;
  for (const auto& node : nodes_) {
    if (node && !emitted[node->id]) {
      walker = node->id;
      break;
    }
  }
  std::vector<bool> seen(n, false);
  while (!seen[walker]) {
    seen[walker] = true;
    for (NodeId in : nodes_[walker]->inputs) {
      if (!emitted[in]) {
        walker = in;
        break;
      }
    }
  }
  const Node& on_cycle = *nodes_[walker];
  return absl::InvalidArgumentError(absl::StrCat(
      "the graph has a cycle through ", OpKindName(on_cycle.op), " \"", on_cycle.name, "\""));
}

absl::Status Graph::ReplaceInput(NodeId consumer, int index, NodeId producer) {
  if (!Contains(consumer)) {
    return absl::NotFoundError(absl::StrCat("ReplaceInput: no consumer node id ", consumer));
  }
  Node& node = *nodes_[consumer];
  if (!Contains(producer)) {
    return absl::NotFoundError(absl::StrCat("ReplaceInput on ", OpKindName(node.op), " \"",
                                            node.name, "\": no producer node id ", producer));
  }
  if (index < 0 || index >= static_cast<int>(node.inputs.size())) {
    return absl::OutOfRangeError(absl::StrCat("ReplaceInput on ", OpKindName(node.op), " \"",
                                              node.name, "\": input index ", index, " of ",
                                              node.inputs.size()));
  }
  node.inputs[index] = producer;
  return absl::OkStatus();
}

absl::Status Graph::ReplaceAllUsesWith(NodeId from, NodeId to) {
  if (!Contains(from) || !Contains(to)) {
    return absl::NotFoundError(
        absl::StrCat("ReplaceAllUsesWith: no node id ", Contains(from) ? to : from));
  }
  for (const auto& node : nodes_) {
    if (!node || node->id == to) continue;
    std::replace(node->inputs.begin(), node->inputs.end(), from, to);
  }
  std::replace(outputs_.begin(), outputs_.end(), from, to);
  return absl::OkStatus();
}

absl::Status Graph::RemoveNode(NodeId id) {
  if (!Contains(id)) return absl::NotFoundError(absl::StrCat("RemoveNode: no node id ", id));
  const Node& node = *nodes_[id];
  const std::vector<NodeId> users = Users(id);
  if (!users.empty()) {
    const Node& user = *nodes_[users.front()];
    return absl::FailedPreconditionError(absl::StrCat("cannot remove ", OpKindName(node.op), " \"",
                                                      node.name, "\": ", OpKindName(user.op), " \"",
                                                      user.name, "\" reads it"));
  }
  if (std::find(outputs_.begin(), outputs_.end(), id) != outputs_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot remove ", OpKindName(node.op), " \"",
                                                      node.name, "\": it is a graph output"));
  }
  by_name_.erase(node.name);
  nodes_[id].reset();
  return absl::OkStatus();
}

int Graph::RemoveDeadNodes() {
  std::vector<bool> live(nodes_.size(), false);
  std::vector<NodeId> stack(outputs_.begin(), outputs_.end());
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    if (live[id]) continue;
    live[id] = true;
    for (NodeId in : nodes_[id]->inputs) stack.push_back(in);
  }
  int removed = 0;
  for (auto& node : nodes_) {
    if (node && !live[node->id] && node->op != OpKind::kInput) {
      by_name_.erase(node->name);
      node.reset();
      ++removed;
    }
  }
  return removed;
}

absl::Status Graph::InferShapes() {
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, TopologicalOrder());
  for (NodeId id : order) QLAB_RETURN_IF_ERROR(InferNode(*nodes_[id]));
  return absl::OkStatus();
}

std::string Graph::UniqueName(absl::string_view base) const {
  std::string name(base);
  for (int suffix = 1; by_name_.contains(name); ++suffix) name = absl::StrCat(base, "_", suffix);
  return name;
}

std::string Graph::Dump() const {
  absl::StatusOr<std::vector<NodeId>> order = TopologicalOrder();
  std::string out;
  if (!order.ok()) {
    // Still useful for debugging a broken rewrite: creation order, flagged.
    absl::StrAppend(&out, "# ", order.status().message(), "; nodes in creation order\n");
    order = node_ids();
  }
  const auto ref = [this](NodeId id) {
    return Contains(id) ? absl::StrCat("%", nodes_[id]->name) : absl::StrCat("%<missing ", id, ">");
  };
  for (NodeId id : *order) {
    const Node& node = *nodes_[id];
    std::vector<std::string> args;
    for (NodeId in : node.inputs) args.push_back(ref(in));
    std::string attrs = AttrsString(node);
    if (!attrs.empty()) args.push_back(std::move(attrs));
    absl::StrAppend(&out, "%", node.name, " : ", DTypeName(node.dtype), ShapeString(node.shape),
                    " = ", OpKindName(node.op), "(", absl::StrJoin(args, ", "), ")\n");
  }
  std::vector<std::string> results;
  for (NodeId id : outputs_) results.push_back(ref(id));
  absl::StrAppend(&out, "return (", absl::StrJoin(results, ", "), ")\n");
  return out;
}

}  // namespace qlab
