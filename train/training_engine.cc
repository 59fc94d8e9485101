// TrainingEngine implementation: a step list over the graph, NHWC activation buffers with their
// gradients, parameters in PyTorch layout, and the QAT fake-quantize / conv-bn handling.
#include "train/training_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "engine/layout.h"
#include "engine/pool_geometry.h"
#include "kernels/fp32/fp32_eltwise.h"
#include "kernels/fp32/fp32_pool.h"
#include "kernels/qconv/fake_quant_weights.h"
#include "kernels/qconv/qconv.h"
#include "kernels/quantize/quantize.h"
#include "kernels/threadpool/pool_flags.h"
#include "kernels/threadpool/threadpool.h"
#include "train/gemm_layers/gemm_layers.h"
#include "train/ops/batch_norm_grad.h"
#include "train/ops/conv_bn_grad.h"
#include "train/ops/cross_entropy.h"
#include "train/ops/eltwise_grad.h"
#include "train/ops/fake_quant_grad.h"
#include "train/ops/pool_grad.h"

namespace qlab::train {
namespace {

absl::Status NodeError(const Node& node, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("training: node %", node.name, " (", OpKindName(node.op), "): ", what));
}

// The smallest scale LSQ trains with: an optimizer step can push a scale to or below zero.
constexpr float kMinLsqScale = 1e-8f;
// Likewise PACT's smallest clipping level.
constexpr float kMinPactAlpha = 1e-6f;

// PACT's quantization scale for clipping level alpha: [0, alpha] over [quant_min, quant_max]. One
// function for the forward and WriteBackQat, so that convert quantizes on the training grid.
float PactScale(float alpha, int32_t quant_min, int32_t quant_max) {
  return std::max(alpha, kMinPactAlpha) / static_cast<float>(quant_max - quant_min);
}

// A parameter tensor: a model parameter or batch-norm statistic (PyTorch layout), or an LSQ scale.
struct Param {
  std::string name;
  Shape shape;
  NodeId node = kNoNode;  // its parameter node (kNoNode for LSQ scales)
  Tensor value;
  Tensor grad;  // trainable ones only
  bool trainable = false;
  bool is_weight = false;
  size_t size() const { return static_cast<size_t>(value.numel()); }
  float* v() { return value.data<float>(); }
  float* g() { return grad.data<float>(); }
};

// The value a compute node produces, NHWC for images ([n][h][w][c]) or [n][c] (h = w = 1).
struct Activation {
  bool rank4 = false;
  int64_t h = 1, w = 1, c = 1;  // per sample
  int64_t n = 0;                // current batch
  Tensor value, grad;
  bool needs_grad = false;
  bool grad_set = false;  // written during the current backward pass
  size_t per_sample() const { return static_cast<size_t>(h * w * c); }
  size_t size() const { return static_cast<size_t>(n) * per_sample(); }
  size_t rows() const { return static_cast<size_t>(n * h * w); }
};

// Fake quantization of one tensor by a slot: its parameters for the current step and the STE
// mask of the last forward.
struct FakeQuant {
  int slot = -1;
  NodeId node = kNoNode;    // the kFakeQuantize node (observer calls name it)
  int lsq_scale = -1;       // LSQ: Param index of the scale (per tensor or per channel)
  int lsq_zero_point = -1;  // LSQ affine schemes: Param index of the (float) zero point
  int pact_alpha = -1;      // PACT: Param index of the clipping level
  std::vector<uint8_t> mask;
  // The parameters the last forward fake-quantized with (applied_scales empty: it passed the
  // values through): the int8 forward recovers the integer codes with exactly these.
  std::vector<float> applied_scales;
  std::vector<int32_t> applied_zero_points;
  int32_t applied_min = 0, applied_max = 0;
};

// QAT's int8 forward of one convolution (QatOptions::int8_forward): the operator, created at the
// first forward that can use it and again when the batch size changes (its geometry includes
// the batch); the buffer the next step's weights are packed into (swapped with the operator's
// by Update, so no step allocates); the output stage (multipliers sx * sw[o], the bias).
struct Int8Conv {
  int input_fq_step = -1;  // the activation fake-quantize step whose output the conv reads
  std::optional<kernels::QConvU8S8_NHWC> op;
  kernels::PackedWeights next_weights;
  kernels::QConvOutput output;
};

struct Step {
  NodeId node = kNoNode;
  OpKind op = OpKind::kIdentity;
  std::vector<NodeId> inputs;  // activation inputs
  // Conv / linear.
  int weight = -1, bias = -1;
  std::optional<FakeQuant> weight_fq;
  ConvLayerShape conv;
  Tensor effective_weight;  // after the BN scale and fake quantization (what the GEMM used)
  Tensor scaled_weight;     // QAT conv-bn: weight * gamma / running_std, before fake quant
  // QAT conv-bn: the batch-norm step this convolution's weight is scaled for.
  int fused_bn_step = -1;
  std::vector<float> bn_scale;  // gamma / running_std of the last forward
  Tensor conv_out;              // conv(x, w_q) before the division by bn_scale
  Tensor conv_out_grad;         // its gradient
  Tensor weight_grad;           // d(effective weight), before the STE and the BN scale
  // Passes merged with the batch norm's when it uses batch statistics: the forward's per-channel
  // sums of the output (for BatchNormTrainForwardWithSums), and the backward's dz with the
  // sums for dscale and dbias (ConvBnBatchNormBackward, run by the batch-norm step).
  std::vector<double> output_sums;
  bool output_sums_ready = false;
  std::vector<double> dscale, dbias;
  bool dz_ready = false;
  // Batch norm.
  int gamma = -1, beta = -1, running_mean = -1, running_var = -1;
  float eps = 1e-5f, momentum = 0.1f;
  bool trained_mode_last = false;  // the last forward used batch statistics
  int conv_bn_step = -1;           // the QAT conv-bn step whose output this batch norm reads
  std::vector<float> saved_mean, saved_inv_std, batch_var;
  // Pools.
  kernels::Fp32PoolGeometry pool;
  std::vector<int32_t> argmax;
  // Slice / pad.
  SliceGeometry slice{};
  size_t pad_before = 0, pad_after = 0;
  // Activation fake quantization.
  std::optional<FakeQuant> fq;
  // The ReLU step whose output this fake quantizer alone reads: its STE backward (without LSQ)
  // does the ReLU's backward too and sets relu_backward_done on the ReLU step, which then skips
  // its own in that backward pass.
  int relu_step = -1;
  bool relu_backward_done = false;
  // Its integer codes (uint8, NHWC), computed by the first int8 convolution reading them in
  // forward number codes_forward.
  std::vector<uint8_t> codes;
  int64_t codes_forward = -1;
  // Conv: set when the int8 forward may run it (the input is an activation fake quantizer's).
  std::unique_ptr<Int8Conv> int8;
};

}  // namespace

struct TrainingEngine::Impl {
  Graph graph;                        // FP32: a copy; QAT: prepared->graph()'s copy at Create
  PreparedModel* prepared = nullptr;  // QAT only
  QatOptions qat;
  TrainingEngineOptions options;
  pthreadpool_t pool = nullptr;
  // The same threads for the kernels taking a kernels::ThreadPool (the int8 convolution); null
  // with one thread.
  std::unique_ptr<kernels::ThreadPool> kernel_pool;
  int64_t forward_count = 0;
  int int8_convs_last_forward = 0;
  double int8_check_max = 0.0;  // QatOptions::check_int8_forward

  std::vector<Param> params;
  absl::flat_hash_map<NodeId, int> param_of_node;
  absl::flat_hash_map<NodeId, Activation> acts;
  std::vector<Step> steps;
  NodeId input = kNoNode;
  NodeId output = kNoNode;
  GemmLayerScratch gemm_scratch;
  Tensor grad_scratch;  // for accumulating a second gradient into an activation
  bool observers_frozen = false;
  bool bn_frozen = false;
  bool learned_initialized = false;  // InitializeLearnedScales ran (LSQ or PACT)
  // LSQ's mean-|x| initialization: sum |x| and element count per activation slot, from the
  // Calibrate passes.
  absl::flat_hash_map<int, std::pair<double, int64_t>> abs_sums;

  ~Impl() {
    kernel_pool.reset();
    if (pool != nullptr) {
      kernels::SetYieldingPool(pool, false);
      pthreadpool_destroy(pool);
    }
  }

  // Training is throughput work that runs for hours, often beside other jobs: the workers sleep
  // between parallel calls instead of spinning (kernels/threadpool/pool_flags.h).
  void CreatePool(int threads) {
    if (threads <= 1) return;
    pool = pthreadpool_create(threads);
    kernels::SetYieldingPool(pool, true);
    if (pool != nullptr) {
      kernel_pool = std::make_unique<kernels::ThreadPool>(pool, kernels::ThreadPool::Borrowed{});
    }
  }

