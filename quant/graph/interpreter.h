// The float reference interpreter: executes any quant/graph Graph on a batch, op by op.
//
// This is the oracle of the quantization flow: the float model, the prepared model during
// calibration (observer nodes), the QAT model (fake-quantize nodes) and convert's Q/DQ reference
// model all run here, so that "int8 engine vs fake-quant" and "converted vs float" comparisons
// have one definition of each op. Plain loops in double-free float32 arithmetic, written for
// clarity, not speed (kernels/ makes the fast path); batch N may differ from the N the graph was
// built with.
//
// Observer and fake-quantize nodes do not know their observer: they name a slot, and the caller
// passes a QuantOpHandler that owns the slots (quant/prepare.h). Without a handler, observer
// nodes pass their input through and fake-quantize nodes are an error.
#ifndef QLAB_QUANT_GRAPH_INTERPRETER_H_
#define QLAB_QUANT_GRAPH_INTERPRETER_H_

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"

namespace qlab {

class QuantOpHandler {
 public:
  virtual ~QuantOpHandler() = default;
  // An observer node saw `x`; its output is `x` itself.
  virtual absl::Status Observe(const Node& node, const Tensor& x) = 0;
  // A fake-quantize node: returns the quantize-dequantize of `x` (and may observe it first).
  virtual absl::StatusOr<Tensor> FakeQuantize(const Node& node, const Tensor& x) = 0;
};

struct RunOptions {
  QuantOpHandler* quant_ops = nullptr;
  // Also return the values of these nodes (e.g. per-layer comparisons).
  std::vector<NodeId> keep;
};

struct RunResult {
  std::vector<Tensor> outputs;                   // graph.outputs(), in order
  absl::flat_hash_map<NodeId, Tensor> kept;      // RunOptions::keep
};

// Runs `graph` on `inputs` (one tensor per graph.inputs(), in order; each must match its input
// node's dtype and shape except for the batch dimension, which must agree across inputs).
// InvalidArgument naming the input or node otherwise. Intermediate values are freed as soon as
// their last user has run.
absl::StatusOr<RunResult> RunGraph(const Graph& graph, absl::Span<const Tensor> inputs,
                                   const RunOptions& options = {});

}  // namespace qlab

#endif  // QLAB_QUANT_GRAPH_INTERPRETER_H_
