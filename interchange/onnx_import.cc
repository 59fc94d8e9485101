// ONNX import (see onnx_import.h). Three passes over the parsed ModelProto: (1) structure --
// opset, every value name defined once, initializers decoded with their sizes checked, every
// unsupported op listed, every node input defined, a topological order (or a node on a cycle);
// (2) each node, in that order, mapped onto qlab nodes through a table of "values" (an ONNX value
// name -> the qlab node computing it, or a decoded constant); (3) the graph outputs.
#include "interchange/onnx_import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <queue>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "onnx/onnx_pb.h"

namespace qlab {
namespace {

constexpr int64_t kMinOpset = 11;  // Slice and Pad take their bounds as inputs from 10 / 11 on
constexpr int64_t kMaxOpset = 17;  // 18 adds Pad's `axes` input (and reduces' axes inputs)
// A batch-axis Slice `end` at least this large means "to the end" (PyTorch writes INT64_MAX).
constexpr int64_t kToTheEnd = INT32_MAX;

template <typename... Args>
absl::Status Invalid(const Args&... parts) {
  return absl::InvalidArgumentError(absl::StrCat("ONNX import: ", parts...));
}

// `node "name" (Conv)`, or `node #3 (Conv, output "y")` for an unnamed node.
std::string Describe(const onnx::NodeProto& node, int index) {
  if (!node.name().empty())
    return absl::StrCat("node \"", node.name(), "\" (", node.op_type(), ")");
  return absl::StrCat(
      "node #", index, " (", node.op_type(),
      node.output_size() > 0 ? absl::StrCat(", output \"", node.output(0), "\"") : std::string(),
      ")");
}

// A decoded initializer or Constant: float32 as a Tensor, integers (int64 / int32) as int64s.
struct Constant {
  std::string name;
  std::vector<int64_t> dims;
  bool is_float = false;
  Tensor floats;
  std::vector<int64_t> ints;
};

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

// The element count of `dims`, checked: every dimension >= 0, the product within `limit`
// (computed without overflow, so dims whose product is 2^60 or wraps around are rejected here).
absl::StatusOr<int64_t> CheckedElements(const std::vector<int64_t>& dims, int64_t limit,
                                        absl::string_view what) {
  if (dims.size() > static_cast<size_t>(kMaxRank)) {
    return Invalid(what, " has rank ", dims.size(), " (at most ", kMaxRank, ")");
  }
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return Invalid(what, " has a negative dimension in ", DimsString(dims));
    if (d != 0 && n > limit / d) {
      return Invalid(what, " has dims ", DimsString(dims), ": more than ", limit,
                     " elements (ImportOptions::max_tensor_elements)");
    }
    n *= d;
  }
  return n;
}

absl::StatusOr<Constant> DecodeTensor(const onnx::TensorProto& t, absl::string_view what,
                                      int64_t limit) {
  if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0) {
    return Invalid(what,
                   " uses external data (data_location EXTERNAL); only self-contained "
                   "models are imported (onnx.load_model(..., load_external_data=True) then save "
                   "without it)");
  }
  if (t.has_segment()) return Invalid(what, " is segmented; not supported");
  Constant c;
  c.name = t.name();
  c.dims.assign(t.dims().begin(), t.dims().end());
  QLAB_ASSIGN_OR_RETURN(const int64_t n, CheckedElements(c.dims, limit, what));
  const size_t count = static_cast<size_t>(n);
  const auto size_error = [&](size_t got, absl::string_view field) {
    return Invalid(what, " has ", got, " ", field, " for dims ", DimsString(c.dims), " (", n,
                   " elements)");
  };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT: {
      c.is_float = true;
      // Sizes are compared before the tensor is allocated: the data present bounds the size.
      const bool raw = t.has_raw_data();
      if (raw && t.raw_data().size() != count * sizeof(float)) {
        return size_error(t.raw_data().size(), "bytes of raw_data");
      }
      if (!raw && static_cast<size_t>(t.float_data_size()) != count) {
        return size_error(static_cast<size_t>(t.float_data_size()), "float_data values");
      }
      Shape shape(c.dims.begin(), c.dims.end());
      QLAB_ASSIGN_OR_RETURN(c.floats, Tensor::Create(DType::kFloat32, shape));
      if (count == 0) return c;
      // x86-64 is little-endian, as ONNX's raw_data.
      if (raw) {
        std::memcpy(c.floats.raw_data(), t.raw_data().data(), count * sizeof(float));
      } else {
        std::copy(t.float_data().begin(), t.float_data().end(), c.floats.data<float>());
      }
      return c;
    }
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32: {
      const bool is64 = t.data_type() == onnx::TensorProto::INT64;
      const size_t width = is64 ? 8 : 4;
      const bool raw = t.has_raw_data();
      if (raw && t.raw_data().size() != count * width) {
        return size_error(t.raw_data().size(), "bytes of raw_data");
      }
      const size_t typed = is64 ? t.int64_data_size() : t.int32_data_size();
      if (!raw && typed != count) {
        return size_error(typed, is64 ? "int64_data values" : "int32_data values");
      }
      c.ints.resize(count);
      for (size_t i = 0; i < count; ++i) {
        if (raw && is64) {
          std::memcpy(&c.ints[i], t.raw_data().data() + 8 * i, 8);
        } else if (raw) {
          int32_t v;
          std::memcpy(&v, t.raw_data().data() + 4 * i, 4);
          c.ints[i] = v;
        } else {
          c.ints[i] = is64 ? t.int64_data(static_cast<int>(i)) : t.int32_data(static_cast<int>(i));
        }
      }
      return c;
    }
    default: {
      const std::string type_name =
          onnx::TensorProto_DataType_IsValid(t.data_type())
              ? onnx::TensorProto_DataType_Name(
                    static_cast<onnx::TensorProto_DataType>(t.data_type()))
              : absl::StrCat(t.data_type());
      return Invalid(what, " has data type ", type_name,
                     "; only FLOAT (weights) and INT64 / INT32 (shapes, bounds) are imported");
    }
  }
}

using Pair2 = std::array<int64_t, 2>;  // (height, width)
using Pads4 = std::array<int64_t, 4>;  // (top, left, bottom, right), ONNX's pads order for 2-D
constexpr Pair2 kOnes = {1, 1};

// What a value name stands for while nodes are converted.
struct Value {
  NodeId node = kNoNode;                     // computed by this qlab node, or
  std::shared_ptr<const Constant> constant;  // a constant (initializer / Constant node)
  // A zero Pad of H and W waiting to be folded into the Conv / pool that reads it (top, left,
  // bottom, right), `node` being the Pad's input.
  Pads4 pending_pad = {0, 0, 0, 0};
  bool has_pending_pad = false;
};

int64_t Product(const Shape& s, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < s.size(); ++i) p *= s[i];
  return p;
}

class Importer {
 public:
  Importer(const onnx::ModelProto& model, const ImportOptions& options)
      : model_(model), g_(model.graph()), options_(options) {}

  absl::StatusOr<Graph> Run() {
    QLAB_RETURN_IF_ERROR(CheckOpset());
    QLAB_RETURN_IF_ERROR(DefineValues());
    QLAB_RETURN_IF_ERROR(CheckOps());
    QLAB_RETURN_IF_ERROR(CheckInputsDefined());
    QLAB_ASSIGN_OR_RETURN(const std::vector<int> order, TopologicalOrder());
    QLAB_RETURN_IF_ERROR(AddGraphInputs());
    for (int i : order) {
      if (fused_.contains(i)) continue;
      QLAB_RETURN_IF_ERROR(ConvertNode(i));
    }
    return Finish();
  }

 private:
  // --- Pass 1: structure -----------------------------------------------------------------------
  absl::Status CheckOpset() {
    if (options_.batch < 1)
      return Invalid("ImportOptions::batch ", options_.batch, " must be >= 1");
    if (!model_.has_graph()) return Invalid("the model has no graph");
    bool found = false;
    for (const onnx::OperatorSetIdProto& o : model_.opset_import()) {
      if (o.domain().empty() || o.domain() == "ai.onnx") {
        opset_ = o.version();
        found = true;
      }
    }
    if (!found) return Invalid("the model imports no ai.onnx opset");
    if (opset_ < kMinOpset || opset_ > kMaxOpset) {
      return Invalid("the model uses opset ", opset_, "; import supports opsets ", kMinOpset, "..",
                     kMaxOpset,
                     opset_ < kMinOpset ? " (older opsets give Slice and Pad their bounds as "
                                          "attributes: re-export with opset_version >= 11)"
                                        : "");
    }
    return absl::OkStatus();
  }

