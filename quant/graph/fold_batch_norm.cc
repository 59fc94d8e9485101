// FoldBatchNorm: eval-mode batch_norm folded into the conv2d / linear layer feeding it.
//
// Two phases, so that an error leaves the graph untouched: first every foldable
// (layer -> batch_norm) pair is found and its statistics validated, then each pair is rewritten
// with new parameter tensors (the old ones may be shared with other Graph copies and are never
// written). Pairs whose weights or statistics are not parameter nodes (e.g. a weight already
// behind a dequantize) are not foldable and are left alone.
#include "quant/graph/fold_batch_norm.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "core/tensor.h"

namespace qlab {
namespace {

struct FoldCandidate {
  NodeId layer;
  NodeId batch_norm;
};

bool IsFloatParameter(const Graph& graph, NodeId id) {
  const Node& node = graph.node(id);
  return node.op == OpKind::kParameter && node.value.dtype() == DType::kFloat32;
}

bool IsOutput(const Graph& graph, NodeId id) {
  for (NodeId out : graph.outputs()) {
    if (out == id) return true;
  }
  return false;
}

// The layer feeding `bn` if the pair can be folded, else kNoNode.
NodeId FoldableLayer(const Graph& graph, const Node& bn) {
  const NodeId layer_id = bn.inputs[0];
  const Node& layer = graph.node(layer_id);
  if (layer.op != OpKind::kConv2d && layer.op != OpKind::kLinear) return kNoNode;
  // Another reader of the layer's output would see the folded (normalized) values instead.
  if (IsOutput(graph, layer_id) || graph.Users(layer_id) != std::vector<NodeId>{bn.id}) {
    return kNoNode;
  }
  for (size_t i = 1; i < layer.inputs.size(); ++i) {
    if (!IsFloatParameter(graph, layer.inputs[i])) return kNoNode;
  }
  for (size_t i = 1; i < bn.inputs.size(); ++i) {
    if (!IsFloatParameter(graph, bn.inputs[i])) return kNoNode;
  }
  return layer_id;
}

absl::Status ValidateStatistics(const Graph& graph, const Node& bn, int64_t channels) {
  static constexpr const char* kNames[] = {"weight", "bias", "running_mean", "running_var"};
  for (int i = 0; i < 4; ++i) {
    const Tensor& t = graph.node(bn.inputs[1 + i]).value;
    if (t.rank() != 1 || t.dim(0) != channels) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch_norm \"", bn.name, "\": ", kNames[i], " is ", t.DebugString(),
                       ", the layer it folds into has ", channels, " output channels"));
    }
  }
  const float* var = graph.node(bn.inputs[4]).value.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    if (!(var[c] >= 0.0f) || !std::isfinite(var[c])) {  // also rejects NaN
      return absl::InvalidArgumentError(absl::StrCat("batch_norm \"", bn.name, "\": running_var[",
                                                     c, "] = ", var[c],
                                                     " is not a finite variance >= 0"));
    }
  }
  return absl::OkStatus();
}

// Rewrites one validated pair: new folded weight and bias, batch_norm bypassed and removed.
absl::Status Fold(Graph& graph, const FoldCandidate& f) {
  const Node& bn = graph.node(f.batch_norm);
  const double eps = bn.attr<BatchNormAttrs>().eps;
  const float* gamma = graph.node(bn.inputs[1]).value.data<float>();
  const float* beta = graph.node(bn.inputs[2]).value.data<float>();
  const float* mean = graph.node(bn.inputs[3]).value.data<float>();
  const float* var = graph.node(bn.inputs[4]).value.data<float>();

  const Node& layer = graph.node(f.layer);
  const Tensor& weight = graph.node(layer.inputs[1]).value;
  const float* bias =
      layer.inputs.size() == 3 ? graph.node(layer.inputs[2]).value.data<float>() : nullptr;
  const int64_t channels = weight.dim(0);
  const int64_t per_channel = channels == 0 ? 0 : weight.numel() / channels;

  QLAB_ASSIGN_OR_RETURN(Tensor folded_weight,
                        Tensor::Create(DType::kFloat32, weight.shape(), weight.layout()));
  QLAB_ASSIGN_OR_RETURN(Tensor folded_bias, Tensor::Create(DType::kFloat32, {channels}));
  for (int64_t o = 0; o < channels; ++o) {
    // W'[o] = W[o] * s and b'[o] = (b[o] - mean[o]) * s + beta[o], s = gamma / sqrt(var + eps),
    // in double and rounded once.
    const double s = gamma[o] / std::sqrt(static_cast<double>(var[o]) + eps);
    for (int64_t i = 0; i < per_channel; ++i) {
      const int64_t e = o * per_channel + i;
      folded_weight.data<float>()[e] = static_cast<float>(weight.data<float>()[e] * s);
    }
    const double b = bias != nullptr ? bias[o] : 0.0;
    folded_bias.data<float>()[o] = static_cast<float>((b - mean[o]) * s + beta[o]);
  }

  const std::string layer_name = layer.name;
  const std::vector<NodeId> old_parameters = {layer.inputs.begin() + 1, layer.inputs.end()};
  const std::vector<NodeId> statistics = {bn.inputs.begin() + 1, bn.inputs.end()};
  QLAB_ASSIGN_OR_RETURN(
      const NodeId weight_id,
      graph.AddParameter(graph.UniqueName(layer_name + ".weight_folded"), folded_weight));
  QLAB_ASSIGN_OR_RETURN(
      const NodeId bias_id,
      graph.AddParameter(graph.UniqueName(layer_name + ".bias_folded"), folded_bias));
  std::vector<NodeId>& inputs = graph.mutable_node(f.layer).inputs;
  inputs.resize(2);
  inputs[1] = weight_id;
  inputs.push_back(bias_id);
  QLAB_RETURN_IF_ERROR(graph.ReplaceAllUsesWith(f.batch_norm, f.layer));
  QLAB_RETURN_IF_ERROR(graph.RemoveNode(f.batch_norm));
  // Parameters nobody reads any more; shared ones (another layer's, a tied weight) stay.
  for (const std::vector<NodeId>* ids : {&old_parameters, &statistics}) {
    for (NodeId id : *ids) {
      if (graph.Contains(id) && graph.Users(id).empty() && !IsOutput(graph, id)) {
        QLAB_RETURN_IF_ERROR(graph.RemoveNode(id));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> FoldBatchNorm(Graph& graph) {
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, graph.TopologicalOrder());
  std::vector<FoldCandidate> candidates;
  for (NodeId id : order) {
    const Node& node = graph.node(id);
    if (node.op != OpKind::kBatchNorm) continue;
    const NodeId layer = FoldableLayer(graph, node);
    if (layer == kNoNode) continue;
    const int64_t channels = graph.node(graph.node(layer).inputs[1]).value.dim(0);
    QLAB_RETURN_IF_ERROR(ValidateStatistics(graph, node, channels));
    candidates.push_back({layer, id});
  }
  for (const FoldCandidate& f : candidates) QLAB_RETURN_IF_ERROR(Fold(graph, f));
  QLAB_RETURN_IF_ERROR(graph.InferShapes());
  return static_cast<int>(candidates.size());
}

}  // namespace qlab
