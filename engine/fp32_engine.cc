// Fp32Engine (engine/fp32_engine.h): compile a float Graph into fused NHWC steps on kernels/fp32,
// then run them.
//
// Compilation, in order: copy the graph and fold batch norms; walk the topological order and turn
// each node into a Step, fusing (a) conv/linear -> relu, (b) conv -> add(residual) [-> relu] when
// the residual is already computed, (c) add -> relu and batch_norm -> relu, each only when the
// first node's value has no other reader; pack weights. A value is identified by the NodeId whose
// output it is (the last node of a fused chain); identity and no-op flattens alias their input.
//
// Buffers: at the first Run with a given batch, every value gets a slot by greedy liveness (a slot
// is reused once the last step reading its value has run; aliases extend their root's life), so
// that a ResNet's activations cycle through a handful of L2-sized buffers instead of touching
// fresh memory every layer.

#include "engine/fp32_engine.h"

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "engine/layout.h"
#include "engine/pool_geometry.h"
#include "kernels/fp32/aligned_floats.h"
#include "kernels/fp32/fp32_eltwise.h"
#include "kernels/fp32/fp32_gemm.h"
#include "kernels/fp32/fp32_gemm_double.h"
#include "kernels/fp32/fp32_pool.h"
#include "kernels/quantize/quantize.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/fold_dequantized_parameters.h"

namespace qlab {
namespace {

using kernels::AlignedFloats;

enum class StepKind : uint8_t {
  kConv,
  kLinear,
  kMaxPool,
  kAvgPool,
  kGlobalAvgPool,
  kAdd,
  kRelu,
  kAffine,
  kSigmoid,
  kFlattenNhwc,  // NHWC [N,H,W,C] -> [N, C*H*W] in PyTorch's (c, h, w) order
  kStridedSlice,
  kChannelPad,
  kCat,
  kFakeQuantize,  // a per-tensor quantize -> dequantize pair of the Q/DQ reference model
};

// Per-sample shape of a value: rank 4 values are NHWC {h, w, c}; rank 2 values {features}.
struct ValueShape {
  int rank = 4;
  int64_t h = 1, w = 1, c = 1;
  int64_t PerSample() const { return rank == 4 ? h * w * c : c; }
};

struct Step {
  StepKind kind;
  std::string name;             // the graph node it came from (the chain's first node)
  std::vector<NodeId> inputs;   // value ids read
  NodeId residual = kNoNode;    // conv/linear: fused residual value
  NodeId output = kNoNode;      // value id written
  bool relu = false;
  kernels::Fp32PackedWeights weights;  // conv, linear
  kernels::Fp32ConvGeometry conv;      // conv (batch filled at run time)
  kernels::Fp32PoolGeometry pool;      // pools (batch filled at run time)
  std::vector<float> scale, shift;     // affine
  StridedSliceAttrs slice;             // NCHW axes
  ChannelPadAttrs channel_pad;
  kernels::AffineParams fake_quant{1.0f, 0, 0, 0};  // kFakeQuantize
};

absl::Status NodeError(const Node& node, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(OpKindName(node.op), " \"", node.name, "\": ", message));
}

ValueShape ShapeOf(const Node& node) {
  ValueShape s;
  if (node.shape.size() == 4) {
    s.rank = 4;
    s.c = node.shape[1];
    s.h = node.shape[2];
    s.w = node.shape[3];
  } else {
    s.rank = 2;
    s.c = node.shape.size() == 2 ? node.shape[1] : 1;
  }
  return s;
}

}  // namespace

struct Fp32Engine::Impl {
  Graph graph;  // folded copy: the nodes the steps name and the value shapes
  NodeId input = kNoNode;
  ValueShape input_shape;
  std::vector<NodeId> outputs;
  std::vector<Step> steps;
  absl::flat_hash_map<NodeId, NodeId> alias;  // value -> the value whose buffer it shares
  absl::flat_hash_map<NodeId, ValueShape> shapes;
  pthreadpool_t pool = nullptr;
  Fp32Accumulation accumulation = Fp32Accumulation::kFloat;

  // Per-batch plan.
  int64_t planned_batch = -1;
  absl::flat_hash_map<NodeId, int> slot_of;
  std::vector<AlignedFloats> slots;

  ~Impl() {
    if (pool != nullptr) pthreadpool_destroy(pool);
  }

  NodeId Root(NodeId v) const {
    auto it = alias.find(v);
    return it == alias.end() ? v : it->second;
  }
  float* Data(NodeId v) { return slots[slot_of.at(Root(v))].data(); }