  // Every value name is defined once: by an initializer, a graph input, or one node output.
  absl::Status DefineValues() {
    for (const onnx::TensorProto& t : g_.initializer()) {
      if (t.name().empty()) return Invalid("an initializer has no name");
      if (constants_.contains(t.name())) {
        return Invalid("initializer \"", t.name(), "\" is defined twice");
      }
      QLAB_ASSIGN_OR_RETURN(Constant c,
                            DecodeTensor(t, absl::StrCat("initializer \"", t.name(), "\""),
                                         options_.max_tensor_elements));
      constants_[t.name()] = std::make_shared<const Constant>(std::move(c));
      values_[t.name()].constant = constants_[t.name()];
      defined_by_[t.name()] = "an initializer";
    }
    if (g_.sparse_initializer_size() > 0) {
      return Invalid("sparse initializers (\"", g_.sparse_initializer(0).values().name(),
                     "\") are not supported");
    }
    for (const onnx::ValueInfoProto& in : g_.input()) {
      if (constants_.contains(in.name())) continue;  // IR < 4 lists initializers as inputs
      if (in.name().empty()) return Invalid("a graph input has no name");
      if (!defined_by_.emplace(in.name(), "a graph input").second) {
        return Invalid("graph input \"", in.name(), "\" is defined twice");
      }
    }
    for (int i = 0; i < g_.node_size(); ++i) {
      const onnx::NodeProto& n = g_.node(i);
      if (n.output_size() == 0) return Invalid(Describe(n, i), " has no outputs");
      for (const std::string& out : n.output()) {
        if (out.empty()) continue;  // an omitted optional output
        const auto [it, inserted] = defined_by_.emplace(out, Describe(n, i));
        if (!inserted) {
          return Invalid("duplicate value name \"", out, "\": output of ", Describe(n, i),
                         " and of ", it->second);
        }
        producer_[out] = i;
      }
      for (const std::string& in : n.input()) {
        if (!in.empty()) consumers_[in].push_back(i);
      }
    }
    return absl::OkStatus();
  }

  static bool Supported(const std::string& op) {
    static const auto* const kOps = new absl::flat_hash_set<std::string>{
        "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "MaxPool", "AveragePool",
        "GlobalAveragePool", "Add", "Flatten", "Reshape", "Concat", "Sigmoid", "Pad", "Slice",
        "Identity", "Dropout", "Constant",
        // Only on integer constants (the shape arithmetic PyTorch exports around Pad), folded.
        "ConstantOfShape", "Transpose", "Cast", "Unsqueeze", "Squeeze"};
    return kOps->contains(op);
  }

  // One error for all unsupported op types: "Foo (nodes "a", "b"), Bar (node "c")".
  absl::Status CheckOps() {
    std::map<std::string, std::vector<std::string>> unsupported;  // sorted for a stable message
    for (int i = 0; i < g_.node_size(); ++i) {
      const onnx::NodeProto& n = g_.node(i);
      const bool standard = n.domain().empty() || n.domain() == "ai.onnx";
      if (standard && Supported(n.op_type())) continue;
      const std::string type = standard ? n.op_type() : absl::StrCat(n.domain(), "::", n.op_type());
      unsupported[type].push_back(n.name().empty() ? absl::StrCat("#", i)
                                                   : absl::StrCat("\"", n.name(), "\""));
    }
    if (unsupported.empty()) return absl::OkStatus();
    std::vector<std::string> parts;
    for (const auto& [type, nodes] : unsupported) {
      parts.push_back(absl::StrCat(type, " (node", nodes.size() > 1 ? "s " : " ",
                                   absl::StrJoin(nodes, ", "), ")"));
    }
    return Invalid("unsupported op types: ", absl::StrJoin(parts, "; "));
  }

  absl::Status CheckInputsDefined() {
    std::vector<std::string> missing;
    for (int i = 0; i < g_.node_size(); ++i) {
      for (const std::string& in : g_.node(i).input()) {
        if (!in.empty() && !defined_by_.contains(in)) {
          missing.push_back(absl::StrCat(Describe(g_.node(i), i), " reads \"", in, "\""));
        }
      }
    }
    if (missing.empty()) return absl::OkStatus();
    return Invalid("inputs that no node, initializer or graph input defines: ",
                   absl::StrJoin(missing, "; "));
  }

  // Kahn's algorithm, ties broken by file order (so a sorted file keeps its order). A node left
  // over lies on, or downstream of, a cycle; walking back through left-over producers from it
  // reaches a node on the cycle, which the error names.
  absl::StatusOr<std::vector<int>> TopologicalOrder() const {
    const int count = g_.node_size();
    std::vector<int> pending(count, 0);
    std::vector<std::vector<int>> users(count);
    for (int i = 0; i < count; ++i) {
      for (const std::string& in : g_.node(i).input()) {
        const auto it = producer_.find(in);
        if (in.empty() || it == producer_.end()) continue;
        ++pending[i];
        users[it->second].push_back(i);
      }
    }
    std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
    for (int i = 0; i < count; ++i) {
      if (pending[i] == 0) ready.push(i);
    }
    std::vector<int> order;
    while (!ready.empty()) {
      const int i = ready.top();
      ready.pop();
      order.push_back(i);
      for (int u : users[i]) {
        if (--pending[u] == 0) ready.push(u);
      }
    }
    if (static_cast<int>(order.size()) == count) return order;
    int at = 0;
    while (pending[at] == 0) ++at;
    for (int step = 0; step < count; ++step) {  // `count` steps back must end on the cycle
      for (const std::string& in : g_.node(at).input()) {
        const auto it = producer_.find(in);
        if (!in.empty() && it != producer_.end() && pending[it->second] > 0) {
          at = it->second;
          break;
        }
      }
    }
    return Invalid("the graph has a cycle through ", Describe(g_.node(at), at),
                   ": it is not a DAG");
  }

  absl::Status AddGraphInputs() {
    bool first = true;
    for (const onnx::ValueInfoProto& in : g_.input()) {
      if (constants_.contains(in.name())) continue;
      const std::string what = absl::StrCat("graph input \"", in.name(), "\"");
      if (!in.type().has_tensor_type()) return Invalid(what, " is not a tensor");
      const onnx::TypeProto_Tensor& t = in.type().tensor_type();
      if (t.elem_type() != onnx::TensorProto::FLOAT) {
        return Invalid(what, " has element type ", t.elem_type(), "; only FLOAT inputs");
      }
      if (!t.has_shape() || t.shape().dim_size() == 0) {
        return Invalid(what, " has no shape (rank and non-batch dimensions are needed)");
      }
      Shape shape;
      for (int d = 0; d < t.shape().dim_size(); ++d) {
        const onnx::TensorShapeProto_Dimension& dim = t.shape().dim(d);
        if (d == 0) {
          const bool fixed = dim.has_dim_value();
          if (fixed && dim.dim_value() <= 0) {
            return Invalid(what, " has batch dimension ", dim.dim_value());
          }
          if (first) batch_static_ = fixed;
          shape.push_back(fixed ? dim.dim_value() : options_.batch);
          continue;
        }
        if (!dim.has_dim_value() || dim.dim_value() <= 0 || dim.dim_value() > INT32_MAX) {
          return Invalid(what, " dimension ", d, " is ",
                         dim.has_dim_value() ? absl::StrCat(dim.dim_value())
                                             : absl::StrCat("symbolic \"", dim.dim_param(), "\""),
                         "; only the batch (dimension 0) may be symbolic");
        }
        shape.push_back(dim.dim_value());
      }
      first = false;
      const absl::StatusOr<NodeId> id = graph_.AddInput(graph_.UniqueName(in.name()), shape);
      if (!id.ok()) return Invalid(what, ": ", id.status().message());
      values_[in.name()].node = *id;
    }
    return absl::OkStatus();
  }

