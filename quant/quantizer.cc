// ConfigTable resolution and ComposableQuantizer (quant/quantizer.h).
#include "quant/quantizer.h"

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "quant/quantization_annotation.h"

namespace qlab {
namespace {

// "layer1" matches "layer1" and "layer1.0.conv1", not "layer10".
bool IsModulePrefix(absl::string_view prefix, absl::string_view name) {
  return name == prefix || (absl::StartsWith(name, prefix) && name.size() > prefix.size() &&
                            name[prefix.size()] == '.');
}

}  // namespace

const QuantizationConfig* ConfigTable::For(const Graph& graph, NodeId node) const {
  const Node& n = graph.node(node);
  const QuantizationConfig* best = nullptr;
  size_t best_length = 0;
  for (const auto& [prefix, config] : by_name_) {
    if (IsModulePrefix(prefix, n.name) && (best == nullptr || prefix.size() > best_length)) {
      best = &config;
      best_length = prefix.size();
    }
  }
  if (best != nullptr) return best;
  if (const auto it = by_op_.find(n.op); it != by_op_.end()) return &it->second;
  return global_ ? &*global_ : nullptr;
}

std::string ComposableQuantizer::name() const {
  std::vector<std::string> names;
  for (const auto& q : quantizers_) names.push_back(q->name());
  return absl::StrCat("composable(", absl::StrJoin(names, ", "), ")");
}

absl::Status ComposableQuantizer::Annotate(Graph& graph) {
  // Who annotated what: an annotation pointer that changes after a later quantizer ran is an
  // overwrite (pt2e's ComposableQuantizer makes the same before/after comparison).
  struct Owner {
    const QuantizationAnnotation* annotation;
    std::string quantizer;
  };
  absl::flat_hash_map<NodeId, Owner> owners;
  auto record = [&](const std::string& quantizer) {
    for (const NodeId id : graph.node_ids()) {
      const QuantizationAnnotation* a = graph.node(id).annotation.get();
      if (a != nullptr) owners.try_emplace(id, Owner{a, quantizer});
    }
  };
  record("(before composing)");
  for (const auto& quantizer : quantizers_) {
    QLAB_RETURN_IF_ERROR(quantizer->Annotate(graph));
    for (const NodeId id : graph.node_ids()) {
      const auto owner = owners.find(id);
      if (owner != owners.end() && graph.node(id).annotation.get() != owner->second.annotation) {
        return absl::FailedPreconditionError(
            absl::StrCat("quantizer ", quantizer->name(), " overwrote the annotation of %",
                         graph.node(id).name, " made by ", owner->second.quantizer));
      }
    }
    record(quantizer->name());
  }
  return absl::OkStatus();
}

absl::Status ComposableQuantizer::Validate(const Graph& graph) const {
  for (const auto& quantizer : quantizers_) QLAB_RETURN_IF_ERROR(quantizer->Validate(graph));
  return absl::OkStatus();
}

absl::Status FilterQuantizer::Annotate(Graph& graph) {
  for (const NodeId id : graph.node_ids()) {
    const Node& node = graph.node(id);
    if (IsAnnotated(graph, id) || !filter_(graph, node)) continue;
    if (node.op != OpKind::kConv2d && node.op != OpKind::kLinear) {
      return absl::InvalidArgumentError(absl::StrCat(
          "FilterQuantizer: the filter accepted %", node.name, " (", OpKindName(node.op),
          "); only conv2d and linear nodes can be quantized this way"));
    }
    QuantizationAnnotation a;
    a.annotated = true;
    if (config_.input_activation)
      a.input_qspec_map.push_back({node.inputs[0], *config_.input_activation});
    if (config_.weight) a.input_qspec_map.push_back({node.inputs[1], *config_.weight});
    if (config_.quantize_bias && node.inputs.size() > 2) {
      QLAB_ASSIGN_OR_RETURN(DerivedQuantizationSpec bias, BiasSpecFor(graph, id));
      a.input_qspec_map.push_back({node.inputs[2], std::move(bias)});
    }
    if (config_.output_activation) a.output_qspec = *config_.output_activation;
    QLAB_RETURN_IF_ERROR(SetAnnotation(graph, id, std::move(a)));
  }
  return absl::OkStatus();
}

}  // namespace qlab