  absl::Status Compile(int threads);
  absl::Status CompileNode(const Node& node, const absl::flat_hash_set<NodeId>& computed,
                           absl::flat_hash_set<NodeId>& fused);
  void Plan(int64_t batch);
  void Execute(Step& step, int64_t batch);
};

namespace {

// The single user of `id` if it has exactly one and is not a graph output; else kNoNode.
NodeId SoleUser(const Graph& g, NodeId id) {
  const std::vector<NodeId> users = g.Users(id);
  if (users.size() != 1) return kNoNode;
  for (NodeId out : g.outputs()) {
    if (out == id) return kNoNode;
  }
  return users[0];
}

absl::StatusOr<const Tensor*> FloatParameter(const Graph& g, const Node& node, int index) {
  const Node& p = g.node(node.inputs[index]);
  if (p.op != OpKind::kParameter || p.value.dtype() != DType::kFloat32) {
    return NodeError(node, absl::StrCat("input ", index, " (\"", p.name,
                                        "\") must be a float32 parameter"));
  }
  return &p.value;
}

}  // namespace

absl::Status Fp32Engine::Impl::CompileNode(const Node& node,
                                           const absl::flat_hash_set<NodeId>& computed,
                                           absl::flat_hash_set<NodeId>& fused) {
  Step step;
  step.name = node.name;
  step.output = node.id;
  const auto activation = [&](int index) -> absl::StatusOr<NodeId> {
    const Node& in = graph.node(node.inputs[index]);
    if (in.op == OpKind::kParameter) {
      return NodeError(node, absl::StrCat("input ", index, " is the parameter \"", in.name,
                                          "\"; the engine takes activations there"));
    }
    return in.id;
  };
  // Fuses a following relu into this step when this node's value has no other reader.
  const auto fuse_relu = [&](NodeId from) {
    const NodeId user = SoleUser(graph, from);
    if (user != kNoNode && graph.node(user).op == OpKind::kRelu) {
      step.relu = true;
      step.output = user;
      fused.insert(user);
    }
  };

  switch (node.op) {
    case OpKind::kConv2d:
    case OpKind::kLinear: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      QLAB_ASSIGN_OR_RETURN(const Tensor* w, FloatParameter(graph, node, 1));
      const float* bias = nullptr;
      if (node.inputs.size() > 2) {
        QLAB_ASSIGN_OR_RETURN(const Tensor* b, FloatParameter(graph, node, 2));
        bias = b->data<float>();
      }
      if (node.op == OpKind::kConv2d) {
        const auto& a = node.attr<Conv2dAttrs>();
        if (a.groups != 1) {
          return NodeError(node, absl::StrCat("groups=", a.groups, " is not supported (only 1)"));
        }
        const ValueShape in = shapes.at(x), out = ShapeOf(node);
        step.kind = StepKind::kConv;
        step.weights = kernels::PackFp32ConvWeights(w->data<float>(), w->dim(0), w->dim(1),
                                                    w->dim(2), w->dim(3), bias);
        kernels::Fp32ConvGeometry& g = step.conv;
        g.in_h = in.h;
        g.in_w = in.w;
        g.in_channels = in.c;
        g.kernel_h = w->dim(2);
        g.kernel_w = w->dim(3);
        g.stride_h = a.stride[0];
        g.stride_w = a.stride[1];
        g.pad_h = a.padding[0];
        g.pad_w = a.padding[1];
        g.dilation_h = a.dilation[0];
        g.dilation_w = a.dilation[1];
        g.out_h = out.h;
        g.out_w = out.w;
      } else {
        step.kind = StepKind::kLinear;
        step.weights = kernels::PackFp32WeightsTransposed(w->data<float>(), w->dim(0),
                                                          w->dim(1), w->dim(1), bias);
      }
      // Residual add (+ relu) fused into the epilogue: the other operand must be computed by now
      // and be a different value.
      const NodeId user = SoleUser(graph, node.id);
      if (user != kNoNode && graph.node(user).op == OpKind::kAdd) {
        const Node& add = graph.node(user);
        const NodeId other = add.inputs[0] == node.id ? add.inputs[1] : add.inputs[0];
        if (other != node.id && computed.contains(other) &&
            graph.node(other).op != OpKind::kParameter) {
          step.residual = other;
          step.output = user;
          fused.insert(user);
          fuse_relu(user);
          break;
        }
      }
      fuse_relu(node.id);
      break;
    }
    case OpKind::kBatchNorm: {
      // Not folded (no conv/linear before it, or that layer has other readers): y = x * alpha +
      // shift per channel, alpha and shift in double as the interpreter computes them.
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      step.kind = StepKind::kAffine;
      const float eps = node.attr<BatchNormAttrs>().eps;
      std::vector<const float*> p(4);
      for (int i = 0; i < 4; ++i) {
        QLAB_ASSIGN_OR_RETURN(const Tensor* t, FloatParameter(graph, node, i + 1));
        p[i] = t->data<float>();
      }
      const int64_t c = shapes.at(x).c;
      for (int64_t ch = 0; ch < c; ++ch) {
        const double inv_std = 1.0 / std::sqrt(static_cast<double>(p[3][ch]) + eps);
        const double alpha = p[0][ch] * inv_std;
        step.scale.push_back(static_cast<float>(alpha));
        step.shift.push_back(static_cast<float>(p[1][ch] - p[2][ch] * alpha));
      }
      fuse_relu(node.id);
      break;
    }
    case OpKind::kRelu:
    case OpKind::kSigmoid: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      step.kind = node.op == OpKind::kRelu ? StepKind::kRelu : StepKind::kSigmoid;
      break;
    }
    case OpKind::kAdd: {
      QLAB_ASSIGN_OR_RETURN(NodeId a, activation(0));
      QLAB_ASSIGN_OR_RETURN(NodeId b, activation(1));
      if (shapes.at(a).rank != shapes.at(b).rank) {
        return NodeError(node, "operands of different ranks");
      }
      step.inputs = {a, b};
      step.kind = StepKind::kAdd;
      fuse_relu(node.id);
      break;
    }
    case OpKind::kMaxPool2d:
    case OpKind::kAvgPool2d:
    case OpKind::kAdaptiveAvgPool2d: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      const ValueShape in = shapes.at(x), out = ShapeOf(node);
      if (node.op == OpKind::kAdaptiveAvgPool2d) {
        if (out.h != 1 || out.w != 1) {
          return NodeError(node, "only output size 1x1 (global average pooling) is supported");
        }
        step.kind = StepKind::kGlobalAvgPool;
        break;
      }
      const auto& a = node.attr<Pool2dAttrs>();
      step.kind = node.op == OpKind::kMaxPool2d ? StepKind::kMaxPool : StepKind::kAvgPool;
      step.pool = Fp32PoolGeometryOf(a, in.h, in.w, in.c, out.h, out.w);
      break;
    }
    case OpKind::kFlatten:
    case OpKind::kIdentity: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      const ValueShape in = shapes.at(x);
      if (node.op == OpKind::kFlatten && node.attr<FlattenAttrs>().start_dim != 1) {
        return NodeError(node, "only start_dim=1 is supported");
      }
      // Identity, a flatten of [N, F], or of [N, C, 1, 1]: the same elements in the same order.
      if (node.op == OpKind::kIdentity || in.rank == 2 || (in.h == 1 && in.w == 1)) {
        alias[node.id] = Root(x);
        return absl::OkStatus();
      }
      step.inputs = {x};
      step.kind = StepKind::kFlattenNhwc;
      break;
    }
    case OpKind::kStridedSlice: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      const auto& a = node.attr<StridedSliceAttrs>();
      if (shapes.at(x).rank != 4) return NodeError(node, "only rank-4 inputs are supported");
      if (a.begin[0] != 0 || a.step[0] != 1 || a.end[0] < graph.node(x).shape[0]) {
        return NodeError(node, "slicing the batch axis is not supported");
      }
      step.inputs = {x};
      step.kind = StepKind::kStridedSlice;
      step.slice = a;
      break;
    }
    case OpKind::kChannelPad: {
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      step.kind = StepKind::kChannelPad;
      step.channel_pad = node.attr<ChannelPadAttrs>();
      break;
    }
    case OpKind::kQuantize: {
      // Only as the first half of a static per-tensor quantize -> dequantize pair: the pair is
      // one fake-quantize step, bit-identical to quantizing then dequantizing.
      const QuantizeAttrs& q = node.attr<QuantizeAttrs>();
      const NodeId user = SoleUser(graph, node.id);
      if (q.dynamic || IsPerChannel(q.params.qscheme) || user == kNoNode ||
          graph.node(user).op != OpKind::kDequantize) {
        return NodeError(node, "the FP32 engine runs quantize only as a static per-tensor "
                               "quantize -> dequantize pair (fake quantization)");
      }
      QLAB_ASSIGN_OR_RETURN(NodeId x, activation(0));
      step.inputs = {x};
      step.kind = StepKind::kFakeQuantize;
      step.fake_quant = {q.params.scales[0], q.params.zero_points[0], q.params.quant_min,
                         q.params.quant_max};
      step.output = user;
      fused.insert(user);
      break;
    }
    case OpKind::kCat: {
      if (node.attr<CatAttrs>().axis != 1) return NodeError(node, "only axis 1 is supported");
      for (int i = 0; i < static_cast<int>(node.inputs.size()); ++i) {
        QLAB_ASSIGN_OR_RETURN(NodeId x, activation(i));
        step.inputs.push_back(x);
      }
      step.kind = StepKind::kCat;
      break;
    }
    default:
      return NodeError(node, "op not supported by the FP32 engine");
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status Fp32Engine::Impl::Compile(int threads) {
  // A converted (Q/DQ) model: its quantized weights and biases become the float values they
  // stand for, so conv/linear see float parameters again.
  QLAB_RETURN_IF_ERROR(FoldDequantizedParameters(graph).status());
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(graph).status());
  const std::vector<NodeId> inputs = graph.inputs();
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the FP32 engine runs graphs with one input; this one has ", inputs.size()));
  }
  input = inputs[0];
  const Node& in = graph.node(input);
  if (in.dtype != DType::kFloat32 || (in.shape.size() != 4 && in.shape.size() != 2)) {
    return NodeError(in, "the input must be float32 of rank 4 (NCHW) or 2");
  }
  input_shape = ShapeOf(in);
  outputs = graph.outputs();
  if (outputs.empty()) return absl::InvalidArgumentError("the graph has no outputs");

  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph.TopologicalOrder());
  for (NodeId id : order) shapes[id] = ShapeOf(graph.node(id));
  absl::flat_hash_set<NodeId> computed = {input};
  absl::flat_hash_set<NodeId> fused;
  for (NodeId id : order) {
    const Node& node = graph.node(id);
    if (node.op == OpKind::kInput || node.op == OpKind::kParameter) continue;
    if (fused.contains(id)) continue;
    QLAB_RETURN_IF_ERROR(CompileNode(node, computed, fused));
    computed.insert(id);
    // A fused chain's later nodes are computed by the same step.
    if (!steps.empty() && steps.back().output != kNoNode) computed.insert(steps.back().output);
    for (NodeId f : fused) computed.insert(f);
  }
  for (NodeId out : outputs) {
    if (graph.node(out).op == OpKind::kParameter) {
      return NodeError(graph.node(out), "a parameter cannot be a graph output of the engine");
    }
  }
  if (threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 1, got ", threads));
  }
  if (threads > 1) pool = pthreadpool_create(static_cast<size_t>(threads));
  return absl::OkStatus();
}