  // --- Construction ----------------------------------------------------------------------------
  absl::StatusOr<int> ParamFor(NodeId id, bool trainable, bool is_weight) {
    const Node& node = graph.node(id);
    if (node.op != OpKind::kParameter) return NodeError(node, "expected a parameter");
    if (node.value.dtype() != DType::kFloat32) return NodeError(node, "parameter is not float32");
    if (auto it = param_of_node.find(id); it != param_of_node.end()) {
      if (trainable) {
        return NodeError(node, "a trained parameter used by two layers is not supported");
      }
      return it->second;
    }
    Param p;
    p.name = node.name;
    p.shape = node.value.shape();
    p.node = id;
    p.value = node.value.Clone();
    p.trainable = trainable;
    p.is_weight = is_weight;
    if (trainable) {
      QLAB_ASSIGN_OR_RETURN(p.grad, Tensor::Create(DType::kFloat32, p.shape));
    }
    params.push_back(std::move(p));
    param_of_node[id] = static_cast<int>(params.size()) - 1;
    return static_cast<int>(params.size()) - 1;
  }

  // The parameter behind a layer's weight input: a parameter node, or (QAT) a fake-quantize node
  // reading one.
  absl::Status BindWeight(const Node& layer, Step& step) {
    NodeId w = layer.inputs[1];
    if (graph.node(w).op == OpKind::kFakeQuantize) {
      if (prepared == nullptr) return NodeError(layer, "fake-quantized weight outside QAT");
      FakeQuant fq;
      fq.node = w;
      fq.slot = graph.node(w).attr<ObserverAttrs>().slot;
      step.weight_fq = std::move(fq);
      w = graph.node(w).inputs[0];
    }
    if (graph.node(w).op != OpKind::kParameter) {
      return NodeError(layer, "the weight must be a parameter (or a fake-quantized parameter)");
    }
    QLAB_ASSIGN_OR_RETURN(step.weight, ParamFor(w, true, true));
    if (layer.inputs.size() > 2) {
      const NodeId b = layer.inputs[2];
      if (graph.node(b).op != OpKind::kParameter) {
        return NodeError(layer, "the bias must be a parameter (quantized biases are not trained)");
      }
      QLAB_ASSIGN_OR_RETURN(step.bias, ParamFor(b, true, false));
    }
    return absl::OkStatus();
  }

