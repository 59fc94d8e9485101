// Graph: qlab's dataflow IR, the object every quantization step reads and rewrites.
//
// A Graph is what PyTorch 2 export hands to a Quantizer: a flat list of nodes, each one op with
// its inputs (other nodes), attributes and an inferred output shape and dtype. Weights, biases
// and batch-norm statistics are `parameter` nodes holding a Tensor, so a quantizer annotates the
// weight *edge* (parameter -> conv) exactly as it annotates an activation edge, and convert can
// replace a float parameter by an int8 one followed by `dequantize`.
//
// Conventions (PyTorch's, so that builders and conformance tests map one to one):
//   activations NCHW float32 (rank 4) or [N, features] (rank 2); batch N is any size at run time:
//   shapes are recorded with the batch the graph was built with, and ops never mix batch entries;
//   conv weight OIHW ([out, in/groups, kh, kw]); linear weight [out, in]; per-channel vectors [C].
//
// Node ids are stable: removing a node never renumbers the others, so a NodeId kept in an
// annotation or an edge stays valid across passes. Insertion order is not execution order once
// passes insert nodes: TopologicalOrder() is.
//
// Dump() prints one line per node in topological order, like an FX graph print:
//   %x : float32[1,3,32,32] = input()
//   %conv1.weight : float32[16,3,3,3] = parameter()
//   %conv1 : float32[1,16,32,32] = conv2d(%x, %conv1.weight, stride=[1,1], padding=[1,1], ...)
//   %relu : float32[1,16,32,32] = relu(%conv1)
//   return (%relu)
#ifndef QLAB_QUANT_GRAPH_GRAPH_H_
#define QLAB_QUANT_GRAPH_GRAPH_H_

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "quant/qparams.h"

