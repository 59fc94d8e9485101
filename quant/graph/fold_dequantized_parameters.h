// Folds dequantize(integer parameter) into a float parameter holding the dequantized values.
//
// convert (quant/convert.h) leaves every quantized weight and bias as an integer parameter
// feeding a dequantize node: the reference model's way of saying "these are the values the
// integer kernels will use". A float engine running that reference model (fake-quant
// evaluation) wants the float values themselves; this pass computes them once, exactly as the
// interpreter's dequantize does, so the folded graph gives the same numbers.
#ifndef QLAB_QUANT_GRAPH_FOLD_DEQUANTIZED_PARAMETERS_H_
#define QLAB_QUANT_GRAPH_FOLD_DEQUANTIZED_PARAMETERS_H_

#include "absl/status/statusor.h"
#include "quant/graph/graph.h"

namespace qlab {

// Rewrites `graph` in place; returns the number of dequantize nodes folded. Each folded
// dequantize is replaced by a float parameter named like it; integer parameters nobody reads
// any more are removed.
absl::StatusOr<int> FoldDequantizedParameters(Graph& graph);

}  // namespace qlab

#endif  // QLAB_QUANT_GRAPH_FOLD_DEQUANTIZED_PARAMETERS_H_