  // --- Pass 2: nodes ---------------------------------------------------------------------------
  // Attribute accessors: a present attribute must have the expected type.
  const onnx::AttributeProto* FindAttr(const onnx::NodeProto& n, absl::string_view name) const {
    for (const onnx::AttributeProto& a : n.attribute()) {
      if (a.name() == name) return &a;
    }
    return nullptr;
  }
  absl::StatusOr<int64_t> IntAttr(const onnx::NodeProto& n, absl::string_view name,
                                  int64_t fallback) const {
    const onnx::AttributeProto* a = FindAttr(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::INT) return AttrTypeError(n, name, "INT");
    return a->i();
  }
  absl::StatusOr<float> FloatAttr(const onnx::NodeProto& n, absl::string_view name,
                                  float fallback) const {
    const onnx::AttributeProto* a = FindAttr(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::FLOAT) return AttrTypeError(n, name, "FLOAT");
    return a->f();
  }
  absl::StatusOr<std::string> StringAttr(const onnx::NodeProto& n, absl::string_view name,
                                         const std::string& fallback) const {
    const onnx::AttributeProto* a = FindAttr(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::STRING) return AttrTypeError(n, name, "STRING");
    return a->s();
  }
  absl::StatusOr<std::vector<int64_t>> IntsAttr(const onnx::NodeProto& n, absl::string_view name,
                                                std::vector<int64_t> fallback) const {
    const onnx::AttributeProto* a = FindAttr(n, name);
    if (a == nullptr) return fallback;
    if (a->type() != onnx::AttributeProto::INTS) return AttrTypeError(n, name, "INTS");
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  absl::Status AttrTypeError(const onnx::NodeProto& n, absl::string_view name,
                             absl::string_view want) const {
    return Invalid(Describe(n, index_), ": attribute \"", name, "\" must be ", want);
  }

  // Attributes this importer does not know could change the op's meaning: refuse them.
  absl::Status OnlyAttrs(const onnx::NodeProto& n,
                         std::initializer_list<absl::string_view> known) const {
    for (const onnx::AttributeProto& a : n.attribute()) {
      if (std::find(known.begin(), known.end(), a.name()) == known.end()) {
        return Invalid(Describe(n, index_), ": attribute \"", a.name(), "\" is not supported");
      }
    }
    return absl::OkStatus();
  }

  // Only output 0 may be used (optional outputs such as Dropout's mask or MaxPool's indices).
  absl::Status OnlyFirstOutput(const onnx::NodeProto& n) const {
    for (int o = 1; o < n.output_size(); ++o) {
      const std::string& name = n.output(o);
      if (name.empty()) continue;
      if (consumers_.contains(name) || IsGraphOutput(name)) {
        return Invalid(Describe(n, index_), ": output ", o, " (\"", name,
                       "\") is used; only the first output is supported (inference form)");
      }
    }
    return absl::OkStatus();
  }

  bool IsGraphOutput(const std::string& name) const {
    for (const onnx::ValueInfoProto& o : g_.output()) {
      if (o.name() == name) return true;
    }
    return false;
  }

  const Value* Lookup(const std::string& name) const {
    const auto it = values_.find(name);
    if (it != values_.end()) return &it->second;
    return nullptr;
  }

  // Input `i` of the current node, present or not.
  bool HasInput(const onnx::NodeProto& n, int i) const {
    return i < n.input_size() && !n.input(i).empty();
  }

  // Input `i` as a computed activation (a qlab node). A pending spatial pad is only accepted by
  // the ops that fold it (`pad` receives it).
  absl::StatusOr<NodeId> Activation(const onnx::NodeProto& n, int i, Pads4* pad = nullptr) const {
    if (!HasInput(n, i)) return Invalid(Describe(n, index_), ": input ", i, " is missing");
    const Value* v = Lookup(n.input(i));
    if (v == nullptr) return Invalid(Describe(n, index_), ": input \"", n.input(i), "\" undefined");
    if (v->node == kNoNode) {
      return Invalid(Describe(n, index_), ": input ", i, " (\"", n.input(i),
                     "\") is a constant; this op needs a computed tensor there");
    }
    if (v->has_pending_pad) {
      if (pad == nullptr) {
        return Invalid(Describe(n, index_), ": reads the spatial zero Pad \"", n.input(i),
                       "\", which only folds into a Conv, MaxPool or AveragePool reading it");
      }
      *pad = v->pending_pad;
    } else if (pad != nullptr) {
      *pad = {0, 0, 0, 0};
    }
    return v->node;
  }

  // Input `i` as a constant (initializer, Constant node, or Identity of one).
  absl::StatusOr<std::shared_ptr<const Constant>> ConstantInput(const onnx::NodeProto& n, int i,
                                                                absl::string_view role) const {
    if (!HasInput(n, i)) return Invalid(Describe(n, index_), ": ", role, " is missing");
    const Value* v = Lookup(n.input(i));
    if (v == nullptr || v->constant == nullptr) {
      return Invalid(Describe(n, index_), ": ", role, " (\"", n.input(i),
                     "\") must be an initializer or Constant");
    }
    return v->constant;
  }

  absl::StatusOr<std::vector<int64_t>> IntsInput(const onnx::NodeProto& n, int i,
                                                 absl::string_view role) const {
    QLAB_ASSIGN_OR_RETURN(std::shared_ptr<const Constant> c, ConstantInput(n, i, role));
    if (c->is_float || c->dims.size() > 1) {
      return Invalid(Describe(n, index_), ": ", role, " (\"", n.input(i),
                     "\") must be a 1-D INT64 / INT32 tensor");
    }
    return c->ints;
  }

  // Slice's constant inputs (opset >= 10 form), for a Slice of an activation and for one folded on
  // integer constants alike: starts, ends, then axes (default 0, 1, ...) and steps (default 1),
  // all of one length.
  struct SliceInputs {
    std::vector<int64_t> starts, ends, axes, steps;
  };
  absl::StatusOr<SliceInputs> ReadSliceInputs(const onnx::NodeProto& n) const {
    SliceInputs in;
    QLAB_ASSIGN_OR_RETURN(in.starts, IntsInput(n, 1, "starts"));
    QLAB_ASSIGN_OR_RETURN(in.ends, IntsInput(n, 2, "ends"));
    in.axes.resize(in.starts.size());
    for (size_t i = 0; i < in.axes.size(); ++i) in.axes[i] = static_cast<int64_t>(i);
    in.steps.assign(in.starts.size(), 1);
    if (HasInput(n, 3)) {
      QLAB_ASSIGN_OR_RETURN(in.axes, IntsInput(n, 3, "axes"));
    }
    if (HasInput(n, 4)) {
      QLAB_ASSIGN_OR_RETURN(in.steps, IntsInput(n, 4, "steps"));
    }
    if (in.ends.size() != in.starts.size() || in.axes.size() != in.starts.size() ||
        in.steps.size() != in.starts.size()) {
      return Invalid(Describe(n, index_), ": starts/ends/axes/steps have ", in.starts.size(), "/",
                     in.ends.size(), "/", in.axes.size(), "/", in.steps.size(), " entries");
    }
    return in;
  }

  // A float constant as a parameter node (one per value name; `transform` names a derived
  // version, e.g. a transposed weight).
  absl::StatusOr<NodeId> Parameter(const onnx::NodeProto& n, int i, absl::string_view role,
                                   int rank, bool transpose = false) {
    QLAB_ASSIGN_OR_RETURN(std::shared_ptr<const Constant> c, ConstantInput(n, i, role));
    if (!c->is_float || static_cast<int>(c->dims.size()) != rank) {
      return Invalid(Describe(n, index_), ": ", role, " (\"", n.input(i), "\") must be a FLOAT ",
                     rank, "-D tensor, got ", c->is_float ? "FLOAT " : "an integer tensor ",
                     DimsString(c->dims));
    }
    const std::string key = absl::StrCat(n.input(i), transpose ? "\n^T" : "");
    if (const auto it = parameters_.find(key); it != parameters_.end()) return it->second;
    Tensor value = c->floats;
    if (transpose) {
      const int64_t rows = c->dims[0], cols = c->dims[1];
      const Shape transposed = {cols, rows};
      QLAB_ASSIGN_OR_RETURN(value, Tensor::Create(DType::kFloat32, transposed));
      const float* src = c->floats.data<float>();
      float* dst = value.data<float>();
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t col = 0; col < cols; ++col) dst[col * rows + r] = src[r * cols + col];
      }
    }
    const std::string name =
        graph_.UniqueName(transpose ? absl::StrCat(n.input(i), ".T") : n.input(i));
    QLAB_ASSIGN_OR_RETURN(const NodeId id, graph_.AddParameter(name, std::move(value)));
    parameters_[key] = id;
    return id;
  }

  // A bias for `out` features: [out] or [1, out], as a rank-1 parameter.
  absl::StatusOr<NodeId> Bias(const onnx::NodeProto& n, int i, int64_t out) {
    QLAB_ASSIGN_OR_RETURN(std::shared_ptr<const Constant> c, ConstantInput(n, i, "bias"));
    const bool fits =
        c->is_float && ((c->dims.size() == 1 && c->dims[0] == out) ||
                        (c->dims.size() == 2 && c->dims[0] == 1 && c->dims[1] == out));
    if (!fits) {
      return Invalid(Describe(n, index_), ": bias (\"", n.input(i), "\") must be FLOAT [", out,
                     "] or [1,", out, "], got ", DimsString(c->dims),
                     " (other broadcasts have no qlab equivalent)");
    }
    if (c->dims.size() == 1) return Parameter(n, i, "bias", 1);
    const std::string key = absl::StrCat(n.input(i), "\n[out]");
    if (const auto it = parameters_.find(key); it != parameters_.end()) return it->second;
    QLAB_ASSIGN_OR_RETURN(Tensor flat, c->floats.Reshape({out}));
    QLAB_ASSIGN_OR_RETURN(const NodeId id,
                          graph_.AddParameter(graph_.UniqueName(n.input(i)), std::move(flat)));
    parameters_[key] = id;
    return id;
  }

  // Adds a qlab node for the current ONNX node's output 0, naming the ONNX node in errors.
  absl::StatusOr<NodeId> Emit(const onnx::NodeProto& n, OpKind op, std::vector<NodeId> inputs,
                              NodeAttrs attrs = {}, const std::string* output = nullptr) {
    const std::string& value = output != nullptr ? *output : n.output(0);
    const absl::StatusOr<NodeId> id =
        graph_.AddNode(op, graph_.UniqueName(value), std::move(inputs), std::move(attrs));
    if (!id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ONNX import: ", Describe(n, index_), ": ", id.status().message()));
    }
    values_[value].node = *id;
    return *id;
  }

  void Alias(const std::string& output, const Value& v) { values_[output] = v; }

  // ONNX pads [begin..., end...] for H, W (after auto_pad), for an input of spatial size `in`.
  absl::StatusOr<Pads4> SpatialPads(const onnx::NodeProto& n, const Pair2& in, const Pair2& kernel,
                                    const Pair2& stride, const Pair2& dilation) {
    QLAB_ASSIGN_OR_RETURN(const std::string auto_pad, StringAttr(n, "auto_pad", "NOTSET"));
    const std::vector<int64_t> no_pads(4, 0);
    QLAB_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, IntsAttr(n, "pads", no_pads));
    Pads4 p = {0, 0, 0, 0};
    if (auto_pad == "NOTSET") {
      if (pads.size() != 4) {
        return Invalid(Describe(n, index_), ": pads ", DimsString(pads), " must have 4 entries");
      }
      for (int i = 0; i < 4; ++i) {
        if (pads[i] < 0 || pads[i] > INT32_MAX) {
          return Invalid(Describe(n, index_), ": pads ", DimsString(pads), " out of range");
        }
        p[i] = pads[i];
      }
    } else if (auto_pad == "VALID") {
      // no padding
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      if (FindAttr(n, "pads") != nullptr) {
        return Invalid(Describe(n, index_), ": both auto_pad and pads are given");
      }
      for (int i = 0; i < 2; ++i) {
        const int64_t out = (in[i] + stride[i] - 1) / stride[i];
        const int64_t span = dilation[i] * (kernel[i] - 1) + 1;
        const int64_t total = std::max<int64_t>(0, (out - 1) * stride[i] + span - in[i]);
        const int64_t small = total / 2, large = total - small;
        p[i] = auto_pad == "SAME_UPPER" ? small : large;
        p[2 + i] = auto_pad == "SAME_UPPER" ? large : small;
      }
    } else {
      return Invalid(Describe(n, index_), ": auto_pad \"", auto_pad, "\" is not supported");
    }
    return p;
  }

  absl::Status ExpectSymmetric(const onnx::NodeProto& n, const Pads4& p,
                               absl::string_view what) const {
    if (p[0] != p[2] || p[1] != p[3]) {
      return Invalid(Describe(n, index_), ": ", what, " [", absl::StrJoin(p, ","),
                     "] (top, left, bottom, right) are asymmetric; qlab pads both sides equally");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Pair2> Pair(const onnx::NodeProto& n, absl::string_view name,
                             const Pair2& fallback, int64_t min) {
    const std::vector<int64_t> fallback_ints(fallback.begin(), fallback.end());
    QLAB_ASSIGN_OR_RETURN(const std::vector<int64_t> v, IntsAttr(n, name, fallback_ints));
    if (v.size() != 2 || v[0] < min || v[1] < min || v[0] > INT32_MAX || v[1] > INT32_MAX) {
      return Invalid(Describe(n, index_), ": ", name, " ", DimsString(v),
                     " must be two values >= ", min, " (2-D only)");
    }
    return Pair2{v[0], v[1]};
  }

  absl::Status ExpectRank(const onnx::NodeProto& n, NodeId x, size_t rank) const {
    if (graph_.node(x).shape.size() != rank) {
      return Invalid(Describe(n, index_), ": input has shape ", ShapeString(graph_.node(x).shape),
                     "; rank ", rank, " expected");
    }
    return absl::OkStatus();
  }

  absl::Status ConvertConv(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(
        OnlyAttrs(n, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}));
    Pads4 folded;
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0, &folded));
    QLAB_RETURN_IF_ERROR(ExpectRank(n, x, 4));
    QLAB_ASSIGN_OR_RETURN(const NodeId w, Parameter(n, 1, "weight", 4));
    const Shape& ws = graph_.node(w).shape;
    Conv2dAttrs a;
    QLAB_ASSIGN_OR_RETURN(a.stride, Pair(n, "strides", kOnes, 1));
    QLAB_ASSIGN_OR_RETURN(a.dilation, Pair(n, "dilations", kOnes, 1));
    QLAB_ASSIGN_OR_RETURN(a.groups, IntAttr(n, "group", 1));
    const Pair2 weight_kernel = {ws[2], ws[3]};
    QLAB_ASSIGN_OR_RETURN(const Pair2 kernel, Pair(n, "kernel_shape", weight_kernel, 1));
    if (kernel[0] != ws[2] || kernel[1] != ws[3]) {
      return Invalid(Describe(n, index_), ": kernel_shape [", kernel[0], ",", kernel[1],
                     "] differs from the weight's ", ShapeString(ws));
    }
    const Shape& xs = graph_.node(x).shape;
    const Pair2 in = {xs[2] + folded[0] + folded[2], xs[3] + folded[1] + folded[3]};
    QLAB_ASSIGN_OR_RETURN(Pads4 p, SpatialPads(n, in, kernel, a.stride, a.dilation));
    for (int i = 0; i < 4; ++i) p[i] += folded[i];
    QLAB_RETURN_IF_ERROR(ExpectSymmetric(n, p, "pads (with any folded Pad)"));
    a.padding = {p[0], p[1]};
    std::vector<NodeId> inputs = {x, w};
    if (HasInput(n, 2)) {
      QLAB_ASSIGN_OR_RETURN(const NodeId b, Parameter(n, 2, "bias", 1));
      inputs.push_back(b);
    }
    return Emit(n, OpKind::kConv2d, std::move(inputs), a).status();
  }

  // Input is never negative: a zero Pad in front of a max pool then changes no maximum.
  bool NonNegative(NodeId x) const {
    const OpKind op = graph_.node(x).op;
    return op == OpKind::kRelu || op == OpKind::kSigmoid;
  }

  absl::Status ConvertPool(const onnx::NodeProto& n, bool is_max) {
    if (is_max) {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"auto_pad", "ceil_mode", "dilations", "kernel_shape",
                                         "pads", "storage_order", "strides"}));
      QLAB_ASSIGN_OR_RETURN(const Pair2 dilation, Pair(n, "dilations", kOnes, 1));
      if (dilation[0] != 1 || dilation[1] != 1) {
        return Invalid(Describe(n, index_), ": dilations [", dilation[0], ",", dilation[1],
                       "] are not supported (qlab pools are undilated)");
      }
      QLAB_RETURN_IF_ERROR(OnlyFirstOutput(n));  // storage_order only affects the indices
    } else {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(
          n, {"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"}));
    }
    Pads4 folded;
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0, &folded));
    QLAB_RETURN_IF_ERROR(ExpectRank(n, x, 4));
    if (FindAttr(n, "kernel_shape") == nullptr) {
      return Invalid(Describe(n, index_), ": kernel_shape is required");
    }
    Pool2dAttrs a;
    QLAB_ASSIGN_OR_RETURN(a.kernel, Pair(n, "kernel_shape", kOnes, 1));
    QLAB_ASSIGN_OR_RETURN(a.stride, Pair(n, "strides", kOnes, 1));
    QLAB_ASSIGN_OR_RETURN(const int64_t ceil_mode, IntAttr(n, "ceil_mode", 0));
    a.ceil_mode = ceil_mode != 0;
    // ONNX's default count_include_pad is 0 (PyTorch's is true).
    QLAB_ASSIGN_OR_RETURN(const int64_t count_include_pad, IntAttr(n, "count_include_pad", 0));
    const Shape& xs = graph_.node(x).shape;
    const Pair2 in = {xs[2] + folded[0] + folded[2], xs[3] + folded[1] + folded[3]};
    QLAB_ASSIGN_OR_RETURN(const Pads4 own, SpatialPads(n, in, a.kernel, a.stride, kOnes));
    const bool has_folded = folded != Pads4{0, 0, 0, 0};
    const bool has_own = own != Pads4{0, 0, 0, 0};
    Pads4 p = own;
    for (int i = 0; i < 4; ++i) p[i] += folded[i];
    QLAB_RETURN_IF_ERROR(ExpectSymmetric(n, p, "pads (with any folded Pad)"));
    a.padding = {p[0], p[1]};
    if (is_max) {
      // A max pool pads with -inf, a Pad with zeros: equal only when no input is negative.
      if (has_folded && !NonNegative(x)) {
        return Invalid(Describe(n, index_), ": the zero Pad \"", n.input(0),
                       "\" in front cannot fold into a max pool whose input may be negative "
                       "(only a Relu's or Sigmoid's output)");
      }
    } else {
      // Explicit zeros count in the divisor like padding with count_include_pad; the pool's own
      // padding without count_include_pad cannot be mixed with them.
      if (has_folded && has_own && count_include_pad == 0) {
        return Invalid(Describe(n, index_),
                       ": a zero Pad in front of an average pool with its "
                       "own pads and count_include_pad=0 has no single qlab equivalent");
      }
      a.count_include_pad = has_folded || count_include_pad != 0;
    }
    // ONNX's output size on the (explicitly padded) input, to compare with qlab's.
    Pair2 want;
    for (int i = 0; i < 2; ++i) {
      const int64_t num = xs[2 + i] + 2 * a.padding[i] - a.kernel[i];
      if (num < 0) {
        return Invalid(Describe(n, index_), ": kernel ", a.kernel[i], " exceeds the padded input");
      }
      want[i] = (a.ceil_mode ? (num + a.stride[i] - 1) / a.stride[i] : num / a.stride[i]) + 1;
      // The last window hanging over the padded input (ceil mode): with count_include_pad its
      // divisor is the clipped window in PyTorch and qlab, the full kernel in the ONNX reference.
      const int64_t last_end = (want[i] - 1) * a.stride[i] + a.kernel[i];
      if (!is_max && a.count_include_pad && last_end > xs[2 + i] + 2 * a.padding[i]) {
        return Invalid(Describe(n, index_),
                       ": ceil_mode with count_include_pad lets the last "
                       "window hang over the padded input, where runtimes disagree on the divisor");
      }
    }
    QLAB_ASSIGN_OR_RETURN(const NodeId id,
                          Emit(n, is_max ? OpKind::kMaxPool2d : OpKind::kAvgPool2d, {x}, a));
    const Shape& got = graph_.node(id).shape;
    if (got[2] != want[0] || got[3] != want[1]) {
      return Invalid(Describe(n, index_), ": qlab's pool gives ", got[2], "x", got[3],
                     " where ONNX gives ", want[0], "x", want[1],
                     " (ceil_mode rules differ for this geometry)");
    }
    return absl::OkStatus();
  }

  absl::Status ConvertBatchNorm(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"epsilon", "momentum", "training_mode"}));
    QLAB_ASSIGN_OR_RETURN(const int64_t training, IntAttr(n, "training_mode", 0));
    if (training != 0) {
      return Invalid(Describe(n, index_), ": training_mode=1; only the inference form");
    }
    QLAB_RETURN_IF_ERROR(OnlyFirstOutput(n));
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    BatchNormAttrs a;
    QLAB_ASSIGN_OR_RETURN(a.eps, FloatAttr(n, "epsilon", 1e-5f));
    QLAB_ASSIGN_OR_RETURN(const float momentum, FloatAttr(n, "momentum", 0.9f));
    a.momentum = 1.0f - momentum;  // ONNX: running = running * m + batch * (1 - m)
    std::vector<NodeId> inputs = {x};
    static constexpr const char* kRoles[] = {"scale", "B", "input_mean", "input_var"};
    for (int i = 1; i <= 4; ++i) {
      QLAB_ASSIGN_OR_RETURN(const NodeId p, Parameter(n, i, kRoles[i - 1], 1));
      inputs.push_back(p);
    }
    return Emit(n, OpKind::kBatchNorm, std::move(inputs), a).status();
  }

  // The single consumer of `value` if it is an Add of a constant (MatMul + Add -> linear).
  int FusableBiasAdd(const std::string& value) const {
    if (IsGraphOutput(value)) return -1;
    const auto it = consumers_.find(value);
    if (it == consumers_.end() || it->second.size() != 1) return -1;
    const int add = it->second[0];
    const onnx::NodeProto& a = g_.node(add);
    if (a.op_type() != "Add" || a.input_size() != 2 || a.attribute_size() != 0) return -1;
    const std::string& other = a.input(0) == value ? a.input(1) : a.input(0);
    if (a.input(0) == a.input(1)) return -1;
    // The bias must be a constant already (initializers and Constant nodes before the MatMul).
    const Value* v = Lookup(other);
    return v != nullptr && v->constant != nullptr ? add : -1;
  }

  absl::Status ConvertLinear(const onnx::NodeProto& n, bool gemm) {
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    QLAB_RETURN_IF_ERROR(ExpectRank(n, x, 2));
    bool trans_b = false;
    if (gemm) {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"alpha", "beta", "transA", "transB"}));
      QLAB_ASSIGN_OR_RETURN(const float alpha, FloatAttr(n, "alpha", 1.0f));
      QLAB_ASSIGN_OR_RETURN(const float beta, FloatAttr(n, "beta", 1.0f));
      QLAB_ASSIGN_OR_RETURN(const int64_t trans_a, IntAttr(n, "transA", 0));
      QLAB_ASSIGN_OR_RETURN(const int64_t tb, IntAttr(n, "transB", 0));
      if (alpha != 1.0f || beta != 1.0f) {
        return Invalid(Describe(n, index_), ": alpha ", alpha, " and beta ", beta,
                       " must be 1 (qlab's linear has no scaling)");
      }
      if (trans_a != 0) return Invalid(Describe(n, index_), ": transA=1 is not supported");
      trans_b = tb != 0;
    } else {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {}));
    }
    // qlab's weight is [out, in]: Gemm's B with transB=1 as is; [in, out] (MatMul, transB=0)
    // transposed once here.
    QLAB_ASSIGN_OR_RETURN(const NodeId w, Parameter(n, 1, "weight", 2, /*transpose=*/!trans_b));
    const int64_t out = graph_.node(w).shape[0];
    std::vector<NodeId> inputs = {x, w};
    const std::string* output = nullptr;
    if (gemm && HasInput(n, 2)) {
      QLAB_ASSIGN_OR_RETURN(const NodeId b, Bias(n, 2, out));
      inputs.push_back(b);
    }
    if (!gemm) {
      const int add = FusableBiasAdd(n.output(0));
      if (add >= 0) {
        const onnx::NodeProto& a = g_.node(add);
        const int bias_index = a.input(0) == n.output(0) ? 1 : 0;
        const int saved = index_;
        index_ = add;  // errors about the bias name the Add
        const absl::StatusOr<NodeId> b = Bias(a, bias_index, out);
        index_ = saved;
        QLAB_RETURN_IF_ERROR(b.status());
        inputs.push_back(*b);
        fused_.insert(add);
        output = &a.output(0);
      }
    }
    return Emit(n, OpKind::kLinear, std::move(inputs), {}, output).status();
  }

  absl::Status ConvertFlatten(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"axis"}));
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    const int64_t rank = static_cast<int64_t>(graph_.node(x).shape.size());
    QLAB_ASSIGN_OR_RETURN(int64_t axis, IntAttr(n, "axis", 1));
    if (axis < 0) axis += rank;
    if (axis != 1) {
      return Invalid(Describe(n, index_), ": axis ", axis,
                     " (only 1: the batch stays, the rest flattens)");
    }
    return Emit(n, OpKind::kFlatten, {x}, FlattenAttrs{1}).status();
  }

  // Reshape to [N, features] keeping the batch is flatten(start_dim=1); nothing else is.
  absl::Status ConvertReshape(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"allowzero"}));
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    QLAB_ASSIGN_OR_RETURN(const std::vector<int64_t> target, IntsInput(n, 1, "shape"));
    QLAB_ASSIGN_OR_RETURN(const int64_t allow_zero, IntAttr(n, "allowzero", 0));
    const Shape& s = graph_.node(x).shape;
    const int64_t features = Product(s, 1);
    const bool keeps_batch =
        target.size() == 2 && s.size() >= 2 &&
        ((target[0] == 0 && allow_zero == 0) || (target[0] == -1 && target[1] == features) ||
         (batch_static_ && target[0] == s[0])) &&
        (target[1] == -1 || target[1] == features ||
         (target[1] == 0 && allow_zero == 0 && s[1] == features));
    if (!keeps_batch) {
      return Invalid(Describe(n, index_), ": reshape of ", ShapeString(s), " to ",
                     DimsString(target), " is not a flatten to [N, ", features,
                     "] (only that keeps the batch free)");
    }
    if (s.size() == 2) {
      Alias(n.output(0), *Lookup(n.input(0)));
      return absl::OkStatus();
    }
    return Emit(n, OpKind::kFlatten, {x}, FlattenAttrs{1}).status();
  }

  absl::Status ConvertConcat(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"axis"}));
    if (FindAttr(n, "axis") == nullptr) return Invalid(Describe(n, index_), ": axis is required");
    QLAB_ASSIGN_OR_RETURN(int64_t axis, IntAttr(n, "axis", 1));
    std::vector<NodeId> inputs;
    for (int i = 0; i < n.input_size(); ++i) {
      QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, i));
      inputs.push_back(x);
    }
    if (inputs.empty()) return Invalid(Describe(n, index_), ": no inputs");
    const int64_t rank = static_cast<int64_t>(graph_.node(inputs[0]).shape.size());
    if (axis < 0) axis += rank;
    return Emit(n, OpKind::kCat, std::move(inputs), CatAttrs{axis}).status();
  }

  absl::Status ConvertSlice(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {}));
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    const Shape& s = graph_.node(x).shape;
    const int64_t rank = static_cast<int64_t>(s.size());
    QLAB_ASSIGN_OR_RETURN(const SliceInputs slice, ReadSliceInputs(n));
    const std::vector<int64_t>& starts = slice.starts;
    const std::vector<int64_t>& ends = slice.ends;
    const std::vector<int64_t>& axes = slice.axes;
    const std::vector<int64_t>& steps = slice.steps;
    constexpr int64_t kAll = std::numeric_limits<int64_t>::max();
    StridedSliceAttrs a{std::vector<int64_t>(rank, 0), std::vector<int64_t>(rank, kAll),
                        std::vector<int64_t>(rank, 1)};
    std::vector<bool> seen(rank, false);
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (axis < 0 || axis >= rank || seen[axis]) {
        return Invalid(Describe(n, index_), ": axis ", axes[i], " is out of range or repeated for ",
                       ShapeString(s));
      }
      seen[axis] = true;
      if (steps[i] <= 0) {
        return Invalid(Describe(n, index_), ": step ", steps[i], " on axis ", axis,
                       " (only positive steps)");
      }
      const int64_t dim = s[axis];
      // ONNX: negative starts / ends count from the end; both are clamped to [0, dim].
      const auto resolve = [dim](int64_t v) {
        if (v < 0) v = v < -dim ? 0 : v + dim;
        return v;
      };
      const int64_t begin = std::min(resolve(starts[i]), dim);
      const int64_t end = resolve(ends[i]);  // qlab clamps `end` itself (and per run's batch)
      if (axis == 0) {
        const bool whole =
            begin == 0 && steps[i] == 1 && (end >= kToTheEnd || (batch_static_ && end >= dim));
        if (!whole) {
          return Invalid(Describe(n, index_),
                         ": slices the batch axis; only the other axes may be sliced");
        }
        continue;
      }
      if (begin >= std::min(end, dim)) {
        return Invalid(Describe(n, index_), ": axis ", axis, " slice ", starts[i], ":", ends[i],
                       " of ", ShapeString(s), " is empty");
      }
      a.begin[axis] = begin;
      a.end[axis] = end;
      // A step beyond the axis length takes the first element only, as a step of the axis
      // length does; clamped, later shape arithmetic cannot overflow on steps near INT64_MAX.
      a.step[axis] = std::min(steps[i], dim);
    }
    return Emit(n, OpKind::kStridedSlice, {x}, a).status();
  }

  absl::Status ConvertPad(const onnx::NodeProto& n) {
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"mode"}));
    QLAB_ASSIGN_OR_RETURN(const std::string mode, StringAttr(n, "mode", "constant"));
    if (mode != "constant") {
      return Invalid(Describe(n, index_), ": mode \"", mode, "\" (only constant zeros)");
    }
    QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
    const Shape& s = graph_.node(x).shape;
    const size_t rank = s.size();
    QLAB_ASSIGN_OR_RETURN(const std::vector<int64_t> pads, IntsInput(n, 1, "pads"));
    if (pads.size() != 2 * rank) {
      return Invalid(Describe(n, index_), ": pads ", DimsString(pads), " need ", 2 * rank,
                     " entries for ", ShapeString(s));
    }
    if (HasInput(n, 2)) {
      QLAB_ASSIGN_OR_RETURN(std::shared_ptr<const Constant> value,
                            ConstantInput(n, 2, "constant_value"));
      const bool zero = value->is_float
                            ? (value->floats.numel() == 1 && value->floats.data<float>()[0] == 0.0f)
                            : (value->ints.size() == 1 && value->ints[0] == 0);
      if (!zero) {
        return Invalid(Describe(n, index_), ": constant_value must be 0 (qlab pads with zeros)");
      }
    }
    bool channels = false, spatial = false;
    for (size_t d = 0; d < rank; ++d) {
      const int64_t before = pads[d], after = pads[rank + d];
      if (before < 0 || after < 0 || before > INT32_MAX || after > INT32_MAX) {
        return Invalid(Describe(n, index_), ": pads ", DimsString(pads),
                       " out of range (negative pads crop)");
      }
      if (before == 0 && after == 0) continue;
      if (d == 0) return Invalid(Describe(n, index_), ": pads the batch axis");
      (d == 1 ? channels : spatial) = true;
    }
    if (channels && spatial) {
      return Invalid(Describe(n, index_), ": pads channels and spatial axes at once");
    }
    if (channels) {
      return Emit(n, OpKind::kChannelPad, {x}, ChannelPadAttrs{pads[1], pads[rank + 1]}).status();
    }
    if (!spatial) {
      Alias(n.output(0), *Lookup(n.input(0)));
      return absl::OkStatus();
    }
    if (rank != 4) {
      return Invalid(Describe(n, index_), ": spatial padding of rank ", rank, " ", ShapeString(s));
    }
    // Zero padding of H and W: exact only inside the padding of the op reading it.
    if (IsGraphOutput(n.output(0))) {
      return Invalid(Describe(n, index_), ": spatial zero Pad as a graph output");
    }
    const auto it = consumers_.find(n.output(0));
    if (it != consumers_.end()) {
      for (int c : it->second) {
        const onnx::NodeProto& user = g_.node(c);
        const bool folds = (user.op_type() == "Conv" || user.op_type() == "MaxPool" ||
                            user.op_type() == "AveragePool") &&
                           user.input(0) == n.output(0);
        if (!folds) {
          return Invalid(Describe(n, index_), ": spatial zero Pad read by ", Describe(user, c),
                         "; qlab has no spatial pad op, it folds only into a Conv, MaxPool or "
                         "AveragePool's padding");
        }
      }
    }
    Value v;
    v.node = x;
    v.has_pending_pad = true;
    v.pending_pad = {pads[2], pads[3], pads[rank + 2], pads[rank + 3]};
    Alias(n.output(0), v);
    return absl::OkStatus();
  }

  absl::Status ConvertConstant(const onnx::NodeProto& n) {
    if (n.attribute_size() != 1) {
      return Invalid(Describe(n, index_), ": needs exactly one value attribute");
    }
    const onnx::AttributeProto& a = n.attribute(0);
    const std::string what = absl::StrCat(Describe(n, index_), " value");
    Constant c;
    if (a.name() == "value" && a.type() == onnx::AttributeProto::TENSOR) {
      QLAB_ASSIGN_OR_RETURN(c, DecodeTensor(a.t(), what, options_.max_tensor_elements));
    } else if (a.name() == "value_int" && a.type() == onnx::AttributeProto::INT) {
      c.ints = {a.i()};
    } else if (a.name() == "value_ints" && a.type() == onnx::AttributeProto::INTS) {
      c.ints.assign(a.ints().begin(), a.ints().end());
      c.dims = {static_cast<int64_t>(c.ints.size())};
    } else if (a.name() == "value_float" && a.type() == onnx::AttributeProto::FLOAT) {
      c.is_float = true;
      QLAB_ASSIGN_OR_RETURN(c.floats, Tensor::Create(DType::kFloat32, Shape()));
      c.floats.data<float>()[0] = a.f();
    } else {
      return Invalid(Describe(n, index_), ": attribute \"", a.name(), "\" is not supported");
    }
    c.name = n.output(0);
    values_[n.output(0)].constant = std::make_shared<const Constant>(std::move(c));
    return absl::OkStatus();
  }

  // Identity / Dropout: the output is the input (a node or a constant).
  absl::Status ConvertPassThrough(const onnx::NodeProto& n, bool dropout) {
    if (dropout) {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"seed", "ratio"}));
      QLAB_RETURN_IF_ERROR(OnlyFirstOutput(n));
      if (HasInput(n, 2)) {
        QLAB_ASSIGN_OR_RETURN(std::shared_ptr<const Constant> t,
                              ConstantInput(n, 2, "training_mode"));
        const bool off = !t->is_float && t->ints.size() == 1 && t->ints[0] == 0;
        if (!off) return Invalid(Describe(n, index_), ": training_mode must be a constant false");
      }
    } else {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {}));
    }
    if (!HasInput(n, 0)) return Invalid(Describe(n, index_), ": input 0 is missing");
    const Value* v = Lookup(n.input(0));
    if (v == nullptr) return Invalid(Describe(n, index_), ": input undefined");
    Alias(n.output(0), *v);
    return absl::OkStatus();
  }

  // --- Integer constant folding ----------------------------------------------------------------
  // PyTorch exports F.pad's widths as a small integer computation (ConstantOfShape, Concat,
  // Reshape, Slice with step -1, Transpose, Cast). Nodes whose inputs are all integer constants
  // are evaluated here, exactly (integers), so that the Pad reads a constant.
  static constexpr int64_t kMaxFoldedElements = int64_t{1} << 20;  // shape arithmetic is tiny

  static bool IsFoldOnly(const std::string& op) {
    return op == "ConstantOfShape" || op == "Transpose" || op == "Cast" || op == "Unsqueeze" ||
           op == "Squeeze";
  }

  // True when every present input is an integer constant (and there is at least one).
  bool AllIntegerConstants(const onnx::NodeProto& n) const {
    int present = 0;
    for (const std::string& in : n.input()) {
      if (in.empty()) continue;
      const Value* v = Lookup(in);
      if (v == nullptr || v->constant == nullptr || v->constant->is_float) return false;
      ++present;
    }
    return present > 0;
  }

  static std::vector<int64_t> Strides(const std::vector<int64_t>& dims) {
    std::vector<int64_t> strides(dims.size(), 1);
    for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i) {
      strides[i] = strides[i + 1] * dims[i + 1];
    }
    return strides;
  }

  absl::StatusOr<int64_t> Axis(const onnx::NodeProto& n, int64_t axis, size_t rank) const {
    const int64_t r = static_cast<int64_t>(rank);
    if (axis < -r || axis >= r) {
      return Invalid(Describe(n, index_), ": axis ", axis, " out of range for rank ", rank);
    }
    return axis < 0 ? axis + r : axis;
  }

  absl::StatusOr<Constant> FoldInts(const onnx::NodeProto& n) {
    const std::string& op = n.op_type();
    std::vector<std::shared_ptr<const Constant>> in;
    for (const std::string& name : n.input()) {
      in.push_back(name.empty() ? nullptr : Lookup(name)->constant);
    }
    // The data input (every input, for Concat) is required; trailing ones may be omitted.
    if (in.empty() || in[0] == nullptr ||
        (op == "Concat" && std::find(in.begin(), in.end(), nullptr) != in.end())) {
      return Invalid(Describe(n, index_), ": a required input is missing");
    }
    Constant out;
    const std::string what = absl::StrCat(Describe(n, index_), " output");
    if (op == "ConstantOfShape") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"value"}));
      out.dims = in[0]->ints;
      QLAB_ASSIGN_OR_RETURN(const int64_t count,
                            CheckedElements(out.dims, kMaxFoldedElements, what));
      const onnx::AttributeProto* value = FindAttr(n, "value");
      if (value != nullptr && value->type() == onnx::AttributeProto::TENSOR &&
          value->t().data_type() != onnx::TensorProto::FLOAT) {
        QLAB_ASSIGN_OR_RETURN(const Constant v, DecodeTensor(value->t(), what, 1));
        if (v.ints.size() != 1) return Invalid(what, ": value must hold one element");
        out.ints.assign(count, v.ints[0]);
        return out;
      }
      return Invalid(Describe(n, index_), ": only an integer fill value is supported");
    }
    if (op == "Cast") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"to"}));
      QLAB_ASSIGN_OR_RETURN(const int64_t to, IntAttr(n, "to", 0));
      out = *in[0];
      if (to == onnx::TensorProto::INT32) {
        for (int64_t& v : out.ints) v = static_cast<int32_t>(v);
      } else if (to != onnx::TensorProto::INT64) {
        return Invalid(Describe(n, index_), ": cast of an integer constant to type ", to,
                       " (only INT64 / INT32)");
      }
      return out;
    }
    if (op == "Concat") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"axis"}));
      QLAB_ASSIGN_OR_RETURN(const int64_t raw_axis, IntAttr(n, "axis", 0));
      const std::vector<int64_t>& first = in[0]->dims;
      QLAB_ASSIGN_OR_RETURN(const int64_t axis, Axis(n, raw_axis, first.size()));
      out.dims = first;
      out.dims[axis] = 0;
      for (const auto& c : in) {
        bool fits = c != nullptr && c->dims.size() == first.size();
        for (size_t d = 0; fits && d < first.size(); ++d) {
          fits = static_cast<int64_t>(d) == axis || c->dims[d] == first[d];
        }
        if (!fits) return Invalid(Describe(n, index_), ": inputs do not match outside the axis");
        out.dims[axis] += c->dims[axis];
      }
      QLAB_RETURN_IF_ERROR(CheckedElements(out.dims, kMaxFoldedElements, what).status());
      int64_t outer = 1;
      for (int64_t d = 0; d < axis; ++d) outer *= first[d];
      for (int64_t o = 0; o < outer; ++o) {
        for (const auto& c : in) {
          const int64_t block = static_cast<int64_t>(c->ints.size()) / std::max<int64_t>(outer, 1);
          out.ints.insert(out.ints.end(), c->ints.begin() + o * block,
                          c->ints.begin() + (o + 1) * block);
        }
      }
      return out;
    }
    if (op == "Reshape") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"allowzero"}));
      if (in.size() < 2 || in[1] == nullptr) return Invalid(Describe(n, index_), ": no shape");
      QLAB_ASSIGN_OR_RETURN(const int64_t allow_zero, IntAttr(n, "allowzero", 0));
      out.ints = in[0]->ints;
      const int64_t total = static_cast<int64_t>(out.ints.size());
      int64_t known = 1, infer = -1;
      for (size_t d = 0; d < in[1]->ints.size(); ++d) {
        int64_t v = in[1]->ints[d];
        if (v == 0 && allow_zero == 0) {
          if (d >= in[0]->dims.size()) return Invalid(Describe(n, index_), ": bad 0 in shape");
          v = in[0]->dims[d];
        }
        if (v == -1) {
          if (infer >= 0) return Invalid(Describe(n, index_), ": two -1 in shape");
          infer = static_cast<int64_t>(d);
        } else if (v < 0) {
          return Invalid(Describe(n, index_), ": negative dimension in shape");
        } else {
          if (v > kMaxFoldedElements) return Invalid(Describe(n, index_), ": shape too large");
          known *= v;
          if (known > kMaxFoldedElements) return Invalid(Describe(n, index_), ": shape too large");
        }
        out.dims.push_back(v);
      }
      if (infer >= 0) {
        if (known == 0 || total % known != 0) {
          return Invalid(Describe(n, index_), ": cannot infer -1 in the shape");
        }
        out.dims[infer] = total / known;
        known = total;
      }
      if (known != total) return Invalid(Describe(n, index_), ": element count changes");
      return out;
    }
    if (op == "Transpose") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"perm"}));
      const size_t rank = in[0]->dims.size();
      std::vector<int64_t> reversed(rank);
      for (size_t d = 0; d < rank; ++d) reversed[d] = static_cast<int64_t>(rank - 1 - d);
      QLAB_ASSIGN_OR_RETURN(const std::vector<int64_t> perm, IntsAttr(n, "perm", reversed));
      std::vector<bool> seen(rank, false);
      if (perm.size() != rank) return Invalid(Describe(n, index_), ": perm has a wrong size");
      for (int64_t p : perm) {
        if (p < 0 || p >= static_cast<int64_t>(rank) || seen[p]) {
          return Invalid(Describe(n, index_), ": perm is not a permutation");
        }
        seen[p] = true;
      }
      const std::vector<int64_t> in_strides = Strides(in[0]->dims);
      for (int64_t p : perm) out.dims.push_back(in[0]->dims[p]);
      std::vector<int64_t> step(rank);
      for (size_t d = 0; d < rank; ++d) step[d] = in_strides[perm[d]];
      return Gather(*in[0], out, std::vector<int64_t>(rank, 0), step);
    }
    if (op == "Slice") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {}));
      const Constant& data = *in[0];
      const size_t rank = data.dims.size();
      QLAB_ASSIGN_OR_RETURN(const SliceInputs slice, ReadSliceInputs(n));
      const std::vector<int64_t>& starts = slice.starts;
      const std::vector<int64_t>& ends = slice.ends;
      const std::vector<int64_t>& axes = slice.axes;
      const std::vector<int64_t>& steps = slice.steps;
      std::vector<int64_t> begin(rank, 0), step(rank, 1);
      out.dims = data.dims;
      for (size_t i = 0; i < starts.size(); ++i) {
        QLAB_ASSIGN_OR_RETURN(const int64_t axis, Axis(n, axes[i], rank));
        const int64_t dim = data.dims[axis];
        if (steps[i] == 0) return Invalid(Describe(n, index_), ": step 0");
        if (dim == 0) continue;  // an empty axis stays empty
        // A step longer than the axis selects at most one element, as a step of exactly the
        // axis length does; clamping keeps the count and offset arithmetic below from
        // overflowing on hostile steps such as INT64_MAX or INT64_MIN.
        const int64_t st = std::clamp(steps[i], -dim, dim);
        // ONNX Slice: negatives count from the end, then clamp ([0, dim] forwards,
        // [-1, dim - 1] backwards).
        const auto resolve = [dim](int64_t v, int64_t lo, int64_t hi) {
          if (v < 0) v = v < -dim ? -dim - 1 : v + dim;  // stays below lo when far out
          return std::clamp(v, lo, hi);
        };
        const int64_t b = st > 0 ? resolve(starts[i], 0, dim) : resolve(starts[i], 0, dim - 1);
        const int64_t e = st > 0 ? resolve(ends[i], 0, dim) : resolve(ends[i], -1, dim - 1);
        const int64_t count =
            st > 0 ? (e > b ? (e - b + st - 1) / st : 0) : (b > e ? (b - e - st - 1) / -st : 0);
        begin[axis] = b;
        step[axis] = st;
        out.dims[axis] = count;
      }
      const std::vector<int64_t> in_strides = Strides(data.dims);
      std::vector<int64_t> offset_step(rank);
      int64_t base = 0;
      for (size_t d = 0; d < rank; ++d) {
        offset_step[d] = step[d] * in_strides[d];
        base += begin[d] * in_strides[d];
      }
      return Gather(data, out, {base}, offset_step);
    }
    if (op == "Unsqueeze" || op == "Squeeze") {
      QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {"axes"}));  // an attribute before opset 13
      out = *in[0];
      QLAB_ASSIGN_OR_RETURN(std::vector<int64_t> axes, IntsAttr(n, "axes", {}));
      if (HasInput(n, 1)) {
        QLAB_ASSIGN_OR_RETURN(axes, IntsInput(n, 1, "axes"));
      }
      if (op == "Unsqueeze") {
        const size_t rank = out.dims.size() + axes.size();
        std::vector<bool> inserted(rank, false);
        for (int64_t a : axes) {
          QLAB_ASSIGN_OR_RETURN(const int64_t axis, Axis(n, a, rank));
          if (inserted[axis]) return Invalid(Describe(n, index_), ": repeated axis ", a);
          inserted[axis] = true;
        }
        std::vector<int64_t> dims;
        size_t next = 0;
        for (size_t d = 0; d < rank; ++d) {
          dims.push_back(inserted[d] ? 1 : out.dims[next++]);
        }
        out.dims = dims;
      } else {
        std::vector<int64_t> dims;
        for (size_t d = 0; d < out.dims.size(); ++d) {
          bool drop = axes.empty() && out.dims[d] == 1;
          for (int64_t a : axes) {
            QLAB_ASSIGN_OR_RETURN(const int64_t axis, Axis(n, a, out.dims.size()));
            drop = drop || axis == static_cast<int64_t>(d);
          }
          if (drop && out.dims[d] != 1) {
            return Invalid(Describe(n, index_), ": squeezes axis ", d, " of size ", out.dims[d]);
          }
          if (!drop) dims.push_back(out.dims[d]);
        }
        out.dims = dims;
      }
      return out;
    }
    return Invalid(Describe(n, index_), ": cannot fold");
  }

  // out.ints[i] = data.ints[base[0] + sum_d index_d * offset_step[d]] over out.dims (row-major).
  // Folding is fed by hostile files: the output size is checked before anything is reserved,
  // and every read against the data actually held (found by the onnx_import fuzzer: a mutated
  // Slice / Reshape chain reached here with dims whose product wrapped around).
  absl::StatusOr<Constant> Gather(const Constant& data, Constant out,
                                  const std::vector<int64_t>& base,
                                  const std::vector<int64_t>& offset_step) const {
    const std::string what = absl::StrCat(Describe(g_.node(index_), index_), " output");
    QLAB_ASSIGN_OR_RETURN(const int64_t total, CheckedElements(out.dims, kMaxFoldedElements, what));
    const size_t rank = out.dims.size();
    std::vector<int64_t> index(rank, 0);
    out.ints.clear();
    out.ints.reserve(static_cast<size_t>(total));
    const int64_t start = base.empty() ? 0 : base[0];
    for (int64_t i = 0; i < total; ++i) {
      int64_t offset = start;
      for (size_t d = 0; d < rank; ++d) offset += index[d] * offset_step[d];
      if (offset < 0 || offset >= static_cast<int64_t>(data.ints.size())) {
        return Invalid(what, " reads element ", offset, " of an input holding ", data.ints.size(),
                       " (dims ", DimsString(data.dims), ")");
      }
      out.ints.push_back(data.ints[static_cast<size_t>(offset)]);
      for (int d = static_cast<int>(rank) - 1; d >= 0; --d) {
        if (++index[d] < out.dims[d]) break;
        index[d] = 0;
      }
    }
    return out;
  }

  absl::Status ConvertNode(int i) {
    index_ = i;
    const onnx::NodeProto& n = g_.node(i);
    const std::string& op = n.op_type();
    if (op != "Constant" && op != "Identity" && AllIntegerConstants(n)) {
      QLAB_ASSIGN_OR_RETURN(Constant c, FoldInts(n));
      c.name = n.output(0);
      values_[n.output(0)].constant = std::make_shared<const Constant>(std::move(c));
      return absl::OkStatus();
    }
    if (IsFoldOnly(op)) {
      return Invalid(Describe(n, i), ": supported only on integer constants (shape arithmetic)");
    }
    if (op == "Constant") return ConvertConstant(n);
    if (op == "Identity") return ConvertPassThrough(n, false);
    if (op == "Dropout") return ConvertPassThrough(n, true);
    if (op == "Conv") return ConvertConv(n);
    if (op == "Gemm") return ConvertLinear(n, true);
    if (op == "MatMul") return ConvertLinear(n, false);
    if (op == "BatchNormalization") return ConvertBatchNorm(n);
    if (op == "MaxPool") return ConvertPool(n, true);
    if (op == "AveragePool") return ConvertPool(n, false);
    if (op == "Flatten") return ConvertFlatten(n);
    if (op == "Reshape") return ConvertReshape(n);
    if (op == "Concat") return ConvertConcat(n);
    if (op == "Slice") return ConvertSlice(n);
    if (op == "Pad") return ConvertPad(n);
    QLAB_RETURN_IF_ERROR(OnlyAttrs(n, {}));
    if (op == "Relu" || op == "Sigmoid" || op == "GlobalAveragePool") {
      QLAB_ASSIGN_OR_RETURN(const NodeId x, Activation(n, 0));
      if (op == "Relu") return Emit(n, OpKind::kRelu, {x}).status();
      if (op == "Sigmoid") return Emit(n, OpKind::kSigmoid, {x}).status();
      QLAB_RETURN_IF_ERROR(ExpectRank(n, x, 4));
      return Emit(n, OpKind::kAdaptiveAvgPool2d, {x}, AdaptiveAvgPool2dAttrs{{1, 1}}).status();
    }
    if (op == "Add") {
      // Both operands computed, same shape (qlab's add does not broadcast; a bias Add after a
      // MatMul was folded into the linear).
      QLAB_ASSIGN_OR_RETURN(const NodeId a, Activation(n, 0));
      QLAB_ASSIGN_OR_RETURN(const NodeId b, Activation(n, 1));
      return Emit(n, OpKind::kAdd, {a, b}).status();
    }
    return Invalid(Describe(n, i), ": op type not handled");  // CheckOps lets only the above in
  }

  // --- Pass 3: outputs -------------------------------------------------------------------------
  absl::StatusOr<Graph> Finish() {
    if (g_.output_size() == 0) return Invalid("the graph has no outputs");
    std::vector<NodeId> outputs;
    for (const onnx::ValueInfoProto& o : g_.output()) {
      if (!defined_by_.contains(o.name())) {
        return Invalid("graph output \"", o.name(), "\" is not produced by any node");
      }
      const Value* v = Lookup(o.name());
      if (v == nullptr || v->node == kNoNode) {
        return Invalid("graph output \"", o.name(), "\" is a constant, not a computed tensor");
      }
      outputs.push_back(v->node);
    }
    QLAB_RETURN_IF_ERROR(graph_.SetOutputs(std::move(outputs)));
    graph_.RemoveDeadNodes();
    return std::move(graph_);
  }

  const onnx::ModelProto& model_;
  const onnx::GraphProto& g_;
  const ImportOptions& options_;
  int64_t opset_ = 0;
  bool batch_static_ = false;  // the (first) graph input has a numeric batch dimension
  int index_ = 0;              // the ONNX node being converted (for messages)

  absl::flat_hash_map<std::string, std::shared_ptr<const Constant>> constants_;  // initializers
  absl::flat_hash_map<std::string, std::string> defined_by_;  // value -> what defines it
  absl::flat_hash_map<std::string, int> producer_;            // value -> node index
  absl::flat_hash_map<std::string, std::vector<int>> consumers_;
  absl::flat_hash_map<std::string, Value> values_;
  absl::flat_hash_map<std::string, NodeId> parameters_;
  absl::flat_hash_set<int> fused_;  // Add nodes folded into a MatMul's linear
  Graph graph_;
};

}  // namespace