  absl::Status Build() {
    const std::vector<NodeId> inputs = graph.inputs();
    if (inputs.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("training: the graph must have one input, it has ", inputs.size()));
    }
    input = inputs[0];
    if (graph.outputs().size() != 1 || graph.node(graph.outputs()[0]).shape.size() != 2) {
      return absl::InvalidArgumentError(
          "training: the graph must have one output, the [N, classes] logits");
    }
    output = graph.outputs()[0];
    QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph.TopologicalOrder());
    absl::flat_hash_map<NodeId, int> step_of;
    for (const NodeId id : order) {
      const Node& node = graph.node(id);
      if (node.op == OpKind::kParameter) continue;
      if (node.op == OpKind::kFakeQuantize && graph.node(node.inputs[0]).op == OpKind::kParameter) {
        continue;  // a weight's fake quantization: part of its layer's step
      }
      if (node.dtype != DType::kFloat32) return NodeError(node, "only float32 values train");
      Activation act;
      const int rank = static_cast<int>(node.shape.size());
      if (rank == 4) {
        act.rank4 = true;
        act.c = node.shape[1];
        act.h = node.shape[2];
        act.w = node.shape[3];
      } else if (rank == 2) {
        act.c = node.shape[1];
      } else {
        return NodeError(node, absl::StrCat("values of rank ", rank, " are not supported"));
      }
      acts[id] = std::move(act);
      if (node.op == OpKind::kInput) {
        if (!acts[id].rank4) return NodeError(node, "the input must be an NCHW image batch");
        continue;
      }
      Step step;
      step.node = id;
      step.op = node.op;
      auto activation_input = [&](int i) -> absl::StatusOr<NodeId> {
        const NodeId in = node.inputs[i];
        if (!acts.contains(in)) {
          return NodeError(node, absl::StrCat("input ", i, " (%", graph.node(in).name,
                                              ") is not an activation"));
        }
        return in;
      };
      QLAB_ASSIGN_OR_RETURN(const NodeId x, activation_input(0));
      step.inputs.push_back(x);
      const Activation& in = acts[x];
      Activation& out = acts[id];
      switch (node.op) {
        case OpKind::kConv2d: {
          const auto& a = node.attr<Conv2dAttrs>();
          if (a.groups != 1) return NodeError(node, "grouped convolutions are not supported");
          QLAB_RETURN_IF_ERROR(BindWeight(node, step));
          const Shape& ws = params[step.weight].shape;
          kernels::Fp32ConvGeometry& g = step.conv.geometry;
          g.in_h = in.h;
          g.in_w = in.w;
          g.in_channels = in.c;
          g.kernel_h = ws[2];
          g.kernel_w = ws[3];
          g.stride_h = a.stride[0];
          g.stride_w = a.stride[1];
          g.pad_h = a.padding[0];
          g.pad_w = a.padding[1];
          g.dilation_h = a.dilation[0];
          g.dilation_w = a.dilation[1];
          g.out_h = out.h;
          g.out_w = out.w;
          step.conv.out_channels = out.c;
          // The int8 forward needs codes of the input, i.e. an activation fake quantizer's
          // output, and a geometry qconv has (no dilation; padding smaller than the kernel).
          if (prepared != nullptr && qat.int8_forward && step.weight_fq.has_value() &&
              g.dilation_h == 1 && g.dilation_w == 1 && g.pad_h < g.kernel_h &&
              g.pad_w < g.kernel_w) {
            auto producer = step_of.find(x);
            if (producer != step_of.end() && steps[producer->second].fq.has_value()) {
              step.int8 = std::make_unique<Int8Conv>();
              step.int8->input_fq_step = producer->second;
            }
          }
          break;
        }
        case OpKind::kLinear:
          QLAB_RETURN_IF_ERROR(BindWeight(node, step));
          break;
        case OpKind::kBatchNorm: {
          const auto& a = node.attr<BatchNormAttrs>();
          step.eps = a.eps;
          step.momentum = a.momentum;
          QLAB_ASSIGN_OR_RETURN(step.gamma, ParamFor(node.inputs[1], true, false));
          QLAB_ASSIGN_OR_RETURN(step.beta, ParamFor(node.inputs[2], true, false));
          QLAB_ASSIGN_OR_RETURN(step.running_mean, ParamFor(node.inputs[3], false, false));
          QLAB_ASSIGN_OR_RETURN(step.running_var, ParamFor(node.inputs[4], false, false));
          // QAT conv-bn: a convolution with a fake-quantized weight whose only user is this
          // batch norm gets its weight scaled by the batch norm (PyTorch's ConvBn2d).
          const Node& producer = graph.node(x);
          if (producer.op == OpKind::kConv2d && graph.Users(x).size() == 1 &&
              graph.outputs()[0] != x) {
            Step& conv_step = steps[step_of.at(x)];
            if (conv_step.weight_fq.has_value()) {
              conv_step.fused_bn_step = static_cast<int>(steps.size());
              step.conv_bn_step = step_of.at(x);
            }
          }
          break;
        }
        case OpKind::kAdd: {
          QLAB_ASSIGN_OR_RETURN(const NodeId y, activation_input(1));
          step.inputs.push_back(y);
          break;
        }
        case OpKind::kRelu:
        case OpKind::kIdentity:
          break;
        case OpKind::kMaxPool2d:
        case OpKind::kAvgPool2d: {
          if (!in.rank4) return NodeError(node, "pooling needs an NCHW input");
          step.pool = Fp32PoolGeometryOf(node.attr<Pool2dAttrs>(), in.h, in.w, in.c, out.h, out.w);
          break;
        }
        case OpKind::kAdaptiveAvgPool2d:
          if (out.h != 1 || out.w != 1) {
            return NodeError(node, "only the global (1x1) adaptive average pool is supported");
          }
          break;
        case OpKind::kFlatten:
          if (node.attr<FlattenAttrs>().start_dim != 1) {
            return NodeError(node, "only flatten(start_dim=1) is supported");
          }
          break;
        case OpKind::kStridedSlice: {
          const auto& a = node.attr<StridedSliceAttrs>();
          if (!in.rank4 || a.begin.size() != 4) return NodeError(node, "needs an NCHW input");
          for (int axis : {0, 1}) {
            if (a.begin[axis] != 0 || a.step[axis] != 1 ||
                a.end[axis] < node.shape[axis] + a.begin[axis]) {
              return NodeError(node, "only spatial slicing (full batch and channels) trains");
            }
          }
          step.slice = SliceGeometry{0,
                                     static_cast<size_t>(in.h),
                                     static_cast<size_t>(in.w),
                                     static_cast<size_t>(in.c),
                                     static_cast<size_t>(a.begin[2]),
                                     static_cast<size_t>(a.step[2]),
                                     static_cast<size_t>(a.begin[3]),
                                     static_cast<size_t>(a.step[3]),
                                     static_cast<size_t>(out.h),
                                     static_cast<size_t>(out.w)};
          break;
        }
        case OpKind::kChannelPad: {
          const auto& a = node.attr<ChannelPadAttrs>();
          step.pad_before = a.before;
          step.pad_after = a.after;
          break;
        }
        case OpKind::kFakeQuantize: {
          if (prepared == nullptr) return NodeError(node, "fake quantization outside QAT");
          FakeQuant fq;
          fq.node = id;
          fq.slot = node.attr<ObserverAttrs>().slot;
          step.fq = std::move(fq);
          const auto producer = step_of.find(x);
          if (producer != step_of.end() && steps[producer->second].op == OpKind::kRelu &&
              graph.Users(x).size() == 1 && graph.outputs()[0] != x) {
            step.relu_step = producer->second;
          }
          break;
        }
        default:
          return NodeError(node, "no gradient for this op");
      }
      step_of[id] = static_cast<int>(steps.size());
      steps.push_back(std::move(step));
    }
    if (!acts.contains(output)) return absl::InvalidArgumentError("training: bad output");
    MarkGradientNeeds();
    // Validate fake-quantize slots: the kernels take static per-tensor activations and per-tensor
    // or per-channel (axis 0) weights.
    for (Step& step : steps) {
      for (std::optional<FakeQuant>* fq : {&step.fq, &step.weight_fq}) {
        if (!fq->has_value()) continue;
        const ObserverSlot& slot = prepared->slots().at((*fq)->slot);
        const auto* spec = std::get_if<QuantizationSpec>(&slot.spec);
        if (spec == nullptr || spec->is_dynamic()) {
          return NodeError(graph.node((*fq)->node),
                           "QAT trains observed static specs only (not fixed, derived or dynamic)");
        }
        const QScheme q = spec->format().qscheme;
        const bool per_channel = IsPerChannel(q);
        if (per_channel && (fq == &step.fq || spec->format().ch_axis != 0)) {
          return NodeError(graph.node((*fq)->node),
                           "per-channel fake quantization is supported on weights (axis 0) only");
        }
      }
    }
    return absl::OkStatus();
  }

  void CollectTrainable(std::vector<TrainableParameter>& out) {
    out.clear();
    for (Param& p : params) {
      if (!p.trainable) continue;
      out.push_back({p.name, p.shape, p.v(), p.g(), p.size(), p.is_weight});
    }
  }

  // Which values need a gradient, as autograd's requires_grad: the output of a step with
  // parameters (their gradients are computed from it), or of a step reading such a value. The
  // image does not, and neither does a fixed function of it alone: QAT's fake quantization of the
  // input (unless LSQ trains its scale), so the first convolution computes no input gradient,
  // as in the FP32 engine and in PyTorch. Steps run in topological order. Called again when LSQ
  // adds scales.
  void MarkGradientNeeds() {
    for (auto& [id, act] : acts) act.needs_grad = false;
    for (const Step& step : steps) {
      bool needs = step.weight >= 0 || step.gamma >= 0 ||
                   (step.fq && (step.fq->lsq_scale >= 0 || step.fq->pact_alpha >= 0));
      for (const NodeId in : step.inputs) needs = needs || acts[in].needs_grad;
      acts[step.node].needs_grad = needs;
    }
    acts[output].needs_grad = true;  // the caller writes the loss gradient there
  }

  // --- Buffers ---------------------------------------------------------------------------------
  absl::Status Plan(int64_t batch) {
    for (auto& [id, act] : acts) {
      if (act.n != batch) {
        act.n = batch;
        QLAB_ASSIGN_OR_RETURN(act.value,
                              Tensor::Create(DType::kFloat32, {static_cast<int64_t>(act.size())}));
      }
      if (act.needs_grad && act.grad.numel() != static_cast<int64_t>(act.size())) {
        QLAB_ASSIGN_OR_RETURN(act.grad,
                              Tensor::Create(DType::kFloat32, {static_cast<int64_t>(act.size())}));
      }
    }
    size_t largest = 0;
    for (auto& [id, act] : acts) largest = std::max(largest, act.size());
    if (grad_scratch.numel() < static_cast<int64_t>(largest)) {
      QLAB_ASSIGN_OR_RETURN(grad_scratch,
                            Tensor::Create(DType::kFloat32, {static_cast<int64_t>(largest)}));
    }
    for (Step& step : steps) {
      Activation& out = acts[step.node];
      step.conv.geometry.batch = batch;
      step.pool.batch = batch;
      step.slice.batch = batch;
      if (step.op == OpKind::kMaxPool2d) step.argmax.resize(out.size());
      if (step.fused_bn_step >= 0 && step.conv_out.numel() != static_cast<int64_t>(out.size())) {
        QLAB_ASSIGN_OR_RETURN(step.conv_out,
                              Tensor::Create(DType::kFloat32, {static_cast<int64_t>(out.size())}));
        QLAB_ASSIGN_OR_RETURN(step.conv_out_grad,
                              Tensor::Create(DType::kFloat32, {static_cast<int64_t>(out.size())}));
      }
      if (step.weight >= 0 && step.weight_grad.numel() == 0) {
        QLAB_ASSIGN_OR_RETURN(step.weight_grad,
                              Tensor::Create(DType::kFloat32, params[step.weight].shape));
      }
    }
    return absl::OkStatus();
  }

  // Writes a gradient for `target` through `write(dst)`: straight into its buffer the first time
  // in a backward pass, into scratch and accumulated afterwards (a value with several users).
  template <typename WriteFn>
  void EmitGrad(NodeId target, WriteFn&& write) {
    Activation& a = acts[target];
    if (!a.needs_grad) return;
    if (!a.grad_set) {
      write(a.grad.data<float>());
      a.grad_set = true;
    } else {
      float* scratch = grad_scratch.data<float>();
      write(scratch);
      Accumulate(scratch, a.size(), a.grad.data<float>(), pool);
    }
  }

  // EmitGrad for a backward that also accumulates parameter gradients (LSQ's scale, PACT's
  // clipping level): it runs even when `target` needs no gradient (the image's quantizer), with
  // the unwanted dx written to scratch.
  template <typename WriteFn>
  void EmitGradWithParams(NodeId target, WriteFn&& write) {
    if (!acts[target].needs_grad) {
      write(grad_scratch.data<float>());
      return;
    }
    EmitGrad(target, write);
  }

  // --- Fake quantization -----------------------------------------------------------------------
  absl::StatusOr<QuantParams> CurrentQParams(const FakeQuant& fq) {
    return prepared->SlotQParams(fq.slot);
  }

  // y = fake_quant(x) over n elements (per channel along the outermost axis when the slot's
  // parameters are per channel), observing x first when `observe`.
  absl::Status FakeQuantForward(FakeQuant& fq, const Tensor& x_tensor, size_t n, bool observe,
                                float* y) {
    const ObserverSlot& slot = prepared->slots()[fq.slot];
    const float* x = x_tensor.data<float>();
    if (observe && !observers_frozen && slot.observe && fq.lsq_scale < 0 && fq.pact_alpha < 0) {
      QLAB_RETURN_IF_ERROR(prepared->Observe(graph.node(fq.node), x_tensor));
      if (qat.lsq && qat.lsq_mean_abs_init && !learned_initialized) {
        double sum = 0.0;
        for (size_t i = 0; i < n; ++i) sum += std::fabs(x[i]);
        auto& acc = abs_sums[fq.slot];
        acc.first += sum;
        acc.second += static_cast<int64_t>(n);
      }
    }
    fq.mask.resize(n);
    fq.applied_scales.clear();
    if (!slot.fake_quantize) {
      if (y != x) std::memcpy(y, x, n * sizeof(float));
      std::fill(fq.mask.begin(), fq.mask.end(), uint8_t{1});
      return absl::OkStatus();
    }
    if (fq.lsq_scale >= 0) return LsqForwardStep(fq, x, n, y);
    if (fq.pact_alpha >= 0) return PactForwardStep(fq, x, n, y);
    QLAB_ASSIGN_OR_RETURN(const QuantParams q, CurrentQParams(fq));
    fq.applied_scales.assign(q.scales.begin(), q.scales.end());
    fq.applied_zero_points.assign(q.zero_points.begin(), q.zero_points.end());
    fq.applied_min = q.quant_min;
    fq.applied_max = q.quant_max;
    if (q.scales.size() == 1) {
      ParallelFakeQuantize(x, n, {q.scales[0], q.zero_points[0], q.quant_min, q.quant_max}, y,
                           fq.mask.data(), pool);
    } else {
      kernels::ChannelDims dims{1, q.scales.size(), n / q.scales.size()};
      ParallelFakeQuantizePerChannel(
          x, dims, {q.scales.data(), q.zero_points.data(), q.quant_min, q.quant_max}, y,
          fq.mask.data(), pool);
    }
    return absl::OkStatus();
  }

  absl::Status LsqForwardStep(FakeQuant& fq, const float* x, size_t n, float* y);
  absl::Status PactForwardStep(FakeQuant& fq, const float* x, size_t n, float* y);
  void LsqBackwardStep(FakeQuant& fq, const float* x, const float* dy, size_t n, float* dx);
  absl::Status InitializeLsq();
  absl::Status InitializePact();
  absl::Status MeanAbsInit(const Step& step, const FakeQuant& fq, const QuantParams& q,
                           float* scales, float* zero_points);

  // --- Forward ---------------------------------------------------------------------------------
  absl::Status LayerWeight(Step& step, bool observe) {
    Param& w = params[step.weight];
    const size_t size = w.size();
    if (step.effective_weight.numel() != static_cast<int64_t>(size)) {
      QLAB_ASSIGN_OR_RETURN(step.effective_weight, Tensor::Create(DType::kFloat32, w.shape));
      if (step.fused_bn_step >= 0) {
        QLAB_ASSIGN_OR_RETURN(step.scaled_weight, Tensor::Create(DType::kFloat32, w.shape));
      }
    }
    const Tensor* source = &w.value;
    if (step.fused_bn_step >= 0) {
      const Step& bn = steps[step.fused_bn_step];
      const size_t out_c = static_cast<size_t>(w.shape[0]);
      const size_t per = size / out_c;
      step.bn_scale.resize(out_c);
      ConvBnScaleWeights(out_c, per, w.v(), params[bn.gamma].v(), params[bn.running_var].v(),
                         bn.eps, step.bn_scale.data(), step.scaled_weight.data<float>(), pool);
      source = &step.scaled_weight;
    }
    if (!step.weight_fq.has_value()) {
      std::memcpy(step.effective_weight.data<float>(), source->data<float>(), size * sizeof(float));
      return absl::OkStatus();
    }
    return FakeQuantForward(*step.weight_fq, *source, size, observe,
                            step.effective_weight.data<float>());
  }

  // The int8 forward of a convolution step (QatOptions::int8_forward): y = conv(x, w) (+ bias)
  // from the integer codes of this step's fake-quantized input x (per tensor, scale sx, zero
  // point zx, a range at most 256 codes wide) and effective weight (symmetric, scales sw, codes in
  // [-128, 127]): float(sum (qx - zx) * qw) * (sx * sw[o]) (+ bias[o]). False (nothing written)
  // when this step's quantization does not allow it: the caller runs the fp32 convolution.
  absl::StatusOr<bool> Int8ConvForward(Step& step, const Activation& in, const float* bias,
                                       float* y) {
    if (step.int8 == nullptr) return false;
    Int8Conv& int8 = *step.int8;
    Step& input_step = steps[int8.input_fq_step];
    const FakeQuant& xq = *input_step.fq;
    const FakeQuant& wq = *step.weight_fq;
    // The kernel reads unsigned bytes: codes of any per-tensor range at most 256 wide are
    // shifted by -quant_min into [0, 255], and the zero point with them, which leaves every
    // (qx - zx) and so the sum unchanged (signed activations: TensorRT-style, symmetric).
    const int64_t x_shift = xq.applied_min;
    if (xq.applied_scales.size() != 1 || int64_t{xq.applied_max} - x_shift > 255 ||
        wq.applied_scales.empty() || wq.applied_min < -128 || wq.applied_max > 127) {
      return false;
    }
    for (const int32_t zp : wq.applied_zero_points) {
      if (zp != 0) return false;
    }
    const float sx = xq.applied_scales[0];
    const int64_t shifted_zx = int64_t{xq.applied_zero_points[0]} - x_shift;
    if (shifted_zx < 0 || shifted_zx > 255) return false;
    const int32_t zx = static_cast<int32_t>(shifted_zx);
    const size_t out_c = step.conv.out_channels;
    const bool per_channel = wq.applied_scales.size() > 1;
    if (per_channel && wq.applied_scales.size() != out_c) return false;
    kernels::QConvOutput& output = int8.output;
    output.type = kernels::QOutputType::kF32;
    output.multipliers.resize(out_c);
    for (size_t o = 0; o < out_c; ++o) {
      const float m = sx * wq.applied_scales[per_channel ? o : 0];
      // Underflow (scales near LSQ's minimum) or overflow: the stage needs finite, positive.
      if (!(m > 0.0f && std::isfinite(m))) return false;
      output.multipliers[o] = m;
    }
    if (bias != nullptr) {
      output.float_bias.assign(bias, bias + out_c);
    } else {
      output.float_bias.clear();
    }
    const kernels::Fp32ConvGeometry& g = step.conv.geometry;
    if (!int8.op.has_value() || int8.op->shape().batch != g.batch) {
      kernels::QConvShape shape;
      shape.batch = g.batch;
      shape.input_height = g.in_h;
      shape.input_width = g.in_w;
      shape.input_channels = g.in_channels;
      shape.output_channels = out_c;
      shape.kernel_height = g.kernel_h;
      shape.kernel_width = g.kernel_w;
      shape.stride_height = g.stride_h;
      shape.stride_width = g.stride_w;
      shape.padding_top = shape.padding_bottom = g.pad_h;
      shape.padding_left = shape.padding_right = g.pad_w;
      // Zero weights for now: every forward packs and swaps in its own (Update).
      const std::vector<int8_t> zeros(out_c * g.kernel_h * g.kernel_w * g.in_channels, 0);
      absl::StatusOr<kernels::QConvU8S8_NHWC> op =
          kernels::QConvU8S8_NHWC::Create(shape, zx, zeros.data(), nullptr, output);
      if (!op.ok() || shape.output_height() != g.out_h || shape.output_width() != g.out_w) {
        step.int8.reset();  // a geometry qconv does not take (K > 65536): fp32 from now on
        return false;
      }
      int8.op.emplace(*std::move(op));
    }
    // The input's codes, once per forward however many convolutions read them:
    // x = float(qx - zx) * sx, so x * (1 / sx) is within float rounding of qx - zx and
    // kernels::Quantize (nearbyint, + zx, clamp) returns the shifted qx exactly.
    const size_t n = in.size();
    if (input_step.codes_forward != forward_count) {
      input_step.codes.resize(n);
      const float* x = in.value.data<float>();
      uint8_t* codes = input_step.codes.data();
      const kernels::AffineParams params{sx, zx, 0, static_cast<int32_t>(xq.applied_max - x_shift)};
      constexpr size_t kBlock = 1 << 16;
      kernels::ParallelFor(kernel_pool.get(), (n + kBlock - 1) / kBlock, [&](size_t b) {
        const size_t begin = b * kBlock;
        kernels::Quantize(x + begin, std::min(kBlock, n - begin), params, codes + begin);
      });
      input_step.codes_forward = forward_count;
    }
    // The weight's codes, packed (the same recovery: w = float(qw) * sw[o]).
    const Param& w = params[step.weight];
    kernels::PackFakeQuantizedConvWeights(
        step.effective_weight.data<float>(),
        {out_c, static_cast<size_t>(w.shape[1]), g.kernel_h, g.kernel_w}, wq.applied_scales.data(),
        per_channel, int8.op->packed_k(), int8.next_weights, kernel_pool.get());
    QLAB_RETURN_IF_ERROR(int8.op->Update(zx, int8.next_weights, output));
    int8.op->Run(input_step.codes.data(), y, kernel_pool.get());
    ++int8_convs_last_forward;
    return true;
  }

  // training: batch-norm batch statistics (unless frozen) and saved state for backward;
  // observe: observers fed (unless frozen). Training always observes.
  absl::Status Forward(bool training, bool observe) {
    ++forward_count;
    int8_convs_last_forward = 0;
    int8_check_max = 0.0;
    for (Step& step : steps) {
      Activation& out = acts[step.node];
      Activation& in = acts[step.inputs[0]];
      const float* x = in.value.data<float>();
      float* y = out.value.data<float>();
      const size_t n = out.size();
      switch (step.op) {
        case OpKind::kConv2d: {
          QLAB_RETURN_IF_ERROR(LayerWeight(step, observe));
          const float* w = step.effective_weight.data<float>();
          const float* bias = step.bias >= 0 ? params[step.bias].v() : nullptr;
          // PyTorch's ConvBn: conv without bias into z, divided by the BN scale, plus the conv
          // bias.
          const bool conv_bn = step.fused_bn_step >= 0;
          float* z = conv_bn ? step.conv_out.data<float>() : y;
          const float* conv_bias = conv_bn ? nullptr : bias;
          QLAB_ASSIGN_OR_RETURN(const bool ran_int8, Int8ConvForward(step, in, conv_bias, z));
          if (!ran_int8) ConvForward(step.conv, x, w, conv_bias, z, gemm_scratch, pool);
          if (ran_int8 && qat.check_int8_forward) {
            std::vector<float> reference(out.size());
            ConvForward(step.conv, x, w, conv_bias, reference.data(), gemm_scratch, pool);
            double difference = 0.0, largest = 0.0;
            for (size_t i = 0; i < reference.size(); ++i) {
              difference = std::max(difference, std::fabs(double{reference[i]} - z[i]));
              largest = std::max(largest, std::fabs(double{reference[i]}));
            }
            int8_check_max =
                std::max(int8_check_max, largest > 0.0 ? difference / largest : difference);
          }
          if (conv_bn && training && !bn_frozen) {  // the batch norm takes batch statistics
            step.output_sums.resize(step.conv.out_channels);
            ConvBnOutputForwardWithSums(out.rows(), step.conv.out_channels, z, step.bn_scale.data(),
                                        bias, y, step.output_sums.data(), pool);
            step.output_sums_ready = true;
          } else if (conv_bn) {
            ConvBnOutputForward(out.rows(), step.conv.out_channels, z, step.bn_scale.data(), bias,
                                y, pool);
          }
          break;
        }
        case OpKind::kLinear: {
          QLAB_RETURN_IF_ERROR(LayerWeight(step, observe));
          LinearForward(out.n, in.per_sample(), out.c, x, step.effective_weight.data<float>(),
                        step.bias >= 0 ? params[step.bias].v() : nullptr, y, gemm_scratch, pool);
          break;
        }
        case OpKind::kBatchNorm: {
          const size_t c = static_cast<size_t>(out.c);
          const bool batch_stats = training && !bn_frozen;
          step.trained_mode_last = batch_stats;
          if (batch_stats) {
            step.saved_mean.resize(c);
            step.saved_inv_std.resize(c);
            step.batch_var.resize(c);
            Step* conv_bn = step.conv_bn_step >= 0 ? &steps[step.conv_bn_step] : nullptr;
            if (conv_bn != nullptr && conv_bn->output_sums_ready) {
              BatchNormTrainForwardWithSums(out.rows(), c, x, conv_bn->output_sums.data(),
                                            params[step.gamma].v(), params[step.beta].v(), step.eps,
                                            y, step.saved_mean.data(), step.saved_inv_std.data(),
                                            step.batch_var.data(), pool);
              conv_bn->output_sums_ready = false;
            } else {
              BatchNormTrainForward(out.rows(), c, x, params[step.gamma].v(), params[step.beta].v(),
                                    step.eps, y, step.saved_mean.data(), step.saved_inv_std.data(),
                                    step.batch_var.data(), pool);
            }
            BatchNormUpdateRunningStats(c, step.momentum, step.saved_mean.data(),
                                        step.batch_var.data(), params[step.running_mean].v(),
                                        params[step.running_var].v());
          } else {
            BatchNormEvalForward(out.rows(), c, x, params[step.gamma].v(), params[step.beta].v(),
                                 params[step.running_mean].v(), params[step.running_var].v(),
                                 step.eps, y, pool);
          }
          break;
        }
        case OpKind::kRelu:
          ReluForward(x, n, y, pool);
          break;
        case OpKind::kAdd:
          kernels::Fp32Add(x, acts[step.inputs[1]].value.data<float>(), n, /*relu=*/false, y, pool);
          break;
        case OpKind::kIdentity:
          std::memcpy(y, x, n * sizeof(float));
          break;
        case OpKind::kMaxPool2d:
          MaxPoolForward(step.pool, x, y, step.argmax.data(), pool);
          break;
        case OpKind::kAvgPool2d:
          kernels::Fp32AvgPool2dNhwc(step.pool, x, y, pool);
          break;
        case OpKind::kAdaptiveAvgPool2d:
          kernels::Fp32GlobalAvgPoolNhwc(in.n, in.h * in.w, in.c, x, y);
          break;
        case OpKind::kFlatten:
          if (!in.rank4 || in.h * in.w == 1) {
            std::memcpy(y, x, n * sizeof(float));
          } else {
            NhwcToNchw(x, in.n, in.c, in.h * in.w, y);  // PyTorch flattens in (c, h, w) order
          }
          break;
        case OpKind::kStridedSlice:
          StridedSliceForward(step.slice, x, y);
          break;
        case OpKind::kChannelPad:
          ChannelPadForward(in.rows(), in.c, step.pad_before, step.pad_after, x, y);
          break;
        case OpKind::kFakeQuantize:
          QLAB_RETURN_IF_ERROR(FakeQuantForward(*step.fq, in.value, n, observe, y));
          break;
        default:
          QLAB_CHECK_MSG(false, "op validated in Build");
      }
    }
    return absl::OkStatus();
  }

  // --- Backward --------------------------------------------------------------------------------
  // d(layer weight) from d(effective weight): through the STE mask and the BN scale.
  void LayerWeightBackward(Step& step, float* dweight_effective) {
    Param& w = params[step.weight];
    const size_t size = w.size();
    float* dw = w.g();
    const uint8_t* ste_mask = nullptr;  // applied by ConvBnWeightBackward
    if (step.weight_fq.has_value()) {
      FakeQuant& fq = *step.weight_fq;
      const float* source = step.fused_bn_step >= 0 ? step.scaled_weight.data<float>() : w.v();
      if (fq.lsq_scale >= 0) {
        LsqBackwardStep(fq, source, dweight_effective, size, dweight_effective);
      } else if (step.fused_bn_step >= 0) {
        ste_mask = fq.mask.data();
      } else {
        FakeQuantSteBackward(fq.mask.data(), dweight_effective, size, dweight_effective, pool);
      }
    }
    if (step.fused_bn_step < 0) {
      std::memcpy(dw, dweight_effective, size * sizeof(float));
      return;
    }
    // scaled = w * s[o], s = gamma / sqrt(running_var + eps):
    //   dw = dscaled * s[o];  dgamma[o] += sum_i dscaled[o, i] * w[o, i] / sqrt(rv + eps).
    const Step& bn = steps[step.fused_bn_step];
    const size_t out_c = static_cast<size_t>(w.shape[0]);
    ConvBnWeightBackward(out_c, size / out_c, dweight_effective, ste_mask, w.v(),
                         step.bn_scale.data(), params[bn.running_var].v(), bn.eps, dw,
                         params[bn.gamma].g(), pool);
  }

  absl::Status Backward() {
    for (auto& [id, act] : acts) act.grad_set = false;
    for (Param& p : params) {
      if (p.node == kNoNode) std::fill_n(p.g(), p.size(), 0.0f);  // LSQ: accumulated
    }
    acts[output].grad_set = true;  // the loss gradient, written by the caller
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      Step& step = *it;
      if (step.relu_backward_done) {  // done by the fake quantizer reading it
        step.relu_backward_done = false;
        continue;
      }
      Activation& out = acts[step.node];
      if (!out.needs_grad) continue;  // nothing before it has parameters
      if (!out.grad_set) {
        // No gradient reached this node (it does not feed the loss): its inputs get zeros.
        std::fill_n(out.grad.data<float>(), out.size(), 0.0f);
        out.grad_set = true;
      }
      const float* dy = out.grad.data<float>();
      const NodeId x_id = step.inputs[0];
      Activation& in = acts[x_id];
      const float* x = in.value.data<float>();
      const size_t n = out.size();
      switch (step.op) {
        case OpKind::kConv2d: {
          const float* dconv = dy;
          float* dbias = step.bias >= 0 ? params[step.bias].g() : nullptr;
          if (step.fused_bn_step >= 0) {
            // y = z / s + b: dz = dy / s, ds[c] = -sum dy * z / s^2 -> dgamma[c] += ds / std.
            const size_t c = step.conv.out_channels;
            float* dz = step.conv_out_grad.data<float>();
            if (!step.dz_ready) {  // else the batch norm's backward computed dz, ds and db
              step.dscale.resize(c);
              step.dbias.resize(c);
              ConvBnOutputBackward(out.rows(), c, dy, step.conv_out.data<float>(),
                                   step.bn_scale.data(), dz, step.dscale.data(), step.dbias.data(),
                                   pool);
            }
            step.dz_ready = false;
            const std::vector<double>& ds = step.dscale;
            const std::vector<double>& db = step.dbias;
            const Step& bn = steps[step.fused_bn_step];
            float* dgamma = params[bn.gamma].g();
            const float* rv = params[bn.running_var].v();
            for (size_t ch = 0; ch < c; ++ch) {
              dgamma[ch] += static_cast<float>(ds[ch] / std::sqrt(double{rv[ch]} + bn.eps));
              if (dbias != nullptr) dbias[ch] = static_cast<float>(db[ch]);
            }
            dbias = nullptr;
            dconv = dz;
          }
          const float* weff = step.effective_weight.data<float>();
          float* dweight = step.weight_grad.data<float>();
          if (in.needs_grad) {
            EmitGrad(x_id, [&](float* dst) {
              ConvBackward(step.conv, x, weff, dconv, dst, dweight, dbias, gemm_scratch, pool);
            });
          } else {
            ConvBackward(step.conv, x, weff, dconv, nullptr, dweight, dbias, gemm_scratch, pool);
          }
          LayerWeightBackward(step, dweight);
          break;
        }
        case OpKind::kLinear: {
          float* dweight = step.weight_grad.data<float>();
          float* dbias = step.bias >= 0 ? params[step.bias].g() : nullptr;
          const float* weff = step.effective_weight.data<float>();
          auto run = [&](float* dx) {
            LinearBackward(out.n, in.per_sample(), out.c, x, weff, dy, dx, dweight, dbias,
                           gemm_scratch, pool);
          };
          if (in.needs_grad) {
            EmitGrad(x_id, run);
          } else {
            run(nullptr);
          }
          LayerWeightBackward(step, dweight);
          break;
        }
        case OpKind::kBatchNorm: {
          const size_t c = static_cast<size_t>(out.c);
          float* dgamma = params[step.gamma].g();
          float* dbeta = params[step.beta].g();
          Step* conv_bn = step.conv_bn_step >= 0 ? &steps[step.conv_bn_step] : nullptr;
          if (step.trained_mode_last && conv_bn != nullptr && in.needs_grad) {
            // The convolution's output has this batch norm as its only user: its gradient goes
            // straight on to dz (the conv-bn division's backward) in the same pass.
            conv_bn->dscale.resize(c);
            conv_bn->dbias.resize(c);
            ConvBnBatchNormBackward(out.rows(), c, x, params[step.gamma].v(),
                                    step.saved_mean.data(), step.saved_inv_std.data(), dy,
                                    conv_bn->conv_out.data<float>(), conv_bn->bn_scale.data(),
                                    conv_bn->conv_out_grad.data<float>(), dgamma, dbeta,
                                    conv_bn->dscale.data(), conv_bn->dbias.data(), pool);
            conv_bn->dz_ready = true;
            in.grad_set = true;
            break;
          }
          EmitGrad(x_id, [&](float* dx) {
            if (step.trained_mode_last) {
              BatchNormTrainBackward(out.rows(), c, x, params[step.gamma].v(),
                                     step.saved_mean.data(), step.saved_inv_std.data(), dy, dx,
                                     dgamma, dbeta, pool);
            } else {
              BatchNormEvalBackward(out.rows(), c, x, params[step.gamma].v(),
                                    params[step.running_mean].v(), params[step.running_var].v(),
                                    step.eps, dy, dx, dgamma, dbeta, pool);
            }
          });
          break;
        }
        case OpKind::kRelu:
          EmitGrad(x_id,
                   [&](float* dx) { ReluBackward(out.value.data<float>(), dy, n, dx, pool); });
          break;
        case OpKind::kAdd:
          for (const NodeId src : step.inputs) {
            EmitGrad(src, [&](float* dx) { std::memcpy(dx, dy, n * sizeof(float)); });
          }
          break;
        case OpKind::kIdentity:
          EmitGrad(x_id, [&](float* dx) { std::memcpy(dx, dy, n * sizeof(float)); });
          break;
        case OpKind::kMaxPool2d:
          EmitGrad(x_id, [&](float* dx) {
            MaxPoolBackward(step.pool, step.argmax.data(), dy, dx, pool);
          });
          break;
        case OpKind::kAvgPool2d:
          EmitGrad(x_id, [&](float* dx) { AvgPoolBackward(step.pool, dy, dx, pool); });
          break;
        case OpKind::kAdaptiveAvgPool2d:
          EmitGrad(x_id,
                   [&](float* dx) { GlobalAvgPoolBackward(in.n, in.h * in.w, in.c, dy, dx); });
          break;
        case OpKind::kFlatten:
          EmitGrad(x_id, [&](float* dx) {
            if (!in.rank4 || in.h * in.w == 1) {
              std::memcpy(dx, dy, n * sizeof(float));
            } else {
              NchwToNhwc(dy, in.n, in.c, in.h * in.w, dx);
            }
          });
          break;
        case OpKind::kStridedSlice:
          EmitGrad(x_id, [&](float* dx) { StridedSliceBackward(step.slice, dy, dx); });
          break;
        case OpKind::kChannelPad:
          EmitGrad(x_id, [&](float* dx) {
            ChannelPadBackward(in.rows(), in.c, step.pad_before, step.pad_after, dy, dx);
          });
          break;
        case OpKind::kFakeQuantize:
          if (step.fq->pact_alpha >= 0) {
            Param& alpha = params[step.fq->pact_alpha];
            double dalpha = 0.0;
            EmitGradWithParams(
                x_id, [&](float* dx) { PactBackward(x, dy, n, alpha.v()[0], dx, &dalpha, pool); });
            alpha.g()[0] += static_cast<float>(dalpha);
          } else if (step.fq->lsq_scale >= 0) {
            EmitGradWithParams(x_id, [&](float* dx) { LsqBackwardStep(*step.fq, x, dy, n, dx); });
          } else if (step.relu_step >= 0) {
            Step& relu = steps[step.relu_step];
            EmitGrad(relu.inputs[0], [&](float* dx) {
              FakeQuantSteReluBackward(step.fq->mask.data(), x, dy, n, dx, pool);
            });
            relu.relu_backward_done = true;
          } else {
            EmitGrad(x_id, [&](float* dx) {
              FakeQuantSteBackward(step.fq->mask.data(), dy, n, dx, pool);
            });
          }
          break;
        default:
          QLAB_CHECK_MSG(false, "op validated in Build");
      }
    }
    return absl::OkStatus();
  }

  absl::Status LoadInput(const Tensor& images) {
    const Node& node = graph.node(input);
    const Activation& a = acts[input];
    if (images.dtype() != DType::kFloat32 || images.rank() != 4 || images.dim(0) < 1 ||
        images.dim(1) != a.c || images.dim(2) != a.h || images.dim(3) != a.w) {
      return absl::InvalidArgumentError(absl::StrCat("training: input %", node.name,
                                                     " expects float32[N,", a.c, ",", a.h, ",", a.w,
                                                     "], got ", images.DebugString()));
    }
    QLAB_RETURN_IF_ERROR(Plan(images.dim(0)));
    NchwToNhwc(images.data<float>(), a.n, a.c, a.h * a.w, acts[input].value.data<float>());
    return absl::OkStatus();
  }
};