namespace qlab {

// Defined in quant/quantization_annotation.h. A node carries its annotation by pointer so that
// the graph does not depend on the annotation API (the graph is also used without it).
struct QuantizationAnnotation;

using NodeId = int32_t;
inline constexpr NodeId kNoNode = -1;

enum class OpKind : uint8_t {
  // Sources.
  kInput,      // a graph input (activation); no inputs
  kParameter,  // a constant tensor (weight, bias, BN statistic, quantized weight); no inputs
  // Float compute ops.
  kConv2d,             // (x, weight[, bias])              Conv2dAttrs
  kLinear,             // (x[N, in], weight[out, in][, bias[out]])
  kBatchNorm,          // (x, weight, bias, running_mean, running_var)  BatchNormAttrs; eval mode
  kRelu,               // (x)
  kAdd,                // (a, b) same shape
  kMaxPool2d,          // (x)  Pool2dAttrs
  kAvgPool2d,          // (x)  Pool2dAttrs
  kAdaptiveAvgPool2d,  // (x)  AdaptiveAvgPool2dAttrs (output 1x1 = global average pool)
  kFlatten,            // (x)  FlattenAttrs
  kCat,                // (x0, x1, ...)  CatAttrs
  kSigmoid,            // (x)
  kStridedSlice,       // (x)  StridedSliceAttrs   (x[:, :, ::2, ::2] of the option-A shortcut)
  kChannelPad,         // (x)  ChannelPadAttrs     (zero channels before/after, option-A shortcut)
  kIdentity,           // (x)
  // Quantization ops (inserted by prepare / convert).
  kObserver,      // (x) -> x unchanged; feeds an observer.          ObserverAttrs
  kFakeQuantize,  // (x) -> quantize-dequantize of x (QAT).         ObserverAttrs
  kQuantize,      // (x float) -> integer tensor.                    QuantizeAttrs
  kDequantize,    // (q integer) -> float32.                         QuantizeAttrs
};

// "conv2d", "batch_norm", "max_pool2d", ... (the names Dump() prints).
absl::string_view OpKindName(OpKind op);

// --- Attributes, one struct per op family ----------------------------------------------------
struct Conv2dAttrs {
  std::array<int64_t, 2> stride = {1, 1};
  std::array<int64_t, 2> padding = {0, 0};  // zero padding, both sides
  std::array<int64_t, 2> dilation = {1, 1};
  int64_t groups = 1;
};

struct BatchNormAttrs {
  float eps = 1e-5f;
  float momentum = 0.1f;  // used by training (issue 8); eval mode uses running statistics
};

struct Pool2dAttrs {
  std::array<int64_t, 2> kernel = {2, 2};
  std::array<int64_t, 2> stride = {2, 2};
  std::array<int64_t, 2> padding = {0, 0};
  bool ceil_mode = false;
  // avg_pool2d only: PyTorch's default true (padding zeros count in the divisor).
  bool count_include_pad = true;
};

struct AdaptiveAvgPool2dAttrs {
  std::array<int64_t, 2> output_size = {1, 1};
};

struct FlattenAttrs {
  int64_t start_dim = 1;  // flattens [start_dim, end] (end_dim = -1, as ResNets use it)
};

struct CatAttrs {
  int64_t axis = 1;
};

// x[begin:end:step] along each axis (one entry per axis of the input; end is clamped to the
// dimension like Python slicing; negative values are not accepted).
struct StridedSliceAttrs {
  std::vector<int64_t> begin;
  std::vector<int64_t> end;
  std::vector<int64_t> step;
};

// Zero channels added along axis 1 (NCHW): `before` in front, `after` behind.
struct ChannelPadAttrs {
  int64_t before = 0;
  int64_t after = 0;
};

// Observer and fake-quantize nodes name an observer *slot* owned by whoever prepared the graph
// (quant/prepare.h): several nodes may feed the same slot (shared quantization parameters).
struct ObserverAttrs {
  int32_t slot = -1;
};

// Quantize / dequantize with fixed parameters (convert's output), or, when `dynamic`, with
// per-tensor parameters chosen from each run's min/max (dynamic quantization; `params` then gives
// dtype, range and qscheme, its scales/zero points are unused).
//
// A dynamic dequantize reads the parameters its input (which must then be a dynamic quantize
// node) chose in the same run: the integer tensor on the edge does not carry its scale, so the
// pair stands for PyTorch's choose_qparams -> quantize_per_tensor -> dequantize_per_tensor.
struct QuantizeAttrs {
  QuantParams params;
  bool dynamic = false;
  // Dynamic only: the smallest scale ChooseQParams may return (the spec's eps).
  float eps = std::numeric_limits<float>::epsilon();
};

using NodeAttrs =
    std::variant<std::monostate, Conv2dAttrs, BatchNormAttrs, Pool2dAttrs, AdaptiveAvgPool2dAttrs,
                 FlattenAttrs, CatAttrs, StridedSliceAttrs, ChannelPadAttrs, ObserverAttrs,
                 QuantizeAttrs>;

// --- Nodes -------------------------------------------------------------------------------------
struct Node {
  NodeId id = kNoNode;
  OpKind op = OpKind::kIdentity;
  std::string name;  // unique in the graph; PyTorch's module path for modules ("layer1.0.conv1")
  std::vector<NodeId> inputs;
  NodeAttrs attrs;
  // Inferred output type (for parameters: the tensor's).
  Shape shape;
  DType dtype = DType::kFloat32;
  // kParameter only: the value. Shared (not copied) by Graph copies; passes that change a
  // parameter create a new Tensor instead of writing into this one.
  Tensor value;
  // Set by a Quantizer; null when not annotated.
  std::shared_ptr<const QuantizationAnnotation> annotation;

  template <typename A>
  const A& attr() const {
    return std::get<A>(attrs);  // the op kind fixes the attribute type: a mismatch is a bug
  }
};

// An input edge: `consumer` reads the output of `producer`.
struct Edge {
  NodeId producer = kNoNode;
  NodeId consumer = kNoNode;
  friend bool operator==(const Edge& a, const Edge& b) {
    return a.producer == b.producer && a.consumer == b.consumer;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Edge& e) {
    return H::combine(std::move(h), e.producer, e.consumer);
  }
};

// --- The graph ---------------------------------------------------------------------------------
// Copyable (a copy is a clone of the structure; parameter tensors and annotations are shared,
// being immutable by convention). Not thread-safe for mutation.
class Graph {
 public:
  Graph() = default;
  Graph(const Graph& other);
  Graph& operator=(const Graph& other);
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // Builders. Each validates its inputs (they exist, dtypes and shapes fit the op, attributes are
  // in range) and infers the output shape, returning InvalidArgument naming the node and the
  // offending value otherwise; names must be unique (AlreadyExists). An empty name asks for a
  // fresh one derived from the op ("conv2d_3"). AddNode takes the compute and quantization ops
  // (sources come from AddInput / AddParameter); `attrs` left std::monostate is filled with the
  // op's attribute struct's defaults (e.g. Conv2dAttrs{} for conv2d), any other mismatch between
  // op and attribute type is InvalidArgument.
  absl::StatusOr<NodeId> AddInput(std::string name, Shape shape,
                                  DType dtype = DType::kFloat32);
  absl::StatusOr<NodeId> AddParameter(std::string name, Tensor value);
  absl::StatusOr<NodeId> AddNode(OpKind op, std::string name, std::vector<NodeId> inputs,
                                 NodeAttrs attrs = {});

