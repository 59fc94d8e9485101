// FoldDequantizedParameters (quant/graph/fold_dequantized_parameters.h).
#include "quant/graph/fold_dequantized_parameters.h"

#include <string>
#include <vector>

#include "core/status_macros.h"
#include "quant/quantize_tensor.h"

namespace qlab {

absl::StatusOr<int> FoldDequantizedParameters(Graph& graph) {
  int folded = 0;
  for (const NodeId id : graph.node_ids()) {
    const Node& dq = graph.node(id);
    if (dq.op != OpKind::kDequantize || dq.attr<QuantizeAttrs>().dynamic) continue;
    const Node& source = graph.node(dq.inputs[0]);
    if (source.op != OpKind::kParameter) continue;
    QLAB_ASSIGN_OR_RETURN(Tensor values,
                          DequantizeTensor(source.value, dq.attr<QuantizeAttrs>().params));
    const std::string name = dq.name;
    QLAB_ASSIGN_OR_RETURN(const NodeId folded_param,
                          graph.AddParameter(graph.UniqueName(name + ".folded"), values));
    QLAB_RETURN_IF_ERROR(graph.ReplaceAllUsesWith(id, folded_param));
    QLAB_RETURN_IF_ERROR(graph.RemoveNode(id));
    ++folded;
  }
  graph.RemoveDeadNodes();
  QLAB_RETURN_IF_ERROR(graph.InferShapes());
  return folded;
}

}  // namespace qlab
