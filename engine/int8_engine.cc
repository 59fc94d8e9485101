// Int8Engine (engine/int8_engine.h): pattern-matching lowering of a Q/DQ graph onto the
// integer kernels, and its executor.
#include "engine/int8_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "engine/layout.h"
#include "engine/pool_geometry.h"
#include "kernels/fp32/fp32_eltwise.h"
#include "kernels/fp32/fp32_pool.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qpool/qpool.h"
#include "kernels/quantize/quantize.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab {
namespace {

enum class ValueKind : uint8_t { kU8, kF32 };

// A tensor the engine materializes: NHWC per sample (rank-2 values are 1 x 1 x features), uint8
// with its (uint8-shifted) quantization parameters, or float.
struct ValueInfo {
  ValueKind kind = ValueKind::kF32;
  int64_t h = 1, w = 1, c = 1;
  bool rank4 = true;
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = 0, qmax = 255;
  std::string name;
  int64_t PerSample() const { return h * w * c; }
  size_t ElementSize() const { return kind == ValueKind::kU8 ? 1 : 4; }
  bool SameQuantization(const ValueInfo& o) const {
    return kind == ValueKind::kU8 && o.kind == ValueKind::kU8 && scale == o.scale &&
           zero_point == o.zero_point && qmin == o.qmin && qmax == o.qmax;
  }
};

enum class StepKind : uint8_t {
  kQuantize,          // f32 -> u8
  kDequantize,        // u8 -> f32
  kConv,              // u8 -> u8 or f32 (int8 conv / linear with its output stage)
  kQAdd,              // u8 + u8 -> u8
  kQMaxPool,          // u8 -> u8
  kQGlobalAvgPool,    // u8 -> u8
  kF32Add,            // f32 + f32 -> f32 (+ relu)
  kF32Relu,           // f32 -> f32
  kF32MaxPool,        // f32 -> f32
  kF32AvgPool,        // f32 -> f32
  kF32GlobalAvgPool,  // f32 -> f32
  kSlice,             // any element type
  kChannelPad,        // any element type; fill = the value of 0.0
  kFlatten,           // any element type: NHWC [h,w,c] -> PyTorch's (c, h, w) order
};

struct Step {
  explicit Step(StepKind k) : kind(k) {}
  StepKind kind;
  std::vector<int> inputs;  // value indices
  int output = -1;
  bool relu = false;
  // kConv
  kernels::QConvShape conv;  // batch set per run
  int32_t input_zero_point = 0;
  std::vector<int8_t> weights_ohwi;
  std::vector<int32_t> bias;
  kernels::QConvOutput conv_output;
  // pools and element-wise
  kernels::QAddParams add;
  kernels::QGlobalAvgPoolParams global_avg;
  kernels::QPoolShape qpool;
  kernels::Fp32PoolGeometry fpool;
  StridedSliceAttrs slice;
  ChannelPadAttrs pad;
};

absl::Status NodeError(const Node& node, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(OpKindName(node.op), " %", node.name, ": ", message));
}
absl::Status NotLowered(const Node& node, absl::string_view message) {
  return absl::UnimplementedError(
      absl::StrCat(OpKindName(node.op), " %", node.name, " is not lowered: ", message));
}

// The single user of `id` if it has exactly one and is not a graph output; else kNoNode.
NodeId SoleUser(const Graph& g, NodeId id) {
  const std::vector<NodeId> users = g.Users(id);
  if (users.size() != 1) return kNoNode;
  for (const NodeId out : g.outputs()) {
    if (out == id) return kNoNode;
  }
  return users[0];
}

bool IsStaticPerTensorQuantize(const Node& n) {
  if (n.op != OpKind::kQuantize) return false;
  const QuantizeAttrs& a = n.attr<QuantizeAttrs>();
  return !a.dynamic && !IsPerChannel(a.params.qscheme);
}

// uint8 view of a quantized activation: int8 values shift by 128.
void SetU8Quantization(const QuantParams& p, ValueInfo& v) {
  const int32_t shift = p.dtype == DType::kInt8 ? 128 : 0;
  v.kind = ValueKind::kU8;
  v.scale = p.scales[0];
  v.zero_point = p.zero_points[0] + shift;
  v.qmin = p.quant_min + shift;
  v.qmax = p.quant_max + shift;
}

ValueInfo ShapeInfo(const Node& node) {
  ValueInfo v;
  v.name = node.name;
  if (node.shape.size() == 4) {
    v.rank4 = true;
    v.c = node.shape[1];
    v.h = node.shape[2];
    v.w = node.shape[3];
  } else {
    v.rank4 = false;
    v.c = node.shape.size() >= 2 ? node.shape[1] : 1;
  }
  return v;
}

}  // namespace

std::string LoweringReport::Summary() const {
  std::string s =
      absl::StrCat(integer_steps.size(), " integer steps, ", float_steps.size(), " float steps");
  if (!float_steps.empty()) absl::StrAppend(&s, ": ", absl::StrJoin(float_steps, "; "));
  return s;
}

