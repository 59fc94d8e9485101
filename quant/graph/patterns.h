// Pattern matching over a Graph: the `get_source_partitions` of qlab's quantizers.
//
// A backend quantizer annotates a fused pattern (conv -> bn -> relu, linear -> relu, add -> relu)
// as one unit: inputs of the first node, the output of the last. FindChains finds every chain of
// ops in the given order where each node feeds the next as its first input and has no other user
// (and is not a graph output), so the intermediate values can disappear in a fused kernel.
//
//   for (const Chain& chain : FindChains(graph, {OpKind::kConv2d, OpKind::kRelu})) {
//     NodeId conv = chain.nodes[0], relu = chain.nodes[1];
//   }
#ifndef QLAB_QUANT_GRAPH_PATTERNS_H_
#define QLAB_QUANT_GRAPH_PATTERNS_H_

#include <vector>

#include "absl/types/span.h"
#include "quant/graph/graph.h"

namespace qlab {

struct Chain {
  std::vector<NodeId> nodes;  // nodes[i] has op pattern[i]
  NodeId first() const { return nodes.front(); }
  NodeId last() const { return nodes.back(); }
};

// All matches of `pattern` (non-empty), in topological order of their first node. Matches may
// not overlap: a node is in at most one match (the earliest-starting one wins), so calling this
// for the longest pattern first and skipping already-annotated nodes gives each node one role.
std::vector<Chain> FindChains(const Graph& graph, absl::Span<const OpKind> pattern);

// Every node of kind `op`, in topological order.
std::vector<NodeId> FindNodes(const Graph& graph, OpKind op);

}  // namespace qlab

#endif  // QLAB_QUANT_GRAPH_PATTERNS_H_
