// Attaching, clearing and printing QuantizationAnnotations (quant/quantization_annotation.h).
#include "quant/quantization_annotation.h"

#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace qlab {

const QSpec* QuantizationAnnotation::InputSpec(NodeId input) const {
  for (const auto& [node, spec] : input_qspec_map) {
    if (node == input) return &spec;
  }
  return nullptr;
}

absl::Status SetAnnotation(Graph& graph, NodeId node, QuantizationAnnotation annotation,
                           bool allow_overwrite) {
  if (!graph.Contains(node)) {
    return absl::InvalidArgumentError(absl::StrCat("SetAnnotation: no node with id ", node));
  }
  Node& n = graph.mutable_node(node);
  if (!allow_overwrite && IsAnnotated(graph, node)) {
    return absl::FailedPreconditionError(
        absl::StrCat("%", n.name, " is already annotated; refusing to overwrite"));
  }
  absl::flat_hash_set<NodeId> seen;
  for (const auto& [input, spec] : annotation.input_qspec_map) {
    bool is_input = false;
    for (const NodeId i : n.inputs) is_input |= (i == input);
    if (!is_input) {
      const std::string input_name = graph.Contains(input)
                                         ? absl::StrCat("%", graph.node(input).name)
                                         : absl::StrCat("<node ", input, ">");
      return absl::InvalidArgumentError(absl::StrCat("annotation of %", n.name, ": ", input_name,
                                                     " is not an input of %", n.name));
    }
    if (!seen.insert(input).second) {
      return absl::InvalidArgumentError(absl::StrCat("annotation of %", n.name, ": input %",
                                                     graph.node(input).name,
                                                     " appears twice in input_qspec_map"));
    }
  }
  n.annotation = std::make_shared<const QuantizationAnnotation>(std::move(annotation));
  return absl::OkStatus();
}

void ClearAnnotations(Graph& graph) {
  for (const NodeId id : graph.node_ids()) graph.mutable_node(id).annotation.reset();
}

std::string DumpAnnotated(const Graph& graph) {
  // Graph::Dump() prints nodes in topological order, one per line starting with "%name ", so
  // each annotated node's specs can follow its line.
  std::string out;
  for (absl::string_view line : absl::StrSplit(graph.Dump(), '\n', absl::SkipEmpty())) {
    absl::StrAppend(&out, line, "\n");
    if (!absl::StartsWith(line, "%")) continue;
    const absl::string_view name = line.substr(1, line.find(" : ") - 1);
    const absl::StatusOr<NodeId> id = graph.FindNode(name);
    if (!id.ok() || graph.node(*id).annotation == nullptr) continue;
    const QuantizationAnnotation& a = *graph.node(*id).annotation;
    for (const auto& [input, spec] : a.input_qspec_map) {
      absl::StrAppend(&out, "    in %", graph.node(input).name, ": ", QSpecToString(spec, graph),
                      "\n");
    }
    if (a.output_qspec) {
      absl::StrAppend(&out, "    out: ", QSpecToString(*a.output_qspec, graph), "\n");
    }
    if (a.input_qspec_map.empty() && !a.output_qspec && a.annotated) {
      absl::StrAppend(&out, "    (annotated, no specs)\n");
    }
  }
  return out;
}

}  // namespace qlab