// --- LSQ ---------------------------------------------------------------------------------------
// Each fake-quantized slot gets one scale parameter (per tensor, or per output channel for
// per-channel weights) and one float zero point (trained for affine schemes, pinned at 0 for
// symmetric ones), shared by every fake-quantize node of the slot; their gradients are sums over
// those nodes, hence zeroed at the start of each backward pass and accumulated.
// LSQ's initialization (QatOptions::lsq_mean_abs_init): scale = 2 mean|x| / sqrt(Q_P).
absl::Status TrainingEngine::Impl::MeanAbsInit(const Step& step, const FakeQuant& fq,
                                               const QuantParams& q, float* scales,
                                               float* zero_points) {
  const bool symmetric = IsSymmetric(q.qscheme);
  const int32_t zp = symmetric ? 0 : q.quant_min;
  const double qp = std::max(1, q.quant_max - zp);
  const size_t channels = q.scales.size();
  std::vector<double> mean_abs(channels, 0.0);
  if (&fq == &*step.weight_fq) {
    const Tensor& w = step.fused_bn_step >= 0 ? step.scaled_weight : params[step.weight].value;
    const size_t per = static_cast<size_t>(w.numel()) / channels;
    for (size_t c = 0; c < channels; ++c) {
      double sum = 0.0;
      for (size_t i = 0; i < per; ++i) sum += std::fabs(w.data<float>()[c * per + i]);
      mean_abs[c] = sum / per;
    }
  } else {
    auto it = abs_sums.find(fq.slot);
    if (it == abs_sums.end() || it->second.second == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "LSQ initialization: %", graph.node(fq.node).name, " saw no data: Calibrate first"));
    }
    mean_abs.assign(channels, it->second.first / it->second.second);
  }
  for (size_t c = 0; c < channels; ++c) {
    scales[c] = std::max(static_cast<float>(2.0 * mean_abs[c] / std::sqrt(qp)), kMinLsqScale);
    zero_points[c] = static_cast<float>(zp);
  }
  return absl::OkStatus();
}