struct Int8Engine::Impl {
  std::vector<ValueInfo> values;
  std::vector<Step> steps;
  int input_value = -1;
  int output_value = -1;
  LoweringReport report;
  absl::flat_hash_map<std::string, int> quantize_node_value;  // for QuantizedValue
  std::unique_ptr<kernels::ThreadPool> pool;

  // Run state.
  int64_t batch = 0;
  std::map<int64_t, std::vector<std::optional<kernels::QConvU8S8_NHWC>>> convs_by_batch;
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<int> last_use;  // step index after which a value's buffer can go
  bool keep_all = false;      // keep every value until the next Run (QuantizedValue)

  // --- Compilation ----------------------------------------------------------------------------
  const Graph* graph = nullptr;
  absl::flat_hash_map<NodeId, int> value_of;  // graph node -> the value holding its output
  absl::flat_hash_map<int, int> float_view;   // u8 value -> its dequantized f32 value
  absl::flat_hash_map<NodeId, bool> absorbed;

  int NewValue(ValueInfo v) {
    values.push_back(std::move(v));
    return static_cast<int>(values.size()) - 1;
  }
  int AddStep(Step step) {
    steps.push_back(std::move(step));
    return steps.back().output;
  }
  absl::StatusOr<int> ValueOf(const Node& consumer, NodeId input) {
    const auto it = value_of.find(input);
    if (it == value_of.end()) {
      return NodeError(consumer, absl::StrCat("input %", graph->node(input).name,
                                              " is not an activation the engine computed"));
    }
    return it->second;
  }
  // The float version of a value (dequantizing a u8 one once).
  int Float(int v) {
    if (values[v].kind == ValueKind::kF32) return v;
    if (const auto it = float_view.find(v); it != float_view.end()) return it->second;
    ValueInfo f = values[v];
    f.kind = ValueKind::kF32;
    f.name += ".dequantized";
    Step step{StepKind::kDequantize};
    step.inputs = {v};
    step.output = NewValue(f);
    float_view[v] = step.output;
    return AddStep(std::move(step));
  }
  // `v` quantized as `target` (a u8 ValueInfo): the same value when it already is.
  int RequireU8(int v, const ValueInfo& target) {
    if (values[v].SameQuantization(target)) return v;
    const int f = Float(v);
    ValueInfo q = target;
    q.h = values[f].h;
    q.w = values[f].w;
    q.c = values[f].c;
    q.rank4 = values[f].rank4;
    Step step{StepKind::kQuantize};
    step.inputs = {f};
    step.output = NewValue(q);
    return AddStep(std::move(step));
  }

  absl::Status CompileConv(const Node& node);
  absl::Status CompileAdd(const Node& node);
  absl::Status CompilePool(const Node& node);
  absl::Status CompileLayout(const Node& node);
  absl::Status Compile(const Graph& g, int threads);
  Int8EngineOptions options;

  // --- Execution ------------------------------------------------------------------------------
  absl::Status Execute(const Tensor& input);
  void RunStep(size_t index);
  uint8_t* Buffer(int v) { return buffers[v].data(); }
  float* FloatBuffer(int v) { return reinterpret_cast<float*>(buffers[v].data()); }
};