// Greedy liveness: a value's slot returns to the free list after the last step reading it (or
// any alias of it). Graph outputs and the input are never freed. Best fit by capacity.
void Fp32Engine::Impl::Plan(int64_t batch) {
  slot_of.clear();
  slots.clear();
  std::vector<size_t> capacity;
  absl::flat_hash_map<NodeId, size_t> last_use;
  for (size_t i = 0; i < steps.size(); ++i) {
    for (NodeId v : steps[i].inputs) last_use[Root(v)] = i;
    if (steps[i].residual != kNoNode) last_use[Root(steps[i].residual)] = i;
  }
  for (NodeId out : outputs) last_use[Root(out)] = std::numeric_limits<size_t>::max();
  std::vector<int> free_slots;
  const auto allocate = [&](NodeId v) {
    const size_t need = static_cast<size_t>(shapes.at(v).PerSample() * batch);
    int best = -1;
    for (size_t j = 0; j < free_slots.size(); ++j) {
      const int s = free_slots[j];
      if (capacity[s] >= need && (best < 0 || capacity[s] < capacity[free_slots[best]])) {
        best = static_cast<int>(j);
      }
    }
    if (best >= 0) {
      slot_of[v] = free_slots[best];
      free_slots.erase(free_slots.begin() + best);
      return;
    }
    slot_of[v] = static_cast<int>(capacity.size());
    capacity.push_back(need);
  };
  allocate(input);
  for (size_t i = 0; i < steps.size(); ++i) {
    allocate(steps[i].output);  // before freeing: an output never shares its inputs' memory
    absl::flat_hash_set<NodeId> done;
    std::vector<NodeId> reads = steps[i].inputs;
    if (steps[i].residual != kNoNode) reads.push_back(steps[i].residual);
    for (NodeId v : reads) {
      const NodeId root = Root(v);
      if (last_use[root] == i && done.insert(root).second && root != input) {
        free_slots.push_back(slot_of.at(root));
      }
    }
  }
  for (size_t need : capacity) slots.emplace_back(need);
  planned_batch = batch;
}

