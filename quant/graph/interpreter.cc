// RunGraph: the float reference interpreter, one plain loop nest per op.
//
// Each run re-derives every node's output type from the tensors it actually sees
// (InferOutputType, the same rules the builders use), so a batch other than the build batch
// works and a malformed run fails with the node's name before any arithmetic. Every node runs
// (also branches no output reads, so that an observer hanging off the side still observes), in
// TopologicalOrder(); a value is dropped as soon as its last reader has run unless it is an
// output or kept.
//
// Summation order is fixed and documented per op (float32 accumulators, -ffp-contract=off), so
// results are bit-reproducible run to run; PyTorch sums in other orders, which is what the
// conformance tolerances in interpreter_test.cc account for.
#include "quant/graph/interpreter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "quant/qparams.h"
#include "quant/quantize_tensor.h"

namespace qlab {
namespace {

std::string NodeLabel(const Node& node) {
  return absl::StrCat(OpKindName(node.op), " \"", node.name, "\"");
}

// `status` with the node named in front, keeping its code.
absl::Status Annotate(const Node& node, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(NodeLabel(node), ": ", status.message()));
}

// floor(a / b) and ceil(a / b) for b > 0 (C++ division truncates towards zero).
int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t CeilDiv(int64_t a, int64_t b) { return -FloorDiv(-a, b); }

// conv2d, direct form. Per output element the products are summed in (input channel, kh, kw)
// order into a float starting at 0, then the bias is added. The loop nest runs over whole output
// rows for one weight tap so the innermost loop is a contiguous multiply-add; the valid output
// column range [ow_begin, ow_end) of each tap excludes the zero padding instead of testing it.
void RunConv2d(const Conv2dAttrs& a, const Tensor& x, const Tensor& w, const Tensor* bias,
               Tensor& out) {
  const int64_t batch = x.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t out_channels = w.dim(0), group_channels = w.dim(1);
  const int64_t kernel_h = w.dim(2), kernel_w = w.dim(3);
  const int64_t out_h = out.dim(2), out_w = out.dim(3);
  const int64_t out_per_group = out_channels / a.groups;
  const auto [stride_h, stride_w] = a.stride;
  const auto [pad_h, pad_w] = a.padding;
  const auto [dilation_h, dilation_w] = a.dilation;
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  float* yd = out.data<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t o = 0; o < out_channels; ++o) {
      float* plane = yd + (n * out_channels + o) * out_h * out_w;  // zero-initialized
      const int64_t first_channel = (o / out_per_group) * group_channels;
      for (int64_t cg = 0; cg < group_channels; ++cg) {
        const float* xplane = xd + (n * channels + first_channel + cg) * height * width;
        for (int64_t kh = 0; kh < kernel_h; ++kh) {
          for (int64_t kw = 0; kw < kernel_w; ++kw) {
            const float wv = wd[((o * group_channels + cg) * kernel_h + kh) * kernel_w + kw];
            // Input column of output column ow: ow * stride_w + col_offset.
            const int64_t col_offset = kw * dilation_w - pad_w;
            const int64_t ow_begin = std::max<int64_t>(0, CeilDiv(-col_offset, stride_w));
            const int64_t ow_end = std::min(out_w, FloorDiv(width - 1 - col_offset, stride_w) + 1);
            for (int64_t oh = 0; oh < out_h; ++oh) {
              const int64_t ih = oh * stride_h - pad_h + kh * dilation_h;
              if (ih < 0 || ih >= height) continue;
              const float* xrow = xplane + ih * width;
              float* yrow = plane + oh * out_w;
              for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
                yrow[ow] += wv * xrow[ow * stride_w + col_offset];
              }
            }
          }
        }
      }
      if (bias != nullptr) {
        const float b = bias->data<float>()[o];
        for (int64_t i = 0; i < out_h * out_w; ++i) plane[i] += b;
      }
    }
  }
}

// linear: y[n, o] = sum_i x[n, i] * w[o, i] (i ascending, float) + b[o].
void RunLinear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) {
  const int64_t batch = x.dim(0), in_features = x.dim(1), out_features = w.dim(0);
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  float* yd = out.data<float>();
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t o = 0; o < out_features; ++o) {
      float sum = 0.0f;
      for (int64_t i = 0; i < in_features; ++i)
        sum += xd[n * in_features + i] * wd[o * in_features + i];
      if (bias != nullptr) sum += bias->data<float>()[o];
      yd[n * out_features + o] = sum;
    }
  }
}