absl::Status Int8Engine::Impl::CompileConv(const Node& node) {
  const Graph& g = *graph;
  QLAB_ASSIGN_OR_RETURN(const int x, ValueOf(node, node.inputs[0]));
  if (values[x].kind != ValueKind::kU8) {
    return NotLowered(node, "its input is float (a layer left in float); run it as fake-quant");
  }
  const Node& w_dq = g.node(node.inputs[1]);
  if (w_dq.op != OpKind::kDequantize || g.node(w_dq.inputs[0]).op != OpKind::kParameter ||
      g.node(w_dq.inputs[0]).value.dtype() != DType::kInt8) {
    return NotLowered(node, "its weights are not an int8 parameter behind a dequantize");
  }
  const QuantParams& wp = w_dq.attr<QuantizeAttrs>().params;
  for (const int32_t zp : wp.zero_points) {
    if (zp != 0) return NodeError(node, "weights must be symmetric (zero point 0)");
  }
  const Tensor& w = g.node(w_dq.inputs[0]).value;
  const bool is_conv = node.op == OpKind::kConv2d;
  const int64_t cout = w.dim(0);
  const int64_t cin = is_conv ? w.dim(1) : w.dim(1);
  const int64_t kh = is_conv ? w.dim(2) : 1;
  const int64_t kw = is_conv ? w.dim(3) : 1;
  if (wp.scales.size() != 1 && static_cast<int64_t>(wp.scales.size()) != cout) {
    return NodeError(node, "weight scales are neither per tensor nor per output channel");
  }

  Step step{StepKind::kConv};
  step.inputs = {x};
  kernels::QConvShape& s = step.conv;
  const ValueInfo& xi = values[x];
  if (is_conv) {
    const Conv2dAttrs& a = node.attr<Conv2dAttrs>();
    if (a.groups != 1 || a.dilation[0] != 1 || a.dilation[1] != 1) {
      return NotLowered(node, "grouped or dilated convolution");
    }
    s.input_height = xi.h;
    s.input_width = xi.w;
    s.stride_height = a.stride[0];
    s.stride_width = a.stride[1];
    s.padding_top = s.padding_bottom = a.padding[0];
    s.padding_left = s.padding_right = a.padding[1];
  } else {
    if (xi.h != 1 || xi.w != 1) return NodeError(node, "linear input must be [N, features]");
  }
  s.input_channels = cin;
  s.output_channels = cout;
  s.kernel_height = kh;
  s.kernel_width = kw;
  step.input_zero_point = xi.zero_point;
  // OIHW -> OHWI (the kernel's K order: ky, kx, ci).
  step.weights_ohwi.resize(w.numel());
  const int8_t* wd = w.data<int8_t>();
  for (int64_t o = 0; o < cout; ++o) {
    for (int64_t ci = 0; ci < cin; ++ci) {
      for (int64_t y = 0; y < kh; ++y) {
        for (int64_t xx = 0; xx < kw; ++xx) {
          step.weights_ohwi[((o * kh + y) * kw + xx) * cin + ci] =
              wd[((o * cin + ci) * kh + y) * kw + xx];
        }
      }
    }
  }
  // Accumulator scale per output channel (exact in double: a product of two floats).
  std::vector<double> acc_scale(cout);
  for (int64_t o = 0; o < cout; ++o) {
    acc_scale[o] = static_cast<double>(xi.scale) * wp.scales[wp.scales.size() == 1 ? 0 : o];
  }
  // The bias. An int32 bias quantized at exactly the accumulator's scale (DeriveBiasQParams) is
  // added to the accumulator as is (kDequantized: as the float the reference adds instead); a
  // float bias stays float (kFloat) or is rounded to int32 at that scale.
  std::vector<float> float_bias;
  bool int32_bias = true;  // a bias on the int32 grid, or none
  if (node.inputs.size() > 2) {
    const Node& b = g.node(node.inputs[2]);
    step.bias.resize(cout);
    if (b.op == OpKind::kDequantize && g.node(b.inputs[0]).op == OpKind::kParameter &&
        g.node(b.inputs[0]).value.dtype() == DType::kInt32) {
      const QuantParams& bp = b.attr<QuantizeAttrs>().params;
      const int32_t* q = g.node(b.inputs[0]).value.data<int32_t>();
      for (int64_t o = 0; o < cout; ++o) {
        const float bias_scale = bp.scales[bp.scales.size() == 1 ? 0 : o];
        const float expected = xi.scale * wp.scales[wp.scales.size() == 1 ? 0 : o];
        step.bias[o] = bias_scale == expected
                           ? q[o]
                           : static_cast<int32_t>(std::nearbyint(
                                 q[o] * static_cast<double>(bias_scale) / acc_scale[o]));
      }
      if (options.int32_bias == Int8EngineOptions::Int32Bias::kDequantized) {
        // What the reference's dequantize of the bias computes: float(q - 0) * scale.
        float_bias.resize(cout);
        for (int64_t o = 0; o < cout; ++o) {
          float_bias[o] = static_cast<float>(q[o]) * bp.scales[bp.scales.size() == 1 ? 0 : o];
        }
        step.bias.clear();
        int32_bias = false;
      }
    } else if (b.op == OpKind::kParameter && b.value.dtype() == DType::kFloat32) {
      const float* bf = b.value.data<float>();
      if (options.float_bias == Int8EngineOptions::FloatBias::kFloat) {
        float_bias.assign(bf, bf + cout);
        step.bias.clear();
        int32_bias = false;
      } else {
        for (int64_t o = 0; o < cout; ++o) {
          step.bias[o] = static_cast<int32_t>(std::nearbyint(bf[o] / acc_scale[o]));
        }
      }
    } else {
      return NotLowered(node, "its bias is neither float nor an int32 parameter");
    }
  }
  // The pattern's tail: [relu] -> quantize.
  NodeId last = node.id;
  bool relu = false;
  if (const NodeId user = SoleUser(g, last); user != kNoNode && g.node(user).op == OpKind::kRelu) {
    const NodeId after = SoleUser(g, user);
    if (after != kNoNode && IsStaticPerTensorQuantize(g.node(after))) {
      relu = true;
      last = user;
    }
  }
  const NodeId q = SoleUser(g, last);
  ValueInfo out = ShapeInfo(node);
  kernels::QConvOutput& os = step.conv_output;
  os.multipliers.resize(cout);
  os.float_bias = std::move(float_bias);
  if (q != kNoNode && IsStaticPerTensorQuantize(g.node(q))) {
    SetU8Quantization(g.node(q).attr<QuantizeAttrs>().params, out);
    os.type = kernels::QOutputType::kU8;
    // The reference's order, float conv output then quantize (v * (1.0f / y_s)), unless an
    // int32 bias is asked to use one multiplier.
    const bool one_multiplier =
        int32_bias && options.int32_bias == Int8EngineOptions::Int32Bias::kOneMultiplier;
    const bool rounded_float_bias =
        node.inputs.size() > 2 && g.node(node.inputs[2]).op == OpKind::kParameter &&
        options.float_bias == Int8EngineOptions::FloatBias::kRoundedToInt32;
    if (one_multiplier || rounded_float_bias) {
      os.requantization = kernels::QRequantization::kFloat;
      for (int64_t o = 0; o < cout; ++o) {
        os.multipliers[o] = static_cast<float>(acc_scale[o] / out.scale);
      }
    } else {
      os.requantization = kernels::QRequantization::kFloatBias;
      for (int64_t o = 0; o < cout; ++o) os.multipliers[o] = static_cast<float>(acc_scale[o]);
      os.output_inverse_scale = 1.0f / out.scale;
    }
    os.zero_point = out.zero_point;
    os.min = relu ? std::max(out.zero_point, out.qmin) : out.qmin;
    os.max = out.qmax;
    out.name = g.node(q).name;
    absorbed[q] = true;
    if (relu) absorbed[last] = true;
    step.output = NewValue(out);
    value_of[q] = step.output;
    quantize_node_value[g.node(q).name] = step.output;
    report.integer_steps.push_back(absl::StrCat(OpKindName(node.op), " %", node.name,
                                                " -> int8 conv, u8 out", relu ? ", relu" : ""));
  } else {
    os.type = kernels::QOutputType::kF32;
    for (int64_t o = 0; o < cout; ++o) os.multipliers[o] = static_cast<float>(acc_scale[o]);
    step.output = NewValue(out);
    value_of[node.id] = step.output;
    report.integer_steps.push_back(
        absl::StrCat(OpKindName(node.op), " %", node.name, " -> int8 conv, f32 out"));
  }
  AddStep(std::move(step));
  return absl::OkStatus();
}