void Fp32Engine::Impl::Execute(Step& step, int64_t batch) {
  const size_t n = static_cast<size_t>(batch);
  float* out = Data(step.output);
  const float* x = step.inputs.empty() ? nullptr : Data(step.inputs[0]);
  const ValueShape in = step.inputs.empty() ? ValueShape{} : shapes.at(step.inputs[0]);
  const ValueShape os = shapes.at(step.output);
  kernels::Fp32Epilogue epilogue;
  epilogue.relu = step.relu;
  if (step.residual != kNoNode) {
    epilogue.residual = Data(step.residual);
    epilogue.residual_stride = step.weights.n;
  }
  switch (step.kind) {
    case StepKind::kConv:
      step.conv.batch = n;
      if (accumulation == Fp32Accumulation::kDouble) {
        kernels::Fp32Conv2dNhwcDoubleAccumulation(step.conv, x, step.weights, epilogue, out, pool);
      } else {
        kernels::Fp32Conv2dNhwc(step.conv, x, step.weights, epilogue, out, pool);
      }
      break;
    case StepKind::kLinear:
      if (accumulation == Fp32Accumulation::kDouble) {
        kernels::Fp32GemmDoubleAccumulation(x, n, step.weights.k, step.weights, epilogue, out,
                                            step.weights.n, pool);
      } else {
        kernels::Fp32Gemm(x, n, step.weights.k, step.weights, epilogue, out, step.weights.n,
                          pool);
      }
      break;
    case StepKind::kMaxPool:
      step.pool.batch = n;
      kernels::Fp32MaxPool2dNhwc(step.pool, x, out, pool);
      break;
    case StepKind::kAvgPool:
      step.pool.batch = n;
      kernels::Fp32AvgPool2dNhwc(step.pool, x, out, pool);
      break;
    case StepKind::kGlobalAvgPool:
      kernels::Fp32GlobalAvgPoolNhwc(n, in.h * in.w, in.c, x, out);
      break;
    case StepKind::kAdd:
      kernels::Fp32Add(x, Data(step.inputs[1]), n * in.PerSample(), step.relu, out, pool);
      break;
    case StepKind::kRelu:
      kernels::Fp32Relu(x, n * in.PerSample(), out, pool);
      break;
    case StepKind::kAffine:
      kernels::Fp32ChannelAffine(x, n * in.PerSample() / in.c, in.c, step.scale.data(),
                                 step.shift.data(), step.relu, out, pool);
      break;
    case StepKind::kFakeQuantize:
      kernels::FakeQuantize(x, n * in.PerSample(), step.fake_quant, out, /*mask=*/nullptr);
      break;
    case StepKind::kSigmoid:
      // As the interpreter writes it.
      for (size_t i = 0; i < n * in.PerSample(); ++i) out[i] = 1.0f / (1.0f + std::exp(-x[i]));
      break;
    case StepKind::kFlattenNhwc:
      for (size_t b = 0; b < n; ++b) {
        NhwcToNchw(x + b * in.PerSample(), 1, in.c, in.h * in.w, out + b * in.PerSample());
      }
      break;
    case StepKind::kStridedSlice: {
      // NCHW attribute axes: 1 = channels, 2 = rows, 3 = columns.
      const StridedSliceAttrs& a = step.slice;
      for (size_t b = 0; b < n; ++b) {
        for (int64_t oh = 0; oh < os.h; ++oh) {
          for (int64_t ow = 0; ow < os.w; ++ow) {
            const int64_t ih = a.begin[2] + oh * a.step[2], iw = a.begin[3] + ow * a.step[3];
            const float* src = x + (b * in.h * in.w + ih * in.w + iw) * in.c + a.begin[1];
            float* dst = out + (b * os.h * os.w + oh * os.w + ow) * os.c;
            for (int64_t c = 0; c < os.c; ++c) dst[c] = src[c * a.step[1]];
          }
        }
      }
      break;
    }
    case StepKind::kChannelPad: {
      const int64_t before = step.channel_pad.before, pixels = n * in.h * in.w;
      for (int64_t p = 0; p < pixels; ++p) {
        float* dst = out + p * os.c;
        std::fill(dst, dst + os.c, 0.0f);
        std::memcpy(dst + before, x + p * in.c, static_cast<size_t>(in.c) * sizeof(float));
      }
      break;
    }
    case StepKind::kCat: {
      // Channels (NHWC) or features ([N, F]) are innermost: concatenate per pixel.
      const int64_t pixels = os.rank == 4 ? n * os.h * os.w : n;
      int64_t offset = 0;
      for (NodeId v : step.inputs) {
        const float* src = Data(v);
        const int64_t c = shapes.at(v).c;
        for (int64_t p = 0; p < pixels; ++p) {
          std::memcpy(out + p * os.c + offset, src + p * c, static_cast<size_t>(c) * sizeof(float));
        }
        offset += c;
      }
      break;
    }
  }
}