// Eval-mode batch norm as PyTorch's CPU kernel arranges it: y = x * alpha[c] + shift[c] with
// alpha = gamma / sqrt(var + eps) and shift = beta - mean * alpha (here computed in double and
// rounded once, the same values FoldBatchNorm folds).
void RunBatchNorm(const BatchNormAttrs& a, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& mean, const Tensor& var, Tensor& out) {
  const int64_t batch = x.dim(0), channels = x.dim(1);
  const int64_t inner = channels == 0 || batch == 0 ? 0 : x.numel() / (batch * channels);
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(var.data<float>()[c]) + a.eps);
    const double alpha_d = gamma.data<float>()[c] * inv_std;
    const float alpha = static_cast<float>(alpha_d);
    const float shift = static_cast<float>(beta.data<float>()[c] - mean.data<float>()[c] * alpha_d);
    for (int64_t n = 0; n < batch; ++n) {
      const int64_t base = (n * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) yd[base + i] = xd[base + i] * alpha + shift;
    }
  }
}

// max_pool2d: padding acts as -inf; a NaN in the window wins, as in PyTorch.
void RunMaxPool2d(const Pool2dAttrs& a, const Tensor& x, Tensor& out) {
  const int64_t planes = x.dim(0) * x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t out_h = out.dim(2), out_w = out.dim(3);
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* xplane = xd + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t h0 = oh * a.stride[0] - a.padding[0];
      const int64_t h_begin = std::max<int64_t>(h0, 0);
      const int64_t h_end = std::min(h0 + a.kernel[0], height);
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t w0 = ow * a.stride[1] - a.padding[1];
        const int64_t w_begin = std::max<int64_t>(w0, 0);
        const int64_t w_end = std::min(w0 + a.kernel[1], width);
        float best = -std::numeric_limits<float>::infinity();
        for (int64_t h = h_begin; h < h_end; ++h) {
          for (int64_t w = w_begin; w < w_end; ++w) {
            const float v = xplane[h * width + w];
            if (v > best || std::isnan(v)) best = v;
          }
        }
        yd[(p * out_h + oh) * out_w + ow] = best;
      }
    }
  }
}

// avg_pool2d as PyTorch computes it: the window is clipped to the padded input (a ceil-mode
// window may hang over the right edge), the divisor is that clipped window's area with
// count_include_pad, else the number of real input elements in it. Sum in (h, w) order.
void RunAvgPool2d(const Pool2dAttrs& a, const Tensor& x, Tensor& out) {
  const int64_t planes = x.dim(0) * x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t out_h = out.dim(2), out_w = out.dim(3);
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* xplane = xd + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t h0 = oh * a.stride[0] - a.padding[0];
      const int64_t h_padded_end = std::min(h0 + a.kernel[0], height + a.padding[0]);
      const int64_t h_begin = std::max<int64_t>(h0, 0);
      const int64_t h_end = std::min(h_padded_end, height);
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t w0 = ow * a.stride[1] - a.padding[1];
        const int64_t w_padded_end = std::min(w0 + a.kernel[1], width + a.padding[1]);
        const int64_t w_begin = std::max<int64_t>(w0, 0);
        const int64_t w_end = std::min(w_padded_end, width);
        float& y = yd[(p * out_h + oh) * out_w + ow];
        if (h_begin >= h_end || w_begin >= w_end) {
          y = 0.0f;
          continue;
        }
        float sum = 0.0f;
        for (int64_t h = h_begin; h < h_end; ++h) {
          for (int64_t w = w_begin; w < w_end; ++w) sum += xplane[h * width + w];
        }
        const int64_t divisor = a.count_include_pad ? (h_padded_end - h0) * (w_padded_end - w0)
                                                    : (h_end - h_begin) * (w_end - w_begin);
        y = sum / static_cast<float>(divisor);
      }
    }
  }
}