absl::Status Int8Engine::Impl::CompileAdd(const Node& node) {
  const Graph& g = *graph;
  QLAB_ASSIGN_OR_RETURN(const int a, ValueOf(node, node.inputs[0]));
  QLAB_ASSIGN_OR_RETURN(const int b, ValueOf(node, node.inputs[1]));
  NodeId last = node.id;
  bool relu = false;
  if (const NodeId user = SoleUser(g, last); user != kNoNode && g.node(user).op == OpKind::kRelu) {
    relu = true;
    last = user;
  }
  const NodeId q = SoleUser(g, last);
  if (values[a].kind == ValueKind::kU8 && values[b].kind == ValueKind::kU8 && q != kNoNode &&
      IsStaticPerTensorQuantize(g.node(q))) {
    ValueInfo out = ShapeInfo(node);
    SetU8Quantization(g.node(q).attr<QuantizeAttrs>().params, out);
    const float am = values[a].scale / out.scale;
    const float bm = values[b].scale / out.scale;
    // The kernel keeps every intermediate exact in float only below 2^8 (qpool.h).
    if (am < 256.0f && bm < 256.0f) {
      Step step{StepKind::kQAdd};
      step.inputs = {a, b};
      kernels::QAddParams& add = step.add;
      add.a_zero_point = values[a].zero_point;
      add.a_multiplier = am;
      add.b_zero_point = values[b].zero_point;
      add.b_multiplier = bm;
      add.output_zero_point = out.zero_point;
      add.min = relu ? std::max(out.zero_point, out.qmin) : out.qmin;
      add.max = out.qmax;
      if (options.add == Int8EngineOptions::Add::kReference) {
        // Dequantize both (float(q - zp) * s), add, quantize (* (1.0f / y_s)): the reference.
        step.add.a_multiplier = values[a].scale;
        step.add.b_multiplier = values[b].scale;
        step.add.output_multiplier = 1.0f / out.scale;
      }
      out.name = g.node(q).name;
      step.output = NewValue(out);
      value_of[q] = step.output;
      quantize_node_value[g.node(q).name] = step.output;
      absorbed[q] = true;
      if (relu) absorbed[last] = true;
      AddStep(std::move(step));
      report.integer_steps.push_back(
          absl::StrCat("add %", node.name, " -> int8 add", relu ? ", relu" : ""));
      return absl::OkStatus();
    }
  }
  Step step{StepKind::kF32Add};
  step.inputs = {Float(a), Float(b)};
  step.relu = relu;
  ValueInfo out = ShapeInfo(node);
  out.kind = ValueKind::kF32;
  step.output = NewValue(out);
  value_of[last] = step.output;
  if (relu) absorbed[last] = true;
  AddStep(std::move(step));
  report.float_steps.push_back(absl::StrCat("add %", node.name, relu ? " + relu" : "",
                                            ": float (inputs or output not quantized)"));
  return absl::OkStatus();
}

