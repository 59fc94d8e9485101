// prepare / prepare_qat (quant/prepare.h): specs -> groups (union-find) -> one observer slot per
// group -> observer or fake-quantize nodes in the graph.
#include "quant/prepare.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "calibration/registry.h"
#include "core/status_macros.h"
#include "quant/quantization_annotation.h"
#include "quant/quantize_tensor.h"

namespace qlab {
namespace {

// Union-find over annotated edges/nodes. Union(keep, other) makes keep's root the root of both,
// so the root of a group is the edge/node whose spec the group uses (see prepare.h).
class UnionFind {
 public:
  EdgeOrNode Find(const EdgeOrNode& key) {
    auto it = parent_.find(key);
    if (it == parent_.end() || it->second == key) return key;
    const EdgeOrNode root = Find(it->second);
    parent_.insert_or_assign(key, root);
    return root;
  }
  void Union(const EdgeOrNode& keep, const EdgeOrNode& other) {
    const EdgeOrNode keep_root = Find(keep);
    const EdgeOrNode other_root = Find(other);
    if (keep_root != other_root) parent_.insert_or_assign(other_root, keep_root);
  }

 private:
  absl::flat_hash_map<EdgeOrNode, EdgeOrNode> parent_;
};

// Does `key` name an edge or node that exists in `graph`?
bool Exists(const Graph& graph, const EdgeOrNode& key) {
  if (!graph.Contains(key.producer())) return false;
  if (!key.is_edge()) return true;
  if (!graph.Contains(key.consumer())) return false;
  const auto& inputs = graph.node(key.consumer()).inputs;
  return std::find(inputs.begin(), inputs.end(), key.producer()) != inputs.end();
}

// The attributes pt2e compares before sharing an edge's observer with its producer's output.
bool SameQuantization(const QSpec& a, const QSpec& b) {
  if (const auto* qa = std::get_if<QuantizationSpec>(&a)) {
    const auto* qb = std::get_if<QuantizationSpec>(&b);
    return qb != nullptr && qa->format() == qb->format() && qa->is_dynamic() == qb->is_dynamic();
  }
  if (const auto* fa = std::get_if<FixedQParamsQuantizationSpec>(&a)) {
    const auto* fb = std::get_if<FixedQParamsQuantizationSpec>(&b);
    return fb != nullptr && fa->format() == fb->format() && fa->scale() == fb->scale() &&
           fa->zero_point() == fb->zero_point();
  }
  return false;  // derived specs never share
}

}  // namespace

namespace internal {

class Preparer {
 public:
  Preparer(const Graph& annotated, const PrepareOptions& options, bool qat)
      : graph_(annotated), options_(options), qat_(qat) {}

  absl::StatusOr<PreparedModel> Run();

 private:
  absl::Status CollectSpecs();
  absl::Status CheckReferences();
  // Follows shared specs from `key` to the concrete spec they end at.
  absl::StatusOr<const QSpec*> Resolve(const EdgeOrNode& key) const;
  absl::Status Group();
  absl::StatusOr<ObserverSlot> MakeSlot(const QSpec& spec) const;
  absl::Status MakeSlots(PreparedModel& model);
  absl::Status InsertNodes(PreparedModel& model);

  Graph graph_;
  const PrepareOptions& options_;
  const bool qat_;
  std::vector<NodeId> order_;  // topological order of the annotated graph
  // Every annotated edge/node in topological order of its producer (inputs of a node before
  // its output), with its spec.
  std::vector<std::pair<EdgeOrNode, const QSpec*>> specs_;
  absl::flat_hash_map<EdgeOrNode, const QSpec*> spec_of_;
  UnionFind groups_;
};

absl::Status Preparer::CollectSpecs() {
  QLAB_ASSIGN_OR_RETURN(order_, graph_.TopologicalOrder());
  for (const NodeId id : order_) {
    const Node& node = graph_.node(id);
    if (node.annotation == nullptr) continue;
    auto add = [&](const EdgeOrNode& key, const QSpec& spec) -> absl::Status {
      if (!Exists(graph_, key)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "annotation of %", node.name, ": edge ", key.ToString(graph_), " is not in the graph"));
      }
      if (!spec_of_.emplace(key, &spec).second) {
        return absl::InvalidArgumentError(absl::StrCat("annotation of %", node.name, ": ",
                                                       key.ToString(graph_), " has two specs"));
      }
      specs_.push_back({key, &spec});
      return absl::OkStatus();
    };
    for (const auto& [input, spec] : node.annotation->input_qspec_map) {
      QLAB_RETURN_IF_ERROR(add(EdgeOrNode::Input(input, id), spec));
    }
    if (node.annotation->output_qspec) {
      QLAB_RETURN_IF_ERROR(add(EdgeOrNode::Output(id), *node.annotation->output_qspec));
    }
  }
  return absl::OkStatus();
}