Fp32Engine::Fp32Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Fp32Engine::Fp32Engine(Fp32Engine&&) noexcept = default;
Fp32Engine& Fp32Engine::operator=(Fp32Engine&&) noexcept = default;
Fp32Engine::~Fp32Engine() = default;

absl::StatusOr<Fp32Engine> Fp32Engine::Create(const Graph& graph, int threads,
                                              Fp32Accumulation accumulation) {
  auto impl = std::make_unique<Impl>();
  impl->graph = graph;
  impl->accumulation = accumulation;
  QLAB_RETURN_IF_ERROR(impl->Compile(threads));
  return Fp32Engine(std::move(impl));
}

int Fp32Engine::num_steps() const { return static_cast<int>(impl_->steps.size()); }

absl::StatusOr<std::vector<Tensor>> Fp32Engine::RunAll(const Tensor& input) {
  Impl& m = *impl_;
  const Node& in_node = m.graph.node(m.input);
  if (input.dtype() != DType::kFloat32 || input.rank() != static_cast<int>(in_node.shape.size())) {
    return absl::InvalidArgumentError(absl::StrCat("input ", input.DebugString(), " does not fit ",
                                                   "the graph input \"", in_node.name, "\" ",
                                                   ShapeString(in_node.shape)));
  }
  for (int d = 1; d < input.rank(); ++d) {
    if (input.dim(d) != in_node.shape[d]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", input.DebugString(), " does not fit the graph input \"", in_node.name,
          "\" ", ShapeString(in_node.shape), " (only the batch may differ)"));
    }
  }
  const int64_t batch = input.dim(0);
  if (batch < 1) return absl::InvalidArgumentError("empty batch");
  // A strided_slice whose batch `end` was recorded as a number (not "to the end") would cut a
  // larger batch: refuse rather than disagree with the interpreter.
  for (const Step& step : m.steps) {
    if (step.kind == StepKind::kStridedSlice && step.slice.end[0] < batch) {
      return absl::InvalidArgumentError(absl::StrCat(
          "strided_slice \"", step.name, "\": its batch end ", step.slice.end[0],
          " would cut the batch of ", batch));
    }
  }
  if (batch != m.planned_batch) m.Plan(batch);

  const ValueShape& is = m.input_shape;
  if (is.rank == 4) {
    NchwToNhwc(input.data<float>(), batch, is.c, is.h * is.w, m.Data(m.input));
  } else {
    std::memcpy(m.Data(m.input), input.data<float>(), input.nbytes());
  }
  for (Step& step : m.steps) m.Execute(step, batch);

  std::vector<Tensor> results;
  for (NodeId out : m.outputs) {
    const ValueShape& s = m.shapes.at(out);
    Shape shape = m.graph.node(out).shape;
    shape[0] = batch;
    QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DType::kFloat32, shape,
                                                   s.rank == 4 ? Layout::kNCHW
                                                               : Layout::kRowMajor));
    if (s.rank == 4) {
      NhwcToNchw(m.Data(out), batch, s.c, s.h * s.w, t.data<float>());
    } else {
      std::memcpy(t.data<float>(), m.Data(out), t.nbytes());
    }
    results.push_back(std::move(t));
  }
  return results;
}

absl::StatusOr<Tensor> Fp32Engine::Run(const Tensor& input) {
  QLAB_ASSIGN_OR_RETURN(std::vector<Tensor> all, RunAll(input));
  return std::move(all[0]);
}

}  // namespace qlab