absl::Status Int8Engine::Impl::CompilePool(const Node& node) {
  const Graph& g = *graph;
  QLAB_ASSIGN_OR_RETURN(const int x, ValueOf(node, node.inputs[0]));
  const ValueInfo& xi = values[x];
  ValueInfo out = ShapeInfo(node);
  // A global average: adaptive pooling to 1x1, or an average pool whose window is the whole
  // unpadded input (the CIFAR ResNets' F.avg_pool2d(x, x.size(3))).
  bool global = false;
  if (node.op == OpKind::kAdaptiveAvgPool2d) {
    const auto& a = node.attr<AdaptiveAvgPool2dAttrs>();
    if (a.output_size[0] != 1 || a.output_size[1] != 1) {
      return NotLowered(node, "adaptive average pooling to a size other than 1x1");
    }
    global = true;
  } else if (node.op == OpKind::kAvgPool2d) {
    const Pool2dAttrs& a = node.attr<Pool2dAttrs>();
    global = a.kernel[0] == xi.h && a.kernel[1] == xi.w && a.padding[0] == 0 && a.padding[1] == 0 &&
             out.h == 1 && out.w == 1;
  }
  if (global) {
    const NodeId q = SoleUser(g, node.id);
    if (xi.kind == ValueKind::kU8 && q != kNoNode && IsStaticPerTensorQuantize(g.node(q))) {
      SetU8Quantization(g.node(q).attr<QuantizeAttrs>().params, out);
      Step step{StepKind::kQGlobalAvgPool};
      step.inputs = {x};
      kernels::QGlobalAvgPoolParams& average = step.global_avg;
      average.input_zero_point = xi.zero_point;
      average.multiplier = static_cast<float>(static_cast<double>(xi.scale) /
                                              (static_cast<double>(out.scale) * xi.h * xi.w));
      average.output_zero_point = out.zero_point;
      average.min = out.qmin;
      average.max = out.qmax;
      if (options.global_average == Int8EngineOptions::GlobalAverage::kReference) {
        step.global_avg.input_scale = xi.scale;
        step.global_avg.output_inverse_scale = 1.0f / out.scale;
      }
      out.name = g.node(q).name;
      step.output = NewValue(out);
      value_of[q] = step.output;
      quantize_node_value[g.node(q).name] = step.output;
      absorbed[q] = true;
      AddStep(std::move(step));
      report.integer_steps.push_back(
          absl::StrCat(OpKindName(node.op), " %", node.name, " -> int8 global average pool"));
      return absl::OkStatus();
    }
    Step step{StepKind::kF32GlobalAvgPool};
    step.inputs = {Float(x)};
    out.kind = ValueKind::kF32;
    step.output = NewValue(out);
    value_of[node.id] = step.output;
    AddStep(std::move(step));
    report.float_steps.push_back(absl::StrCat(OpKindName(node.op), " %", node.name, ": float"));
    return absl::OkStatus();
  }
  const Pool2dAttrs& a = node.attr<Pool2dAttrs>();
  kernels::QPoolShape shape;
  shape.input_height = xi.h;
  shape.input_width = xi.w;
  shape.channels = xi.c;
  shape.kernel_height = a.kernel[0];
  shape.kernel_width = a.kernel[1];
  shape.stride_height = a.stride[0];
  shape.stride_width = a.stride[1];
  shape.padding_top = shape.padding_bottom = a.padding[0];
  shape.padding_left = shape.padding_right = a.padding[1];
  const bool floor_geometry = static_cast<int64_t>(shape.output_height()) == out.h &&
                              static_cast<int64_t>(shape.output_width()) == out.w;
  if (node.op == OpKind::kMaxPool2d && xi.kind == ValueKind::kU8 && floor_geometry) {
    // max commutes with the monotonic dequantization: the integers pool as they are.
    Step step{StepKind::kQMaxPool};
    step.inputs = {x};
    step.qpool = shape;
    ValueInfo q = xi;
    q.h = out.h;
    q.w = out.w;
    q.name = node.name;
    step.output = NewValue(q);
    value_of[node.id] = step.output;
    AddStep(std::move(step));
    report.integer_steps.push_back(absl::StrCat("max_pool2d %", node.name, " -> int8 max pool"));
    return absl::OkStatus();
  }
  Step step{node.op == OpKind::kMaxPool2d ? StepKind::kF32MaxPool : StepKind::kF32AvgPool};
  step.inputs = {Float(x)};
  step.fpool = Fp32PoolGeometryOf(a, xi.h, xi.w, xi.c, out.h, out.w);
  out.kind = ValueKind::kF32;
  step.output = NewValue(out);
  value_of[node.id] = step.output;
  AddStep(std::move(step));
  report.float_steps.push_back(absl::StrCat(OpKindName(node.op), " %", node.name, ": float"));
  return absl::OkStatus();
}