// adaptive_avg_pool2d with PyTorch's windows: [floor(i * in / out), ceil((i + 1) * in / out)).
void RunAdaptiveAvgPool2d(const Tensor& x, Tensor& out) {
  const int64_t planes = x.dim(0) * x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t out_h = out.dim(2), out_w = out.dim(3);
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t p = 0; p < planes; ++p) {
    const float* xplane = xd + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t h_begin = oh * height / out_h;
      const int64_t h_end = CeilDiv((oh + 1) * height, out_h);
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t w_begin = ow * width / out_w;
        const int64_t w_end = CeilDiv((ow + 1) * width, out_w);
        float sum = 0.0f;
        for (int64_t h = h_begin; h < h_end; ++h) {
          for (int64_t w = w_begin; w < w_end; ++w) sum += xplane[h * width + w];
        }
        yd[(p * out_h + oh) * out_w + ow] =
            sum / static_cast<float>((h_end - h_begin) * (w_end - w_begin));
      }
    }
  }
}

// cat: for every index before `axis`, the inputs' blocks one after the other.
void RunCat(int64_t axis, const std::vector<const Tensor*>& xs, Tensor& out) {
  int64_t outer = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out.shape()[d];
  float* yd = out.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (const Tensor* x : xs) {
      const int64_t block = outer == 0 ? 0 : x->numel() / outer;
      std::memcpy(yd, x->data<float>() + o * block, static_cast<size_t>(block) * sizeof(float));
      yd += block;
    }
  }
}

// strided_slice: walks the output index by index (an odometer over the output shape) and reads
// input element begin[d] + i[d] * step[d] along every axis.
void RunStridedSlice(const StridedSliceAttrs& a, const Tensor& x, Tensor& out) {
  const int rank = x.rank();
  if (out.numel() == 0) return;
  std::vector<int64_t> in_stride(rank, 1);
  for (int d = rank - 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * x.shape()[d + 1];
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;  // input offset of `index`
  for (int d = 0; d < rank; ++d) offset += a.begin[d] * in_stride[d];
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) {
    yd[i] = xd[offset];
    // Advance the odometer: the last axis fastest, carrying into the earlier ones.
    for (int d = rank - 1; d >= 0; --d) {
      offset += a.step[d] * in_stride[d];
      if (++index[d] < out.shape()[d]) break;
      offset -= index[d] * a.step[d] * in_stride[d];
      index[d] = 0;
    }
  }
}

// channel_pad: each batch entry's channels land between `before` and `after` zero channels.
void RunChannelPad(const ChannelPadAttrs& a, const Tensor& x, Tensor& out) {
  const int64_t batch = x.dim(0), channels = x.dim(1);
  const int64_t inner = batch * channels == 0 ? 0 : x.numel() / (batch * channels);
  const int64_t out_channels = out.dim(1);
  for (int64_t n = 0; n < batch; ++n) {
    std::memcpy(out.data<float>() + (n * out_channels + a.before) * inner,
                x.data<float>() + n * channels * inner,
                static_cast<size_t>(channels * inner) * sizeof(float));
  }
}

template <typename F>
void RunElementwise(const Tensor& x, Tensor& out, F f) {
  const float* xd = x.data<float>();
  float* yd = out.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) yd[i] = f(xd[i]);
}

Layout ActivationLayout(const Shape& shape) {
  return shape.size() == 4 ? Layout::kNCHW : Layout::kRowMajor;
}

// State of one run.
class Run {
 public:
  Run(const Graph& graph, const RunOptions& options) : graph_(graph), options_(options) {}

  absl::StatusOr<RunResult> Execute(absl::Span<const Tensor> inputs);

 private:
  absl::Status BindInputs(absl::Span<const Tensor> inputs);
  absl::StatusOr<Tensor> Evaluate(const Node& node, const std::vector<const Tensor*>& in);
  absl::StatusOr<Tensor> Quantize(const Node& node, const Tensor& x);
  absl::StatusOr<Tensor> Dequantize(const Node& node, const Tensor& q);

  const Graph& graph_;
  const RunOptions& options_;
  absl::flat_hash_map<NodeId, Tensor> values_;
  // Parameters each dynamic quantize node chose in this run, for its dynamic dequantize.
  absl::flat_hash_map<NodeId, QuantParams> dynamic_params_;
};

