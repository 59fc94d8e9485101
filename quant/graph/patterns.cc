// FindChains / FindNodes: the pattern matcher quantizers use to annotate fused ops as one unit.
//
// A chain grows from a node of pattern[0] along single-user edges: node i may continue to node
// i + 1 only if node i + 1 is its only user, reads it as its first input, and node i is not a
// graph output (a fused kernel never materializes the intermediate). Starting points are visited
// in topological order and nodes already in a match are skipped, which makes matches disjoint
// with the earliest-starting one winning.
#include "quant/graph/patterns.h"

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"

namespace qlab {
namespace {

// Topological order, or creation order for a graph with a cycle (the matcher cannot report a
// Status; a cyclic graph fails loudly at InferShapes / RunGraph anyway).
std::vector<NodeId> VisitOrder(const Graph& graph) {
  absl::StatusOr<std::vector<NodeId>> order = graph.TopologicalOrder();
  return order.ok() ? *std::move(order) : graph.node_ids();
}

bool IsOutput(const Graph& graph, NodeId id) {
  for (NodeId out : graph.outputs()) {
    if (out == id) return true;
  }
  return false;
}

// The node `id` feeds exclusively and as first input, or kNoNode.
NodeId SoleFirstInputUser(const Graph& graph, NodeId id) {
  if (IsOutput(graph, id)) return kNoNode;
  const std::vector<NodeId> users = graph.Users(id);
  if (users.size() != 1) return kNoNode;
  const Node& user = graph.node(users[0]);
  return user.inputs.front() == id ? user.id : kNoNode;
}

}  // namespace

std::vector<Chain> FindChains(const Graph& graph, absl::Span<const OpKind> pattern) {
  std::vector<Chain> chains;
  if (pattern.empty()) return chains;
  absl::flat_hash_set<NodeId> matched;
  for (NodeId start : VisitOrder(graph)) {
    if (graph.node(start).op != pattern[0] || matched.contains(start)) continue;
    Chain chain;
    chain.nodes.push_back(start);
    for (size_t i = 1; i < pattern.size(); ++i) {
      const NodeId next = SoleFirstInputUser(graph, chain.nodes.back());
      if (next == kNoNode || graph.node(next).op != pattern[i] || matched.contains(next)) break;
      chain.nodes.push_back(next);
    }
    if (chain.nodes.size() != pattern.size()) continue;
    matched.insert(chain.nodes.begin(), chain.nodes.end());
    chains.push_back(std::move(chain));
  }
  return chains;
}

std::vector<NodeId> FindNodes(const Graph& graph, OpKind op) {
  std::vector<NodeId> found;
  for (NodeId id : VisitOrder(graph)) {
    if (graph.node(id).op == op) found.push_back(id);
  }
  return found;
}

}  // namespace qlab