// flatten / identity / strided_slice / channel_pad: data movement on whichever element type the
// input has (u8 keeps its quantization: padding is filled with the zero point, i.e. 0.0).
absl::Status Int8Engine::Impl::CompileLayout(const Node& node) {
  QLAB_ASSIGN_OR_RETURN(const int x, ValueOf(node, node.inputs[0]));
  const ValueInfo& xi = values[x];
  if (node.op == OpKind::kIdentity || (node.op == OpKind::kFlatten && xi.h == 1 && xi.w == 1)) {
    value_of[node.id] = x;  // the same bytes: [N,1,1,C] and [N,C] coincide in NHWC
    return absl::OkStatus();
  }
  ValueInfo out = ShapeInfo(node);
  out.kind = xi.kind;
  out.scale = xi.scale;
  out.zero_point = xi.zero_point;
  out.qmin = xi.qmin;
  out.qmax = xi.qmax;
  Step step{StepKind::kFlatten};
  if (node.op == OpKind::kStridedSlice) {
    step.kind = StepKind::kSlice;
    step.slice = node.attr<StridedSliceAttrs>();
    if (step.slice.begin[0] != 0 || step.slice.step[0] != 1) {
      return NotLowered(node, "slicing the batch axis");
    }
  } else if (node.op == OpKind::kChannelPad) {
    step.kind = StepKind::kChannelPad;
    step.pad = node.attr<ChannelPadAttrs>();
  }
  step.inputs = {x};
  step.output = NewValue(out);
  value_of[node.id] = step.output;
  AddStep(std::move(step));
  (xi.kind == ValueKind::kU8 ? report.integer_steps : report.float_steps)
      .push_back(absl::StrCat(OpKindName(node.op), " %", node.name,
                              xi.kind == ValueKind::kU8 ? " -> on int8 values" : ": float"));
  return absl::OkStatus();
}

absl::Status Int8Engine::Impl::Compile(const Graph& g, int threads) {
  graph = &g;
  if (threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 1, got ", threads));
  }
  const std::vector<NodeId> inputs = g.inputs();
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the int8 engine runs graphs with one input; this one has ", inputs.size()));
  }
  if (g.outputs().empty()) return absl::InvalidArgumentError("the graph has no outputs");
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, g.TopologicalOrder());
  for (const NodeId id : order) {
    const Node& node = g.node(id);
    if (absorbed.contains(id)) continue;
    switch (node.op) {
      case OpKind::kInput: {
        if (node.shape.size() != 4 || node.dtype != DType::kFloat32) {
          return NodeError(node, "the input must be float32 NCHW");
        }
        ValueInfo v = ShapeInfo(node);
        v.kind = ValueKind::kF32;
        input_value = NewValue(v);
        value_of[id] = input_value;
        break;
      }
      case OpKind::kParameter:
        break;  // read by the layers that use them
      case OpKind::kQuantize: {
        if (!IsStaticPerTensorQuantize(node)) {
          return NotLowered(node, "dynamic or per-channel activation quantization");
        }
        QLAB_ASSIGN_OR_RETURN(const int x, ValueOf(node, node.inputs[0]));
        ValueInfo target = ShapeInfo(node);
        SetU8Quantization(node.attr<QuantizeAttrs>().params, target);
        target.name = node.name;
        const int before = static_cast<int>(steps.size());
        value_of[id] = RequireU8(x, target);
        quantize_node_value[node.name] = value_of[id];
        if (static_cast<int>(steps.size()) > before) {
          report.integer_steps.push_back(absl::StrCat("quantize %", node.name));
        }
        break;
      }
      case OpKind::kDequantize: {
        if (g.node(node.inputs[0]).op == OpKind::kParameter) break;  // weights and biases
        QLAB_ASSIGN_OR_RETURN(const int q, ValueOf(node, node.inputs[0]));
        value_of[id] = q;  // a dequantized view: consumers read the integers with their params
        break;
      }
      case OpKind::kConv2d:
      case OpKind::kLinear:
        QLAB_RETURN_IF_ERROR(CompileConv(node));
        break;
      case OpKind::kAdd:
        QLAB_RETURN_IF_ERROR(CompileAdd(node));
        break;
      case OpKind::kRelu: {
        QLAB_ASSIGN_OR_RETURN(const int x, ValueOf(node, node.inputs[0]));
        Step step{StepKind::kF32Relu};
        step.inputs = {Float(x)};
        ValueInfo out = values[step.inputs[0]];
        out.name = node.name;
        step.output = NewValue(out);
        value_of[id] = step.output;
        AddStep(std::move(step));
        report.float_steps.push_back(absl::StrCat("relu %", node.name, ": float"));
        break;
      }
      case OpKind::kMaxPool2d:
      case OpKind::kAvgPool2d:
      case OpKind::kAdaptiveAvgPool2d:
        QLAB_RETURN_IF_ERROR(CompilePool(node));
        break;
      case OpKind::kFlatten:
      case OpKind::kIdentity:
      case OpKind::kStridedSlice:
      case OpKind::kChannelPad:
        QLAB_RETURN_IF_ERROR(CompileLayout(node));
        break;
      default:
        return NotLowered(node, "no integer or float step for this op in the int8 engine");
    }
  }
  QLAB_ASSIGN_OR_RETURN(const int out, ValueOf(g.node(g.outputs()[0]), g.outputs()[0]));
  output_value = Float(out);
  last_use.assign(values.size(), -1);
  for (size_t i = 0; i < steps.size(); ++i) {
    for (const int v : steps[i].inputs) last_use[v] = static_cast<int>(i);
  }
  last_use[output_value] = std::numeric_limits<int>::max();
  if (threads > 1) pool = std::make_unique<kernels::ThreadPool>(threads);
  graph = nullptr;
  return absl::OkStatus();
}