absl::Status Run::BindInputs(absl::Span<const Tensor> inputs) {
  const std::vector<NodeId> ids = graph_.inputs();
  if (inputs.size() != ids.size()) {
    std::vector<std::string> names;
    for (NodeId id : ids) names.push_back(absl::StrCat("\"", graph_.node(id).name, "\""));
    return absl::InvalidArgumentError(absl::StrCat("the graph takes ", ids.size(), " inputs (",
                                                   absl::StrJoin(names, ", "), "), got ",
                                                   inputs.size()));
  }
  const Node* batch_source = nullptr;
  for (size_t i = 0; i < ids.size(); ++i) {
    const Node& node = graph_.node(ids[i]);
    const Tensor& t = inputs[i];
    bool fits = t.dtype() == node.dtype && t.shape().size() == node.shape.size();
    for (size_t d = 1; fits && d < node.shape.size(); ++d) fits = t.shape()[d] == node.shape[d];
    if (!fits) {
      Shape expected = node.shape;
      return absl::InvalidArgumentError(absl::StrCat("input \"", node.name, "\" must be ",
                                                     DTypeName(node.dtype), ShapeString(expected),
                                                     " (any batch), got ", t.DebugString()));
    }
    if (batch_source != nullptr && t.dim(0) != values_.at(batch_source->id).dim(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("input \"", node.name, "\" has batch ", t.dim(0), ", input \"",
                       batch_source->name, "\" has batch ", values_.at(batch_source->id).dim(0)));
    }
    if (batch_source == nullptr) batch_source = &node;
    values_[node.id] = t;
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Run::Quantize(const Node& node, const Tensor& x) {
  const QuantizeAttrs& a = node.attr<QuantizeAttrs>();
  if (!a.dynamic) return QuantizeTensor(x, a.params);
  QLAB_ASSIGN_OR_RETURN(const Range range, TensorMinMax(x));
  const QuantTarget target{a.params.dtype, a.params.quant_min, a.params.quant_max,
                           a.params.qscheme, a.eps};
  QLAB_ASSIGN_OR_RETURN(QuantParams chosen, ChooseQParams(range.min, range.max, target));
  QLAB_ASSIGN_OR_RETURN(Tensor q, QuantizeTensor(x, chosen));
  dynamic_params_[node.id] = std::move(chosen);
  return q;
}

absl::StatusOr<Tensor> Run::Dequantize(const Node& node, const Tensor& q) {
  const QuantizeAttrs& a = node.attr<QuantizeAttrs>();
  if (!a.dynamic) return DequantizeTensor(q, a.params);
  const auto it = dynamic_params_.find(node.inputs[0]);
  if (it == dynamic_params_.end()) {
    return absl::FailedPreconditionError(
        "a dynamic dequantize must read a dynamic quantize (run InferShapes after rewiring)");
  }
  return DequantizeTensor(q, it->second);
}

absl::StatusOr<Tensor> Run::Evaluate(const Node& node, const std::vector<const Tensor*>& in) {
  std::vector<ValueType> types;
  types.reserve(in.size());
  for (const Tensor* t : in) types.push_back(ValueType{t->shape(), t->dtype()});
  QLAB_ASSIGN_OR_RETURN(const ValueType type, InferOutputType(node, types));

  // Ops whose output is (a view of) an input, or which delegate to quantize_tensor.
  switch (node.op) {
    case OpKind::kParameter:
      return node.value;
    case OpKind::kIdentity:
      return *in[0];
    case OpKind::kFlatten:
      return in[0]->Reshape(type.shape, Layout::kRowMajor);
    case OpKind::kObserver:
      if (options_.quant_ops != nullptr) {
        QLAB_RETURN_IF_ERROR(options_.quant_ops->Observe(node, *in[0]));
      }
      return *in[0];
    case OpKind::kFakeQuantize: {
      if (options_.quant_ops == nullptr) {
        return absl::FailedPreconditionError(
            "fake-quantize needs a QuantOpHandler (RunOptions::quant_ops), none was given");
      }
      QLAB_ASSIGN_OR_RETURN(Tensor y, options_.quant_ops->FakeQuantize(node, *in[0]));
      if (y.dtype() != DType::kFloat32 || y.shape() != in[0]->shape()) {
        return absl::InvalidArgumentError(absl::StrCat("the handler returned ", y.DebugString(),
                                                       " for input ", in[0]->DebugString()));
      }
      return y;
    }
    case OpKind::kQuantize:
      return Quantize(node, *in[0]);
    case OpKind::kDequantize:
      return Dequantize(node, *in[0]);
    default:
      break;
  }

  QLAB_ASSIGN_OR_RETURN(Tensor out,
                        Tensor::Create(type.dtype, type.shape, ActivationLayout(type.shape)));
  switch (node.op) {
    case OpKind::kConv2d:
      RunConv2d(node.attr<Conv2dAttrs>(), *in[0], *in[1], in.size() == 3 ? in[2] : nullptr, out);
      break;
    case OpKind::kLinear:
      RunLinear(*in[0], *in[1], in.size() == 3 ? in[2] : nullptr, out);
      break;
    case OpKind::kBatchNorm:
      RunBatchNorm(node.attr<BatchNormAttrs>(), *in[0], *in[1], *in[2], *in[3], *in[4], out);
      break;
    case OpKind::kRelu:
      // `v > 0` is false for NaN: NaN passes through like torch.relu's.
      RunElementwise(*in[0], out, [](float v) { return v > 0.0f || std::isnan(v) ? v : 0.0f; });
      break;
    case OpKind::kSigmoid:
      RunElementwise(*in[0], out, [](float v) { return 1.0f / (1.0f + std::exp(-v)); });
      break;
    case OpKind::kAdd: {
      const float* a = in[0]->data<float>();
      const float* b = in[1]->data<float>();
      float* y = out.data<float>();
      for (int64_t i = 0; i < out.numel(); ++i) y[i] = a[i] + b[i];
      break;
    }
    case OpKind::kMaxPool2d:
      RunMaxPool2d(node.attr<Pool2dAttrs>(), *in[0], out);
      break;
    case OpKind::kAvgPool2d:
      RunAvgPool2d(node.attr<Pool2dAttrs>(), *in[0], out);
      break;
    case OpKind::kAdaptiveAvgPool2d:
      RunAdaptiveAvgPool2d(*in[0], out);
      break;
    case OpKind::kCat: {
      const int64_t axis = node.attr<CatAttrs>().axis;
      RunCat(axis < 0 ? axis + in[0]->rank() : axis, in, out);
      break;
    }
    case OpKind::kStridedSlice:
      RunStridedSlice(node.attr<StridedSliceAttrs>(), *in[0], out);
      break;
    case OpKind::kChannelPad:
      RunChannelPad(node.attr<ChannelPadAttrs>(), *in[0], out);
      break;
    default:
      return absl::UnimplementedError("the interpreter has no kernel for this op");
  }
  return out;
}

absl::StatusOr<RunResult> Run::Execute(absl::Span<const Tensor> inputs) {
  if (graph_.outputs().empty()) {
    return absl::FailedPreconditionError("the graph has no outputs (call SetOutputs first)");
  }
  for (NodeId id : options_.keep) {
    if (!graph_.Contains(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("RunOptions::keep names node id ", id, ", which is not in the graph"));
    }
  }
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph_.TopologicalOrder());
  QLAB_RETURN_IF_ERROR(BindInputs(inputs));

  // How many nodes still have to read each value; outputs and kept values are never dropped.
  absl::flat_hash_map<NodeId, int> pending_readers;
  absl::flat_hash_map<NodeId, bool> retained;
  for (NodeId id : graph_.outputs()) retained[id] = true;
  for (NodeId id : options_.keep) retained[id] = true;
  const auto distinct_inputs = [](const Node& node) {
    std::vector<NodeId> ids = node.inputs;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
  };
  for (NodeId id : order) {
    for (NodeId in : distinct_inputs(graph_.node(id))) ++pending_readers[in];
  }
  const auto release = [&](NodeId id) {
    if (pending_readers[id] == 0 && !retained.contains(id)) values_.erase(id);
  };

  for (NodeId id : order) {
    const Node& node = graph_.node(id);
    if (node.op != OpKind::kInput) {
      std::vector<const Tensor*> in;
      in.reserve(node.inputs.size());
      for (NodeId producer : node.inputs) in.push_back(&values_.at(producer));
      absl::StatusOr<Tensor> value = Evaluate(node, in);
      if (!value.ok()) return Annotate(node, value.status());
      values_[id] = *std::move(value);
      for (NodeId producer : distinct_inputs(node)) {
        --pending_readers[producer];
        release(producer);
      }
    }
    release(id);  // nobody reads it (a dead branch): drop it at once
  }

  RunResult result;
  for (NodeId id : graph_.outputs()) result.outputs.push_back(values_.at(id));
  for (NodeId id : options_.keep) result.kept[id] = values_.at(id);
  return result;
}

}  // namespace

absl::StatusOr<RunResult> RunGraph(const Graph& graph, absl::Span<const Tensor> inputs,
                                   const RunOptions& options) {
  Run run(graph, options);
  return run.Execute(inputs);
}

}  // namespace qlab