absl::StatusOr<Graph> ImportOnnx(absl::string_view serialized_model_proto,
                                 const ImportOptions& options) {
  if (serialized_model_proto.size() > static_cast<size_t>(INT_MAX)) {
    return Invalid("the model is ", serialized_model_proto.size(),
                   " bytes; protobuf parses at most 2 GiB");
  }
  onnx::ModelProto model;
  if (!model.ParseFromArray(serialized_model_proto.data(),
                            static_cast<int>(serialized_model_proto.size()))) {
    return absl::DataLossError(absl::StrCat("ONNX import: the ", serialized_model_proto.size(),
                                            " bytes do not parse as an onnx.ModelProto "
                                            "(truncated or not an ONNX file)"));
  }
  Importer importer(model, options);
  return importer.Run();
}

absl::StatusOr<Graph> ImportOnnxFile(const std::string& path, const ImportOptions& options) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("ONNX import: ", path, ": cannot open: ", strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Invalid(path, ": not a regular file");
  }
  if (st.st_size > INT_MAX) {
    close(fd);
    return Invalid(path, ": ", st.st_size, " bytes; protobuf parses at most 2 GiB");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t r = read(fd, bytes.data() + done, bytes.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  close(fd);
  if (done != bytes.size())
    return absl::DataLossError(absl::StrCat("ONNX import: ", path, ": short read"));
  absl::StatusOr<Graph> graph = ImportOnnx(bytes, options);
  if (!graph.ok()) {
    // "ONNX import: <path>: <what>" so that the file is named.
    std::string message(graph.status().message());
    constexpr absl::string_view kPrefix = "ONNX import: ";
    if (absl::string_view(message).substr(0, kPrefix.size()) == kPrefix) {
      message = message.substr(kPrefix.size());
    }
    return absl::Status(graph.status().code(), absl::StrCat("ONNX import: ", path, ": ", message));
  }
  return graph;
}

}  // namespace qlab