void Int8Engine::Impl::RunStep(size_t index) {
  Step& step = steps[index];
  const ValueInfo& out = values[step.output];
  const size_t n = static_cast<size_t>(batch);
  buffers[step.output].resize(n * out.PerSample() * out.ElementSize());
  const ValueInfo& in = values[step.inputs[0]];
  const size_t in_count = n * in.PerSample();
  switch (step.kind) {
    case StepKind::kQuantize:
      kernels::Quantize(FloatBuffer(step.inputs[0]), in_count,
                        {out.scale, out.zero_point, out.qmin, out.qmax}, Buffer(step.output));
      break;
    case StepKind::kDequantize:
      kernels::Dequantize(Buffer(step.inputs[0]), in_count, in.scale, in.zero_point,
                          FloatBuffer(step.output));
      break;
    case StepKind::kConv:
      convs_by_batch[batch][index]->Run(Buffer(step.inputs[0]), Buffer(step.output), pool.get());
      break;
    case StepKind::kQAdd:
      kernels::QAddU8(Buffer(step.inputs[0]), Buffer(step.inputs[1]), in_count, step.add,
                      Buffer(step.output), pool.get());
      break;
    case StepKind::kQMaxPool: {
      kernels::QPoolShape shape = step.qpool;
      shape.batch = n;
      kernels::QMaxPoolU8_NHWC(shape, Buffer(step.inputs[0]), Buffer(step.output), pool.get());
      break;
    }
    case StepKind::kQGlobalAvgPool: {
      std::vector<int32_t> acc(n * in.c);
      kernels::QGlobalAvgPoolU8_NHWC(Buffer(step.inputs[0]), n, in.h * in.w, in.c, step.global_avg,
                                     acc.data(), Buffer(step.output), pool.get());
      break;
    }
    case StepKind::kF32Add:
      kernels::Fp32Add(FloatBuffer(step.inputs[0]), FloatBuffer(step.inputs[1]), in_count,
                       step.relu, FloatBuffer(step.output), nullptr);
      break;
    case StepKind::kF32Relu:
      kernels::Fp32Relu(FloatBuffer(step.inputs[0]), in_count, FloatBuffer(step.output), nullptr);
      break;
    case StepKind::kF32MaxPool:
    case StepKind::kF32AvgPool: {
      kernels::Fp32PoolGeometry f = step.fpool;
      f.batch = n;
      (step.kind == StepKind::kF32MaxPool ? kernels::Fp32MaxPool2dNhwc
                                          : kernels::Fp32AvgPool2dNhwc)(
          f, FloatBuffer(step.inputs[0]), FloatBuffer(step.output), nullptr);
      break;
    }
    case StepKind::kF32GlobalAvgPool:
      kernels::Fp32GlobalAvgPoolNhwc(n, in.h * in.w, in.c, FloatBuffer(step.inputs[0]),
                                     FloatBuffer(step.output));
      break;
    case StepKind::kSlice: {
      // NCHW attribute axes: 1 = channels, 2 = rows, 3 = columns; the batch is whole.
      const StridedSliceAttrs& a = step.slice;
      const size_t es = in.ElementSize();
      const uint8_t* src = Buffer(step.inputs[0]);
      uint8_t* dst = Buffer(step.output);
      for (size_t b = 0; b < n; ++b) {
        for (int64_t oy = 0; oy < out.h; ++oy) {
          for (int64_t ox = 0; ox < out.w; ++ox) {
            const int64_t iy = a.begin[2] + oy * a.step[2];
            const int64_t ix = a.begin[3] + ox * a.step[3];
            for (int64_t oc = 0; oc < out.c; ++oc) {
              const int64_t ic = a.begin[1] + oc * a.step[1];
              std::memcpy(dst + (((b * out.h + oy) * out.w + ox) * out.c + oc) * es,
                          src + (((b * in.h + iy) * in.w + ix) * in.c + ic) * es, es);
            }
          }
        }
      }
      break;
    }
    case StepKind::kChannelPad: {
      const size_t es = in.ElementSize();
      const uint8_t* src = Buffer(step.inputs[0]);
      uint8_t* dst = Buffer(step.output);
      const size_t pixels = n * static_cast<size_t>(in.h * in.w);
      for (size_t p = 0; p < pixels; ++p) {
        uint8_t* row = dst + p * out.c * es;
        if (es == 1) {
          std::memset(row, out.zero_point, out.c);
        } else {
          std::memset(row, 0, out.c * es);  // +0.0f
        }
        std::memcpy(row + step.pad.before * es, src + p * in.c * es, in.c * es);
      }
      break;
    }
    case StepKind::kFlatten: {
      const size_t es = in.ElementSize();
      for (size_t b = 0; b < n; ++b) {
        const uint8_t* src = Buffer(step.inputs[0]) + b * in.PerSample() * es;
        uint8_t* dst = Buffer(step.output) + b * in.PerSample() * es;
        for (int64_t c = 0; c < in.c; ++c) {
          for (int64_t p = 0; p < in.h * in.w; ++p) {
            std::memcpy(dst + (c * in.h * in.w + p) * es, src + (p * in.c + c) * es, es);
          }
        }
      }
      break;
    }
  }
  // Free what no later step reads (and what nobody asked to keep).
  for (const int v : step.inputs) {
    if (!keep_all && last_use[v] == static_cast<int>(index) && v != input_value) {
      std::vector<uint8_t>().swap(buffers[v]);
    }
  }
}

