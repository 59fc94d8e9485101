// prepare / prepare_qat: from an annotated graph to one with observers (or fake-quantize nodes).
//
// prepare knows no backend. It maps every annotated edge and node to its spec, groups them with
// union-find and gives each group exactly one observer *slot*:
//   - SharedQuantizationSpec(x) puts its edge/node in x's group; sharing is transitive;
//   - implicit sharing: an input edge whose (resolved) spec has the same dtype, range, qscheme,
//     axis, dynamism (and fixed values) as its producer's output spec joins the producer's group,
//     so a tensor observed at its producer is not observed again at its consumer (pt2e's rule;
//     the calibrator choice is not compared, as in pt2e);
//   - a group's spec is its root's: the producer output for implicit sharing, the referenced
//     edge/node for explicit sharing;
//   - DerivedQuantizationSpec edges form their own groups, with no observer: convert computes
//     them from the groups they derive from.
// Observer nodes are then inserted: one after each observed node output (its users read the
// observer), and one on each observed input edge whose group differs from its producer's output
// group. Several nodes may feed one slot (the two inputs of an add sharing parameters): slots,
// not nodes, are the observers.
//
// prepare_qat inserts kFakeQuantize nodes instead: each run observes (while observation is
// enabled) and then quantize-dequantizes with the slot's current parameters, NVIDIA
// pytorch-quantization's TensorQuantizer with its two switches.
#ifndef QLAB_QUANT_PREPARE_H_
#define QLAB_QUANT_PREPARE_H_

#include <memory>
#include <optional>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "calibration/observer.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"
#include "quant/graph/interpreter.h"
#include "quant/quantization_spec.h"
#include "quant/quantizer.h"

namespace qlab {

// A group's resolved spec: observed, fixed, or derived.
using SlotSpec =
    std::variant<QuantizationSpec, FixedQParamsQuantizationSpec, DerivedQuantizationSpec>;

struct ObserverSlot {
  SlotSpec spec;
  // Observed (non-dynamic) QuantizationSpec slots; null for fixed, derived and dynamic ones.
  std::unique_ptr<calibration::Observer> observer;
  // The group, sorted.
  std::vector<EdgeOrNode> members;
  // pytorch-quantization's switches: feed the observer (calibration) / apply fake quantization
  // (QAT nodes only; when off, the fake-quantize node passes its input through).
  bool observe = true;
  bool fake_quantize = true;
  // Parameters learned by QAT (LSQ scales, train/training_engine.h): when set, SlotQParams
  // returns them instead of asking the observer, so convert quantizes with the trained values.
  std::optional<QuantParams> learned;

  std::string DebugString(const Graph& graph) const;
};

struct PrepareOptions {
  // Let observers skip and count NaN/Inf instead of failing (calibration/observer.h).
  bool skip_non_finite = false;
};

namespace internal {
class Preparer;
}  // namespace internal

class PreparedModel : public QuantOpHandler {
 public:
  PreparedModel(PreparedModel&&) = default;
  PreparedModel& operator=(PreparedModel&&) = default;

  const Graph& graph() const { return graph_; }
  // For writing trained parameter values back after QAT (train/training_engine.h); structural
  // edits must keep every observer / fake-quantize node and its slot.
  Graph& mutable_graph() { return graph_; }
  bool is_qat() const { return qat_; }
  const std::vector<ObserverSlot>& slots() const { return slots_; }
  ObserverSlot& mutable_slot(int slot) { return slots_[slot]; }
  // The slot of an annotated edge or node; NotFound naming it otherwise.
  absl::StatusOr<int> SlotOf(const EdgeOrNode& key) const;

  // Runs the prepared graph: observer nodes feed their slots, fake-quantize nodes quantize.
  absl::StatusOr<RunResult> Run(absl::Span<const Tensor> inputs, const RunOptions& options = {});
  // Run() with outputs discarded: one calibration step.
  absl::Status Calibrate(absl::Span<const Tensor> inputs);

  // Current parameters of a slot: from its observer (ChooseQParams rules), its fixed values, or
  // derived from its sources' slots. FailedPrecondition naming the slot's members when an
  // observer has seen nothing.
  absl::StatusOr<QuantParams> SlotQParams(int slot) const;

  // QuantOpHandler.
  absl::Status Observe(const Node& node, const Tensor& x) override;
  absl::StatusOr<Tensor> FakeQuantize(const Node& node, const Tensor& x) override;

  // Graph::Dump() followed by one line per slot.
  std::string Dump() const;

 private:
  friend class internal::Preparer;
  PreparedModel() = default;

  Graph graph_;
  bool qat_ = false;
  std::vector<ObserverSlot> slots_;
  absl::flat_hash_map<EdgeOrNode, int> slot_of_;
};

// InvalidArgument naming the node/edge for: a shared spec referring to an edge that is not in
// the graph or to something with no spec, a derived spec with unknown sources, a spec on an edge
// the node does not have, a group with no concrete spec, and cycles in the graph.
absl::StatusOr<PreparedModel> Prepare(const Graph& annotated, const PrepareOptions& options = {});
absl::StatusOr<PreparedModel> PrepareQat(const Graph& annotated,
                                         const PrepareOptions& options = {});

// Annotate with `quantizer`, let it validate, then Prepare / PrepareQat: the usual entry point.
absl::StatusOr<PreparedModel> PrepareWith(Graph graph, Quantizer& quantizer, bool qat = false,
                                          const PrepareOptions& options = {});

}  // namespace qlab

#endif  // QLAB_QUANT_PREPARE_H_