absl::Status Preparer::CheckReferences() {
  for (const auto& [key, spec] : specs_) {
    std::vector<EdgeOrNode> referenced;
    const char* kind = "";
    if (const auto* shared = std::get_if<SharedQuantizationSpec>(spec)) {
      referenced = {shared->shared_with()};
      kind = "shared";
    } else if (const auto* derived = std::get_if<DerivedQuantizationSpec>(spec)) {
      referenced = derived->derived_from();
      kind = "derived";
    }
    for (const EdgeOrNode& ref : referenced) {
      if (!Exists(graph_, ref)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the ", kind, " spec of ", key.ToString(graph_), " refers to ", ref.ToString(graph_),
            ", which is not ", ref.is_edge() ? "an edge" : "a node", " of the graph"));
      }
      const auto it = spec_of_.find(ref);
      if (it == spec_of_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("the ", kind, " spec of ", key.ToString(graph_), " refers to ",
                         ref.ToString(graph_), ", which has no quantization spec"));
      }
      if (std::holds_alternative<DerivedQuantizationSpec>(*spec) &&
          std::holds_alternative<DerivedQuantizationSpec>(*it->second)) {
        return absl::InvalidArgumentError(absl::StrCat("the derived spec of ", key.ToString(graph_),
                                                       " derives from ", ref.ToString(graph_),
                                                       ", which is itself derived"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const QSpec*> Preparer::Resolve(const EdgeOrNode& key) const {
  EdgeOrNode at = key;
  for (size_t steps = 0; steps <= specs_.size(); ++steps) {
    const QSpec* spec = spec_of_.at(at);
    const auto* shared = std::get_if<SharedQuantizationSpec>(spec);
    if (shared == nullptr) return spec;
    at = shared->shared_with();
  }
  return absl::InvalidArgumentError(absl::StrCat("the shared specs starting at ",
                                                 key.ToString(graph_),
                                                 " form a cycle with no concrete spec"));
}

absl::Status Preparer::Group() {
  for (const auto& [key, spec] : specs_) {
    if (const auto* shared = std::get_if<SharedQuantizationSpec>(spec)) {
      groups_.Union(shared->shared_with(), key);
    }
  }
  // Implicit sharing: an input edge quantized like its producer's output reads the producer's
  // observer instead of getting its own.
  for (const auto& [key, spec] : specs_) {
    if (!key.is_edge()) continue;
    const EdgeOrNode producer_output = EdgeOrNode::Output(key.producer());
    if (!spec_of_.contains(producer_output)) continue;
    QLAB_ASSIGN_OR_RETURN(const QSpec* edge_spec, Resolve(key));
    QLAB_ASSIGN_OR_RETURN(const QSpec* output_spec, Resolve(producer_output));
    if (SameQuantization(*edge_spec, *output_spec)) groups_.Union(producer_output, key);
  }
  return absl::OkStatus();
}

absl::StatusOr<ObserverSlot> Preparer::MakeSlot(const QSpec& spec) const {
  if (const auto* fixed = std::get_if<FixedQParamsQuantizationSpec>(&spec)) {
    return ObserverSlot{*fixed, nullptr, {}, true, true, std::nullopt};
  }
  if (const auto* derived = std::get_if<DerivedQuantizationSpec>(&spec)) {
    return ObserverSlot{*derived, nullptr, {}, true, true, std::nullopt};
  }
  const auto& observed = std::get<QuantizationSpec>(spec);
  // Dynamic specs choose their parameters from each run's range: nothing to observe.
  if (observed.is_dynamic()) return ObserverSlot{observed, nullptr, {}, true, true, std::nullopt};
  calibration::ObserverOptions observer_options;
  observer_options.channel_axis = observed.format().ch_axis;
  observer_options.skip_non_finite = options_.skip_non_finite;
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<calibration::Observer> observer,
                        calibration::CreateObserver(observed.observer(), observer_options));
  return ObserverSlot{observed, std::move(observer), {}, true, true, std::nullopt};
}

absl::Status Preparer::MakeSlots(PreparedModel& model) {
  absl::flat_hash_map<EdgeOrNode, int> slot_of_root;
  for (const auto& [key, spec] : specs_) {
    const EdgeOrNode root = groups_.Find(key);
    auto [it, inserted] = slot_of_root.try_emplace(root, static_cast<int>(model.slots_.size()));
    if (inserted) {
      QLAB_ASSIGN_OR_RETURN(const QSpec* root_spec, Resolve(root));
      QLAB_ASSIGN_OR_RETURN(ObserverSlot slot, MakeSlot(*root_spec));
      model.slots_.push_back(std::move(slot));
    }
    model.slots_[it->second].members.push_back(key);
    model.slot_of_[key] = it->second;
  }
  for (ObserverSlot& slot : model.slots_) std::sort(slot.members.begin(), slot.members.end());
  return absl::OkStatus();
}

absl::Status Preparer::InsertNodes(PreparedModel& model) {
  const OpKind kind = qat_ ? OpKind::kFakeQuantize : OpKind::kObserver;
  const char* suffix = qat_ ? ".fq" : ".obs";
  auto observed_slot = [&](const EdgeOrNode& key) {
    const auto it = model.slot_of_.find(key);
    if (it == model.slot_of_.end()) return -1;
    // Derived slots get no node: convert computes them.
    return std::holds_alternative<DerivedQuantizationSpec>(model.slots_[it->second].spec)
               ? -1
               : it->second;
  };
  for (const NodeId producer : order_) {
    const std::vector<NodeId> users = graph_.Users(producer);
    const std::string producer_name = graph_.node(producer).name;
    NodeId source = producer;
    const int output_slot = observed_slot(EdgeOrNode::Output(producer));
    if (output_slot >= 0) {
      QLAB_ASSIGN_OR_RETURN(source, graph_.AddNode(kind, graph_.UniqueName(producer_name + suffix),
                                                   {producer}, ObserverAttrs{output_slot}));
      QLAB_RETURN_IF_ERROR(graph_.ReplaceAllUsesWith(producer, source));
    }
    for (const NodeId consumer : users) {
      const int edge_slot = observed_slot(EdgeOrNode::Input(producer, consumer));
      if (edge_slot < 0 || edge_slot == output_slot) continue;
      QLAB_ASSIGN_OR_RETURN(
          const NodeId observer,
          graph_.AddNode(kind,
                         graph_.UniqueName(
                             absl::StrCat(producer_name, suffix, ".", graph_.node(consumer).name)),
                         {source}, ObserverAttrs{edge_slot}));
      const std::vector<NodeId> inputs = graph_.node(consumer).inputs;
      for (size_t i = 0; i < inputs.size(); ++i) {
        if (inputs[i] == source) {
          QLAB_RETURN_IF_ERROR(graph_.ReplaceInput(consumer, static_cast<int>(i), observer));
        }
      }
    }
  }
  return graph_.InferShapes();
}

absl::StatusOr<PreparedModel> Preparer::Run() {
  PreparedModel model;
  QLAB_RETURN_IF_ERROR(CollectSpecs());
  QLAB_RETURN_IF_ERROR(CheckReferences());
  QLAB_RETURN_IF_ERROR(Group());
  QLAB_RETURN_IF_ERROR(MakeSlots(model));
  QLAB_RETURN_IF_ERROR(InsertNodes(model));
  model.graph_ = std::move(graph_);
  model.qat_ = qat_;
  return model;
}

}  // namespace internal

absl::StatusOr<PreparedModel> Prepare(const Graph& annotated, const PrepareOptions& options) {
  return internal::Preparer(annotated, options, /*qat=*/false).Run();
}

absl::StatusOr<PreparedModel> PrepareQat(const Graph& annotated, const PrepareOptions& options) {
  return internal::Preparer(annotated, options, /*qat=*/true).Run();
}

absl::StatusOr<PreparedModel> PrepareWith(Graph graph, Quantizer& quantizer, bool qat,
                                          const PrepareOptions& options) {
  QLAB_RETURN_IF_ERROR(quantizer.Annotate(graph));
  QLAB_RETURN_IF_ERROR(quantizer.Validate(graph));
  return internal::Preparer(graph, options, qat).Run();
}

// --- PreparedModel ---------------------------------------------------------------------------

absl::StatusOr<int> PreparedModel::SlotOf(const EdgeOrNode& key) const {
  const auto it = slot_of_.find(key);
  if (it == slot_of_.end()) {
    return absl::NotFoundError(
        absl::StrCat(key.ToString(graph_), " has no quantization spec in this prepared model"));
  }
  return it->second;
}

absl::StatusOr<RunResult> PreparedModel::Run(absl::Span<const Tensor> inputs,
                                             const RunOptions& options) {
  RunOptions with_handler = options;
  with_handler.quant_ops = this;
  return RunGraph(graph_, inputs, with_handler);
}

absl::Status PreparedModel::Calibrate(absl::Span<const Tensor> inputs) {
  return Run(inputs).status();
}

absl::StatusOr<QuantParams> PreparedModel::SlotQParams(int slot_index) const {
  const ObserverSlot& slot = slots_.at(slot_index);
  if (slot.learned.has_value()) return *slot.learned;
  if (const auto* fixed = std::get_if<FixedQParamsQuantizationSpec>(&slot.spec)) {
    return fixed->params();
  }
  if (const auto* spec = std::get_if<QuantizationSpec>(&slot.spec)) {
    if (spec->is_dynamic()) {
      return absl::FailedPreconditionError(
          absl::StrCat("observer slot ", slot_index, " (", slot.DebugString(graph_),
                       ") is dynamic: its parameters are chosen from each run's data"));
    }
    if (slot.observer->num_batches() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("observer slot ", slot_index, " (", slot.DebugString(graph_),
                       ") has observed nothing: calibrate before computing its parameters"));
    }
    return slot.observer->ComputeQParams(spec->target());
  }
  const auto& derived = std::get<DerivedQuantizationSpec>(slot.spec);
  std::vector<QuantParams> sources;
  for (const EdgeOrNode& source : derived.derived_from()) {
    QLAB_ASSIGN_OR_RETURN(const int source_slot, SlotOf(source));
    QLAB_ASSIGN_OR_RETURN(QuantParams params, SlotQParams(source_slot));
    sources.push_back(std::move(params));
  }
  QLAB_ASSIGN_OR_RETURN(QuantParams params, derived.derive_fn()(sources));
  params.dtype = derived.format().dtype;
  params.quant_min = derived.format().quant_min;
  params.quant_max = derived.format().quant_max;
  QLAB_RETURN_IF_ERROR(params.Validate());
  return params;
}