  // The graph's results, in order (like FX's output node). Must be set before running.
  absl::Status SetOutputs(std::vector<NodeId> outputs);
  const std::vector<NodeId>& outputs() const { return outputs_; }
  // Input nodes in creation order: the order Run() takes its input tensors in.
  std::vector<NodeId> inputs() const;

  bool Contains(NodeId id) const;
  // QLAB_CHECKs that the node exists (ids come from this graph: a bad one is a bug).
  const Node& node(NodeId id) const;
  // For passes that edit attributes, inputs or parameter values; never change `id` or `name`
  // through it (the name index would go stale). Call InferShapes() after such edits.
  Node& mutable_node(NodeId id);
  // NotFound naming `name`.
  absl::StatusOr<NodeId> FindNode(absl::string_view name) const;
  // Live node ids in creation order.
  std::vector<NodeId> node_ids() const;
  int num_nodes() const;

  // Nodes reading `id`'s output, in creation order, each once (even if it reads it twice).
  std::vector<NodeId> Users(NodeId id) const;

  // Execution order: every node after its inputs, ties broken by creation order (so the order
  // and Dump() are deterministic). InvalidArgument naming a node on a cycle.
  absl::StatusOr<std::vector<NodeId>> TopologicalOrder() const;

  // Rewiring. ReplaceInput: consumer's input `index` now reads `producer`. ReplaceAllUsesWith:
  // every consumer of `from` (and the graph outputs) reads `to` instead, except `to` itself
  // (so that "insert x -> observer, then redirect x's users to the observer" is one call).
  absl::Status ReplaceInput(NodeId consumer, int index, NodeId producer);
  absl::Status ReplaceAllUsesWith(NodeId from, NodeId to);
  // FailedPrecondition naming a user if the node still has users or is an output.
  absl::Status RemoveNode(NodeId id);
  // Removes nodes (other than inputs) that no output depends on; returns how many.
  int RemoveDeadNodes();

  // Re-runs validation and shape inference over the whole graph in topological order (after
  // rewiring). InvalidArgument naming the first node that fails, or a node on a cycle.
  absl::Status InferShapes();

  // A name not used yet: `base` itself if free, else base_1, base_2, ...
  std::string UniqueName(absl::string_view base) const;

  // One line per node in topological order, then `return (...)`. Parameters print their shape
  // only; annotated nodes are not marked (quant/quantization_annotation.h has a dump that is).
  std::string Dump() const;

 private:
  absl::StatusOr<NodeId> Insert(Node node);
  absl::Status InferNode(Node& node) const;

  std::vector<std::unique_ptr<Node>> nodes_;  // indexed by NodeId; null once removed
  absl::flat_hash_map<std::string, NodeId> by_name_;
  std::vector<NodeId> outputs_;
};

// Attributes printed as Dump() prints them ("stride=[1,1], padding=[1,1], ..."); empty if none.
std::string AttrsString(const Node& node);

// The type of the value on an edge.
struct ValueType {
  Shape shape;
  DType dtype = DType::kFloat32;
};

// The per-node half of shape inference, shared by the graph builders and the interpreter (which
// re-derives every shape from the tensors of each run, whose batch may differ from the build
// batch): validates `node`'s attributes against its inputs' types (one per node.inputs, in
// order) and returns its output type. InvalidArgument naming the node and the offending value.
// Graph-level rules (inputs exist, a dynamic dequantize reads a dynamic quantize) are checked by
// the Graph. kInput returns the recorded type, kParameter its tensor's.
absl::StatusOr<ValueType> InferOutputType(const Node& node, absl::Span<const ValueType> inputs);

}  // namespace qlab

#endif  // QLAB_QUANT_GRAPH_GRAPH_H_
