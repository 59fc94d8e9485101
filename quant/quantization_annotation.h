// QuantizationAnnotation: what a Quantizer attaches to a graph node.
//
// As in pt2e, an annotation maps the node's input edges to specs (`input_qspec_map`, keyed by the
// producing node, as `node.args[i]` keys it in PyTorch) and gives the spec of the node's output
// (`output_qspec`). `annotated` marks a node a quantizer has claimed, also when it left all of it
// in float: a later quantizer in a ComposableQuantizer must not touch it.
//
// Annotations are immutable once attached (graph copies share them); SetAnnotation replaces the
// pointer and refuses to overwrite an annotated node unless told to.
#ifndef QLAB_QUANT_QUANTIZATION_ANNOTATION_H_
#define QLAB_QUANT_QUANTIZATION_ANNOTATION_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "quant/graph/graph.h"
#include "quant/quantization_spec.h"

namespace qlab {

struct QuantizationAnnotation {
  // (input node, spec), in the order the quantizer wrote them; each input node at most once.
  std::vector<std::pair<NodeId, QSpec>> input_qspec_map;
  std::optional<QSpec> output_qspec;
  bool annotated = false;

  // The spec of the edge from `input`, or null.
  const QSpec* InputSpec(NodeId input) const;
};

// Attaches `annotation` to `node`. FailedPrecondition naming the node if it is already annotated
// (unless `allow_overwrite`); InvalidArgument if an input_qspec_map key is not an input of the
// node or appears twice.
absl::Status SetAnnotation(Graph& graph, NodeId node, QuantizationAnnotation annotation,
                           bool allow_overwrite = false);

inline bool IsAnnotated(const Graph& graph, NodeId node) {
  const auto& a = graph.node(node).annotation;
  return a != nullptr && a->annotated;
}

// Removes every annotation (a graph can then be annotated afresh).
void ClearAnnotations(Graph& graph);

// Graph::Dump() with each annotated node followed by its specs:
//   %add : float32[1,8,4,4] = add(%x, %y)
//       in %x: int8[-128,127] per_tensor_affine minmax
//       in %y: shared((%x -> %add))
//       out:   int8[-128,127] per_tensor_affine minmax
std::string DumpAnnotated(const Graph& graph);

}  // namespace qlab

#endif  // QLAB_QUANT_QUANTIZATION_ANNOTATION_H_
