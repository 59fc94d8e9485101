// Folds eval-mode batch_norm into the convolution or linear layer that feeds it.
//
// conv(x, W, b) -> bn(gamma, beta, mean, var, eps) becomes conv(x, W', b') with
//   W'[o] = W[o] * gamma[o] / sqrt(var[o] + eps)
//   b'[o] = (b[o] - mean[o]) * gamma[o] / sqrt(var[o] + eps) + beta[o]      (b = 0 if absent)
// computed in double and rounded once to float, the same for linear -> bn. Quantization sees the
// folded weights, as every deployment backend runs them. A conv/linear whose output has another
// user besides the batch_norm is left alone (folding would change that user's input).
#ifndef QLAB_QUANT_GRAPH_FOLD_BATCH_NORM_H_
#define QLAB_QUANT_GRAPH_FOLD_BATCH_NORM_H_

#include "absl/status/statusor.h"
#include "quant/graph/graph.h"

namespace qlab {

// Rewrites `graph` in place; returns the number of batch_norm nodes folded. The folded layer
// keeps its name and gets new parameter nodes "<layer>.weight_folded" / "<layer>.bias_folded";
// the batch_norm node and parameters nobody uses any more are removed. Parameters are never
// written in place (other graph copies share them). InvalidArgument naming the batch_norm if
// its statistics do not match the layer's output channels or a variance is negative.
absl::StatusOr<int> FoldBatchNorm(Graph& graph);

}  // namespace qlab

#endif  // QLAB_QUANT_GRAPH_FOLD_BATCH_NORM_H_