absl::Status Int8Engine::Impl::Execute(const Tensor& input) {
  const ValueInfo& in = values[input_value];
  if (input.dtype() != DType::kFloat32 || input.rank() != 4 || input.dim(1) != in.c ||
      input.dim(2) != in.h || input.dim(3) != in.w || input.dim(0) < 1) {
    return absl::InvalidArgumentError(absl::StrCat("int8 engine input ", input.DebugString(),
                                                   " does not fit float32[N,", in.c, ",", in.h, ",",
                                                   in.w, "]"));
  }
  batch = input.dim(0);
  auto& convs = convs_by_batch[batch];
  if (convs.empty()) {
    convs.resize(steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      if (steps[i].kind != StepKind::kConv) continue;
      kernels::QConvShape shape = steps[i].conv;
      shape.batch = static_cast<size_t>(batch);
      QLAB_ASSIGN_OR_RETURN(
          kernels::QConvU8S8_NHWC conv,
          kernels::QConvU8S8_NHWC::Create(
              shape, steps[i].input_zero_point, steps[i].weights_ohwi.data(),
              steps[i].bias.empty() ? nullptr : steps[i].bias.data(), steps[i].conv_output));
      convs[i].emplace(std::move(conv));
    }
  }
  buffers.assign(values.size(), {});
  buffers[input_value].resize(batch * in.PerSample() * sizeof(float));
  NchwToNhwc(input.data<float>(), batch, in.c, in.h * in.w, FloatBuffer(input_value));
  for (size_t i = 0; i < steps.size(); ++i) RunStep(i);
  return absl::OkStatus();
}

Int8Engine::Int8Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Int8Engine::Int8Engine(Int8Engine&&) noexcept = default;
Int8Engine& Int8Engine::operator=(Int8Engine&&) noexcept = default;
Int8Engine::~Int8Engine() = default;

absl::StatusOr<Int8Engine> Int8Engine::Create(const Graph& converted, int threads) {
  return Create(converted, threads, Int8EngineOptions());
}

absl::StatusOr<Int8Engine> Int8Engine::Create(const Graph& converted, int threads,
                                              const Int8EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  QLAB_RETURN_IF_ERROR(impl->Compile(converted, threads));
  return Int8Engine(std::move(impl));
}

absl::StatusOr<Tensor> Int8Engine::Run(const Tensor& input) {
  QLAB_RETURN_IF_ERROR(impl_->Execute(input));
  const ValueInfo& out = impl_->values[impl_->output_value];
  Shape shape = out.rank4 ? Shape{impl_->batch, out.c, out.h, out.w} : Shape{impl_->batch, out.c};
  QLAB_ASSIGN_OR_RETURN(Tensor result, Tensor::Create(DType::kFloat32, shape));
  const float* nhwc = impl_->FloatBuffer(impl_->output_value);
  if (out.rank4) {
    NhwcToNchw(nhwc, impl_->batch, out.c, out.h * out.w, result.data<float>());
  } else {
    std::memcpy(result.data<float>(), nhwc, result.nbytes());
  }
  return result;
}

absl::StatusOr<Tensor> Int8Engine::QuantizedValue(const std::string& name) const {
  const auto it = impl_->quantize_node_value.find(name);
  if (it == impl_->quantize_node_value.end()) {
    return absl::NotFoundError(absl::StrCat("no quantize node %", name, " in the int8 engine"));
  }
  const ValueInfo& v = impl_->values[it->second];
  const std::vector<uint8_t>& bytes = impl_->buffers[it->second];
  if (bytes.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the value of %", name, " was freed after its last use (or Run has not been called)"));
  }
  Shape shape = v.rank4 ? Shape{impl_->batch, v.c, v.h, v.w} : Shape{impl_->batch, v.c};
  QLAB_ASSIGN_OR_RETURN(Tensor result, Tensor::Create(DType::kFloat32, shape));
  std::vector<float> nhwc(bytes.size());
  kernels::Dequantize(bytes.data(), bytes.size(), v.scale, v.zero_point, nhwc.data());
  if (v.rank4) {
    NhwcToNchw(nhwc.data(), impl_->batch, v.c, v.h * v.w, result.data<float>());
  } else {
    std::memcpy(result.data<float>(), nhwc.data(), result.nbytes());
  }
  return result;
}

const LoweringReport& Int8Engine::report() const { return impl_->report; }

void Int8Engine::KeepAllValues(bool keep) { impl_->keep_all = keep; }

}  // namespace qlab