absl::Status TrainingEngine::Impl::InitializeLsq() {
  absl::flat_hash_map<int, std::pair<int, int>> params_of_slot;
  for (Step& step : steps) {
    for (std::optional<FakeQuant>* fq : {&step.fq, &step.weight_fq}) {
      if (!fq->has_value()) continue;
      const int slot = (*fq)->slot;
      if (!params_of_slot.contains(slot)) {
        QLAB_ASSIGN_OR_RETURN(const QuantParams q, prepared->SlotQParams(slot));
        const bool symmetric = IsSymmetric(q.qscheme);
        const std::string base = graph.node((*fq)->node).name;
        const int64_t channels = static_cast<int64_t>(q.scales.size());
        Param scale, zero_point;
        scale.name = absl::StrCat(base, ".scale");
        zero_point.name = absl::StrCat(base, ".zero_point");
        scale.shape = zero_point.shape = {channels};
        QLAB_ASSIGN_OR_RETURN(scale.value, Tensor::Create(DType::kFloat32, scale.shape));
        QLAB_ASSIGN_OR_RETURN(scale.grad, Tensor::Create(DType::kFloat32, scale.shape));
        QLAB_ASSIGN_OR_RETURN(zero_point.value, Tensor::Create(DType::kFloat32, scale.shape));
        QLAB_ASSIGN_OR_RETURN(zero_point.grad, Tensor::Create(DType::kFloat32, scale.shape));
        for (int64_t c = 0; c < channels; ++c) {
          scale.v()[c] = q.scales[c];
          zero_point.v()[c] = static_cast<float>(q.zero_points[c]);
        }
        if (qat.lsq_mean_abs_init) {
          QLAB_RETURN_IF_ERROR(MeanAbsInit(step, **fq, q, scale.v(), zero_point.v()));
        }
        scale.trainable = true;
        zero_point.trainable = !symmetric;
        params.push_back(std::move(scale));
        params.push_back(std::move(zero_point));
        const int n = static_cast<int>(params.size());
        params_of_slot[slot] = {n - 2, n - 1};
      }
      (*fq)->lsq_scale = params_of_slot[slot].first;
      (*fq)->lsq_zero_point = params_of_slot[slot].second;
    }
  }
  learned_initialized = true;
  MarkGradientNeeds();  // the input's fake quantization may now have a trained scale
  return absl::OkStatus();
}

