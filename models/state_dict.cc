// Strict state-dict loading: compare the checkpoint's names, shapes and dtypes with the graph's
// parameter nodes, collect every disagreement, and only write when there is none.
#include "models/state_dict.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace qlab {
namespace {

constexpr absl::string_view kModulePrefix = "module.";
constexpr absl::string_view kNumBatchesTracked = ".num_batches_tracked";

std::string TypeText(DType dtype, const Shape& shape) {
  return absl::StrCat(DTypeName(dtype), ShapeString(shape));
}

// "2 missing (a, b)"; names beyond the first 20 are counted, not listed, so that loading a
// checkpoint into the wrong architecture gives a readable message.
std::string Listing(absl::string_view what, const std::vector<std::string>& items) {
  constexpr size_t kMaxListed = 20;
  std::vector<std::string> shown(items.begin(),
                                 items.begin() + std::min(items.size(), kMaxListed));
  std::string text = absl::StrCat(items.size(), " ", what, " (", absl::StrJoin(shown, ", "));
  if (items.size() > kMaxListed) absl::StrAppend(&text, ", ... ", items.size() - kMaxListed, " more");
  return text + ")";
}

}  // namespace

absl::StatusOr<StateDict> StripModulePrefix(const StateDict& weights) {
  StateDict out;
  for (const auto& [name, tensor] : weights) {
    std::string key = absl::StartsWith(name, kModulePrefix)
                          ? std::string(name.substr(kModulePrefix.size()))
                          : name;
    if (!out.emplace(key, tensor).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state dict key \"", name, "\" collides with \"", key, "\" once \"module.\" is stripped"));
    }
  }
  return out;
}

absl::Status LoadStateDict(const StateDict& weights, Graph& graph,
                           const LoadStateDictOptions& options) {
  StateDict stripped;
  const StateDict* source = &weights;
  if (options.strip_module_prefix) {
    QLAB_ASSIGN_OR_RETURN(stripped, StripModulePrefix(weights));
    source = &stripped;
  }
  std::vector<std::string> missing, unexpected, mismatched;
  std::vector<std::pair<NodeId, const Tensor*>> assignments;
  std::map<std::string, NodeId> parameters;
  for (NodeId id : graph.node_ids()) {
    const Node& node = graph.node(id);
    if (node.op == OpKind::kParameter) parameters.emplace(node.name, id);
  }
  for (const auto& [name, id] : parameters) {
    auto it = source->find(name);
    if (it == source->end()) {
      missing.push_back(name);
      continue;
    }
    const Node& node = graph.node(id);
    const Tensor& t = it->second;
    if (t.shape() != node.shape || t.dtype() != node.dtype) {
      mismatched.push_back(absl::StrCat(name, ": checkpoint ", TypeText(t.dtype(), t.shape()),
                                        ", model ", TypeText(node.dtype, node.shape)));
      continue;
    }
    assignments.emplace_back(id, &t);
  }
  for (const auto& [name, tensor] : *source) {
    if (parameters.count(name) != 0) continue;
    if (options.ignore_num_batches_tracked && absl::EndsWith(name, kNumBatchesTracked)) continue;
    unexpected.push_back(name);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty()) parts.push_back(Listing("missing", missing));
    if (!unexpected.empty()) parts.push_back(Listing("unexpected", unexpected));
    if (!mismatched.empty()) {
      parts.push_back(Listing(mismatched.size() == 1 ? "shape mismatch" : "shape mismatches",
                              mismatched));
    }
    return absl::InvalidArgumentError(absl::StrCat("state dict does not match the model: ",
                                                   absl::StrJoin(parts, "; ")));
  }
  for (const auto& [id, tensor] : assignments) {
    Node& node = graph.mutable_node(id);
    node.value = *tensor;  // shape and dtype equal: the graph's inferred types stay valid
  }
  return absl::OkStatus();
}

StateDict ExtractStateDict(const Graph& graph) {
  StateDict out;
  for (NodeId id : graph.node_ids()) {
    const Node& node = graph.node(id);
    if (node.op == OpKind::kParameter) out.emplace(node.name, node.value);
  }
  return out;
}

}  // namespace qlab