absl::Status PreparedModel::Observe(const Node& node, const Tensor& x) {
  ObserverSlot& slot = slots_.at(node.attr<ObserverAttrs>().slot);
  if (!slot.observe || slot.observer == nullptr) return absl::OkStatus();
  if (absl::Status s = slot.observer->Observe(x); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("observer %", node.name, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> PreparedModel::FakeQuantize(const Node& node, const Tensor& x) {
  QLAB_RETURN_IF_ERROR(Observe(node, x));
  const int slot = node.attr<ObserverAttrs>().slot;
  if (!slots_.at(slot).fake_quantize) return x;
  QuantParams params;
  const auto* spec = std::get_if<QuantizationSpec>(&slots_.at(slot).spec);
  if (spec != nullptr && spec->is_dynamic()) {
    QLAB_ASSIGN_OR_RETURN(const Range range, TensorMinMax(x));
    QLAB_ASSIGN_OR_RETURN(params, ChooseQParams(range.min, range.max, spec->target()));
  } else {
    QLAB_ASSIGN_OR_RETURN(params, SlotQParams(slot));
  }
  QLAB_ASSIGN_OR_RETURN(FakeQuantized fq, FakeQuantizeTensor(x, params, /*with_mask=*/false));
  return fq.values;
}

std::string ObserverSlot::DebugString(const Graph& graph) const {
  std::vector<std::string> names;
  for (const EdgeOrNode& m : members) names.push_back(m.ToString(graph));
  std::string what;
  if (const auto* q = std::get_if<QuantizationSpec>(&spec)) {
    what = q->ToString();
  } else if (const auto* f = std::get_if<FixedQParamsQuantizationSpec>(&spec)) {
    what = QSpecToString(*f, graph);
  } else {
    what = QSpecToString(std::get<DerivedQuantizationSpec>(spec), graph);
  }
  return absl::StrCat(what, " for ", absl::StrJoin(names, ", "));
}

std::string PreparedModel::Dump() const {
  std::string out = graph_.Dump();
  for (size_t i = 0; i < slots_.size(); ++i) {
    absl::StrAppend(&out, "slot ", i, ": ", slots_[i].DebugString(graph_), "\n");
  }
  return out;
}

}  // namespace qlab