absl::Status TrainingEngine::Impl::InitializePact() {
  absl::flat_hash_map<int, int> alpha_of_slot;
  for (Step& step : steps) {
    if (!step.fq.has_value()) continue;  // activations only
    FakeQuant& fq = *step.fq;
    if (!alpha_of_slot.contains(fq.slot)) {
      if (!prepared->slots()[fq.slot].fake_quantize) continue;
      QLAB_ASSIGN_OR_RETURN(const QuantParams q, prepared->SlotQParams(fq.slot));
      // PACT's range [0, alpha]: for values the calibration saw non-negative only.
      if (q.scales.size() != 1 || q.zero_points[0] != q.quant_min) continue;
      Param alpha;
      alpha.name = absl::StrCat(graph.node(fq.node).name, ".alpha");
      alpha.shape = {1};
      QLAB_ASSIGN_OR_RETURN(alpha.value, Tensor::Create(DType::kFloat32, alpha.shape));
      QLAB_ASSIGN_OR_RETURN(alpha.grad, Tensor::Create(DType::kFloat32, alpha.shape));
      alpha.v()[0] = q.scales[0] * static_cast<float>(q.quant_max - q.quant_min);
      alpha.trainable = true;
      params.push_back(std::move(alpha));
      alpha_of_slot[fq.slot] = static_cast<int>(params.size()) - 1;
    }
    fq.pact_alpha = alpha_of_slot[fq.slot];
  }
  learned_initialized = true;
  MarkGradientNeeds();
  return absl::OkStatus();
}

namespace {

// The slot's integer range.
std::pair<int32_t, int32_t> SlotRange(const PreparedModel& prepared, int slot) {
  const auto& spec = std::get<QuantizationSpec>(prepared.slots()[slot].spec);
  return {spec.format().quant_min, spec.format().quant_max};
}

}  // namespace

absl::Status TrainingEngine::Impl::LsqForwardStep(FakeQuant& fq, const float* x, size_t n,
                                                  float* y) {
  Param& scale = params[fq.lsq_scale];
  // SGD may push a scale to zero or below; LSQ needs it positive.
  for (size_t c = 0; c < scale.size(); ++c) scale.v()[c] = std::max(scale.v()[c], kMinLsqScale);
  const auto [qmin, qmax] = SlotRange(*prepared, fq.slot);
  LsqParams p{scale.v(), params[fq.lsq_zero_point].v(), qmin, qmax, 0.0f};
  fq.applied_scales.assign(scale.v(), scale.v() + scale.size());
  fq.applied_zero_points.resize(scale.size());
  for (size_t c = 0; c < scale.size(); ++c) {
    fq.applied_zero_points[c] = LsqForwardZeroPoint(params[fq.lsq_zero_point].v()[c], qmin, qmax);
  }
  fq.applied_min = qmin;
  fq.applied_max = qmax;
  if (scale.size() == 1) {
    LsqPerTensorForward(x, n, p, y, pool);
  } else {
    LsqPerChannelForward(x, kernels::ChannelDims{1, scale.size(), n / scale.size()}, p, y, pool);
  }
  return absl::OkStatus();
}

// PACT's forward: [0, alpha] quantized with scale alpha / (quant_max - quant_min), zero point
// quant_min.
absl::Status TrainingEngine::Impl::PactForwardStep(FakeQuant& fq, const float* x, size_t n,
                                                   float* y) {
  float& alpha = params[fq.pact_alpha].v()[0];
  alpha = std::max(alpha, kMinPactAlpha);  // an optimizer step may push it to <= 0
  const auto [qmin, qmax] = SlotRange(*prepared, fq.slot);
  const float scale = PactScale(alpha, qmin, qmax);
  fq.applied_scales.assign(1, scale);
  fq.applied_zero_points.assign(1, qmin);
  fq.applied_min = qmin;
  fq.applied_max = qmax;
  ParallelFakeQuantize(x, n, kernels::AffineParams{scale, qmin, qmin, qmax}, y, fq.mask.data(),
                       pool);
  return absl::OkStatus();
}

void TrainingEngine::Impl::LsqBackwardStep(FakeQuant& fq, const float* x, const float* dy, size_t n,
                                           float* dx) {
  Param& scale = params[fq.lsq_scale];
  Param& zero_point = params[fq.lsq_zero_point];
  const auto [qmin, qmax] = SlotRange(*prepared, fq.slot);
  const size_t c = scale.size();
  // LSQ's gradient scale 1 / sqrt(N * Q_P): N the elements one scale covers.
  const float grad_factor =
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(n / c) * std::max(qmax, 1)));
  LsqParams p{scale.v(), zero_point.v(), qmin, qmax, grad_factor};
  std::vector<float> dscale(c), dzero(c);
  if (c == 1) {
    LsqPerTensorBackward(x, dy, n, p, dx, dscale.data(), dzero.data(), pool);
  } else {
    LsqPerChannelBackward(x, dy, kernels::ChannelDims{1, c, n / c}, p, dx, dscale.data(),
                          dzero.data(), pool);
  }
  for (size_t i = 0; i < c; ++i) {
    scale.g()[i] += dscale[i];
    if (zero_point.trainable) zero_point.g()[i] += dzero[i];
  }
}

// --- Public API ----------------------------------------------------------------------------------
TrainingEngine::TrainingEngine() : impl_(std::make_unique<Impl>()) {}
TrainingEngine::~TrainingEngine() = default;

absl::StatusOr<std::unique_ptr<TrainingEngine>> TrainingEngine::Create(
    const Graph& graph, const TrainingEngineOptions& options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: threads must be >= 1, got ", options.threads));
  }
  if (!(options.label_smoothing >= 0.0f && options.label_smoothing < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: label_smoothing must be in [0, 1), got ", options.label_smoothing));
  }
  std::unique_ptr<TrainingEngine> engine(new TrainingEngine());
  Impl& impl = *engine->impl_;
  impl.graph = graph;
  impl.options = options;
  QLAB_RETURN_IF_ERROR(impl.Build());
  impl.CreatePool(options.threads);
  impl.CollectTrainable(engine->trainable_);
  return engine;
}

absl::StatusOr<std::unique_ptr<TrainingEngine>> TrainingEngine::CreateQat(
    PreparedModel* prepared, const TrainingEngineOptions& options, const QatOptions& qat) {
  if (prepared == nullptr || !prepared->is_qat()) {
    return absl::InvalidArgumentError("training: CreateQat needs a PrepareQat model");
  }
  if (qat.lsq && qat.pact) {
    return absl::InvalidArgumentError("training: QatOptions.lsq and .pact exclude each other");
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: threads must be >= 1, got ", options.threads));
  }
  std::unique_ptr<TrainingEngine> engine(new TrainingEngine());
  Impl& impl = *engine->impl_;
  impl.graph = prepared->graph();
  impl.prepared = prepared;
  impl.options = options;
  impl.qat = qat;
  QLAB_RETURN_IF_ERROR(impl.Build());
  impl.CreatePool(options.threads);
  impl.CollectTrainable(engine->trainable_);
  return engine;
}

pthreadpool_t TrainingEngine::pool() const { return impl_->pool; }

absl::StatusOr<StepStats> TrainingEngine::ForwardBackward(const Tensor& images,
                                                          absl::Span<const int> labels) {
  return ForwardBackwardImpl(images, labels, nullptr, 0.0f);
}

absl::StatusOr<StepStats> TrainingEngine::ForwardBackwardDistilled(const Tensor& images,
                                                                   absl::Span<const int> labels,
                                                                   const Tensor& teacher_logits,
                                                                   float teacher_weight) {
  if (!(teacher_weight >= 0.0f && teacher_weight <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: distillation weight ", teacher_weight, " is outside [0, 1]"));
  }
  return ForwardBackwardImpl(images, labels, &teacher_logits, teacher_weight);
}

absl::StatusOr<StepStats> TrainingEngine::ForwardBackwardImpl(const Tensor& images,
                                                              absl::Span<const int> labels,
                                                              const Tensor* teacher_logits,
                                                              float teacher_weight) {
  Impl& impl = *impl_;
  QLAB_RETURN_IF_ERROR(impl.LoadInput(images));
  const Activation& logits = impl.acts[impl.output];
  if (labels.size() != static_cast<size_t>(logits.n)) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: ", labels.size(), " labels for a batch of ", logits.n));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= logits.c) {
      return absl::InvalidArgumentError(absl::StrCat("training: label ", labels[i], " of sample ",
                                                     i, " is outside [0, ", logits.c, ")"));
    }
  }
  if ((impl.qat.lsq || impl.qat.pact) && !impl.learned_initialized) {
    return absl::FailedPreconditionError(
        absl::StrCat("training: ", impl.qat.lsq ? "LSQ scales" : "PACT clipping levels",
                     " are not initialized: Calibrate, then InitializeLearnedScales"));
  }
  if (teacher_logits != nullptr && (teacher_logits->dtype() != DType::kFloat32 ||
                                    teacher_logits->shape() != Shape{logits.n, logits.c})) {
    return absl::InvalidArgumentError(
        absl::StrCat("training: teacher logits of shape ", ShapeString(teacher_logits->shape()),
                     " for a batch of ", logits.n, " x ", logits.c, " classes (float32 expected)"));
  }
  QLAB_RETURN_IF_ERROR(impl.Forward(/*training=*/true, /*observe=*/true));
  StepStats stats;
  stats.count = logits.n;
  Activation& out = impl.acts[impl.output];
  stats.loss = DistillationCrossEntropy(
      out.n, out.c, out.value.data<float>(), labels.data(), impl.options.label_smoothing,
      teacher_logits != nullptr ? teacher_logits->data<float>() : nullptr, teacher_weight,
      out.grad.data<float>(), &stats.correct);
  if (!std::isfinite(stats.loss)) {
    return absl::InvalidArgumentError(absl::StrCat("training: the loss is not finite (", stats.loss,
                                                   "): the learning rate is probably too high"));
  }
  QLAB_RETURN_IF_ERROR(impl.Backward());
  return stats;
}

absl::StatusOr<Tensor> TrainingEngine::Predict(const Tensor& images) {
  Impl& impl = *impl_;
  QLAB_RETURN_IF_ERROR(impl.LoadInput(images));
  QLAB_RETURN_IF_ERROR(impl.Forward(/*training=*/false, /*observe=*/false));
  const Activation& out = impl.acts[impl.output];
  QLAB_ASSIGN_OR_RETURN(Tensor logits, Tensor::Create(DType::kFloat32, {out.n, out.c}));
  std::memcpy(logits.data<float>(), out.value.data<float>(), out.size() * sizeof(float));
  return logits;
}

absl::Status TrainingEngine::Calibrate(const Tensor& images) {
  Impl& impl = *impl_;
  if (impl.prepared == nullptr) {
    return absl::FailedPreconditionError("training: Calibrate needs a QAT engine");
  }
  QLAB_RETURN_IF_ERROR(impl.LoadInput(images));
  return impl.Forward(/*training=*/false, /*observe=*/true);
}

absl::Status TrainingEngine::InitializeLearnedScales() {
  if (!(impl_->qat.lsq || impl_->qat.pact) || impl_->learned_initialized) return absl::OkStatus();
  QLAB_RETURN_IF_ERROR(impl_->qat.lsq ? impl_->InitializeLsq() : impl_->InitializePact());
  impl_->CollectTrainable(trainable_);
  return absl::OkStatus();
}

void TrainingEngine::FreezeBatchNormStatistics() { impl_->bn_frozen = true; }

bool TrainingEngine::batch_norm_frozen() const { return impl_->bn_frozen; }

int TrainingEngine::int8_convolutions_last_forward() const {
  return impl_->int8_convs_last_forward;
}

double TrainingEngine::int8_forward_check_last_forward() const { return impl_->int8_check_max; }

void TrainingEngine::FreezeObservers() { impl_->observers_frozen = true; }

std::map<std::string, Tensor> TrainingEngine::StateDict() const {
  std::map<std::string, Tensor> state;
  for (const Param& p : impl_->params) {
    Tensor copy = p.value.Clone();
    state[p.name] = *copy.Reshape(p.shape);
  }
  return state;
}

absl::Status TrainingEngine::LoadStateDict(const std::map<std::string, Tensor>& state) {
  std::map<std::string, Param*> by_name;
  for (Param& p : impl_->params) by_name[p.name] = &p;
  for (const auto& [name, tensor] : state) {
    if (by_name.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("training state: tensor \"", name, "\" is not a parameter of this model"));
    }
  }
  for (auto& [name, p] : by_name) {
    auto it = state.find(name);
    if (it == state.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("training state: parameter \"", name, "\" is missing"));
    }
    if (it->second.dtype() != DType::kFloat32 || it->second.shape() != p->shape) {
      return absl::InvalidArgumentError(absl::StrCat("training state: \"", name, "\" is ",
                                                     it->second.DebugString(), ", expected float32",
                                                     ShapeString(p->shape)));
    }
  }
  for (auto& [name, p] : by_name) {
    std::memcpy(p->v(), state.at(name).data<float>(), p->size() * sizeof(float));
  }
  return absl::OkStatus();
}

absl::StatusOr<Graph> TrainingEngine::TrainedGraph() const {
  Graph trained = impl_->graph;
  for (const Param& p : impl_->params) {
    if (p.node == kNoNode) continue;
    QLAB_ASSIGN_OR_RETURN(Tensor value, p.value.Clone().Reshape(p.shape));
    trained.mutable_node(p.node).value = std::move(value);
  }
  return trained;
}

absl::Status TrainingEngine::WriteBackQat() {
  Impl& impl = *impl_;
  if (impl.prepared == nullptr) {
    return absl::FailedPreconditionError("training: WriteBackQat on an FP32 engine");
  }
  // PACT: pin each slot to its learned range [0, alpha], as the forward quantized it.
  for (const Step& step : impl.steps) {
    if (!step.fq.has_value() || step.fq->pact_alpha < 0) continue;
    QLAB_ASSIGN_OR_RETURN(QuantParams q, impl.prepared->SlotQParams(step.fq->slot));
    q.scales[0] = PactScale(impl.params[step.fq->pact_alpha].v()[0], q.quant_min, q.quant_max);
    q.zero_points[0] = q.quant_min;
    QLAB_RETURN_IF_ERROR(q.Validate());
    impl.prepared->mutable_slot(step.fq->slot).learned = std::move(q);
  }
  // LSQ: pin each slot to its learned parameters (zero points rounded as LSQ's forward does).
  for (const Step& step : impl.steps) {
    for (const std::optional<FakeQuant>* fq : {&step.fq, &step.weight_fq}) {
      if (!fq->has_value() || (*fq)->lsq_scale < 0) continue;
      ObserverSlot& slot = impl.prepared->mutable_slot((*fq)->slot);
      QLAB_ASSIGN_OR_RETURN(QuantParams q, impl.prepared->SlotQParams((*fq)->slot));
      const Param& scale = impl.params[(*fq)->lsq_scale];
      const Param& zero_point = impl.params[(*fq)->lsq_zero_point];
      for (size_t c = 0; c < q.scales.size(); ++c) {
        // The forward's clamp (an optimizer step may have pushed a scale to <= 0 since).
        q.scales[c] = std::max(scale.value.data<float>()[c], kMinLsqScale);
        q.zero_points[c] =
            LsqForwardZeroPoint(zero_point.value.data<float>()[c], q.quant_min, q.quant_max);
      }
      QLAB_RETURN_IF_ERROR(q.Validate());
      slot.learned = std::move(q);
    }
  }
  Graph& graph = impl.prepared->mutable_graph();
  for (const Param& p : impl.params) {
    if (p.node == kNoNode) continue;
    QLAB_ASSIGN_OR_RETURN(Tensor value, p.value.Clone().Reshape(p.shape));
    graph.mutable_node(p.node).value = std::move(value);
  }
  // Fold each QAT conv-bn pair: the folded weight is exactly the scaled weight the fake-quantizer
  // saw with frozen statistics; the bias absorbs the batch norm's shift.
  for (const Step& step : impl.steps) {
    if (step.fused_bn_step < 0) continue;
    const Step& bn = impl.steps[step.fused_bn_step];
    const Param& w = impl.params[step.weight];
    const size_t out_c = static_cast<size_t>(w.shape[0]);
    const size_t per = w.size() / out_c;
    QLAB_ASSIGN_OR_RETURN(Tensor folded_w, Tensor::Create(DType::kFloat32, w.shape));
    QLAB_ASSIGN_OR_RETURN(Tensor folded_b,
                          Tensor::Create(DType::kFloat32, {static_cast<int64_t>(out_c)}));
    const float* gamma = impl.params[bn.gamma].value.data<float>();
    const float* beta = impl.params[bn.beta].value.data<float>();
    const float* mean = impl.params[bn.running_mean].value.data<float>();
    const float* var = impl.params[bn.running_var].value.data<float>();
    const float* bias = step.bias >= 0 ? impl.params[step.bias].value.data<float>() : nullptr;
    for (size_t o = 0; o < out_c; ++o) {
      // As the forward computes it (float), so the folded weight is bit-identical to the one the
      // fake-quantizer saw.
      const float scale = gamma[o] / std::sqrt(var[o] + bn.eps);
      for (size_t i = 0; i < per; ++i) {
        folded_w.data<float>()[o * per + i] = w.value.data<float>()[o * per + i] * scale;
      }
      const double b = bias != nullptr ? bias[o] : 0.0;
      folded_b.data<float>()[o] = static_cast<float>((b - mean[o]) * scale + beta[o]);
    }
    const Node& conv = graph.node(step.node);
    const NodeId fq_node = step.weight_fq->node;
    QLAB_ASSIGN_OR_RETURN(
        const NodeId w_node,
        graph.AddParameter(graph.UniqueName(conv.name + ".weight_folded"), std::move(folded_w)));
    QLAB_ASSIGN_OR_RETURN(
        const NodeId b_node,
        graph.AddParameter(graph.UniqueName(conv.name + ".bias_folded"), std::move(folded_b)));
    QLAB_RETURN_IF_ERROR(graph.ReplaceInput(fq_node, 0, w_node));
    if (conv.inputs.size() > 2) {
      QLAB_RETURN_IF_ERROR(graph.ReplaceInput(step.node, 2, b_node));
    } else {
      graph.mutable_node(step.node).inputs.push_back(b_node);
    }
    QLAB_RETURN_IF_ERROR(graph.ReplaceAllUsesWith(bn.node, step.node));
    QLAB_RETURN_IF_ERROR(graph.RemoveNode(bn.node));
    // Observed weights: the folded values are fed to the observer on top of what it saw during
    // training (unless observers are frozen), as PyTorch's convert calls the weight fake-quant
    // module once more. Resetting it first, as this did, threw away the ranges training had used
    // (a min-max observer's widen over the steps): the converted model then quantized its weights
    // on another grid than the one it was trained for, which cost a 4-bit run 1.8 points.
    ObserverSlot& slot = impl.prepared->mutable_slot(step.weight_fq->slot);
    if (!slot.learned.has_value() && slot.observer != nullptr && !impl.observers_frozen) {
      QLAB_RETURN_IF_ERROR(slot.observer->Observe(graph.node(w_node).value));
    }
  }
  graph.RemoveDeadNodes();
  QLAB_RETURN_IF_ERROR(graph.InferShapes());
  impl.steps.clear();  // the engine's view of the graph is gone
  return absl::OkStatus();
}

}  // namespace qlab::train
