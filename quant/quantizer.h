// Quantizer: the backend-specific step of the flow, which annotates a graph with specs.
//
// A Quantizer knows what its backend can run (which patterns fuse, which dtypes, how bias and
// pooling are quantized) and writes QuantizationAnnotations; prepare/convert then know nothing
// about backends. As in pt2e:
//   - QuantizationConfig bundles the specs of one pattern: input activation, output activation,
//     weight, and whether the bias is quantized (int32, derived from input x weight scale).
//   - ConfigTable resolves which config a node gets: by node name (a module path: "layer1"
//     covers "layer1.0.conv1"; the longest matching prefix wins) > by op type > global. A
//     config may be QuantizationConfig::Float(): the pattern is claimed and left in float
//     (typical for the first conv and the last fc).
//   - ComposableQuantizer runs several quantizers in order; a later one may annotate only what
//     the earlier ones left alone, and an overwrite is an error naming the node and both
//     quantizers.
#ifndef QLAB_QUANT_QUANTIZER_H_
#define QLAB_QUANT_QUANTIZER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "quant/graph/graph.h"
#include "quant/quantization_spec.h"

namespace qlab {

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  virtual std::string name() const = 0;
  // Writes annotations into `graph`, leaving nodes other quantizers annotated alone.
  virtual absl::Status Annotate(Graph& graph) = 0;
  // Checks an annotated graph against what the backend supports (called by prepare).
  virtual absl::Status Validate(const Graph& graph) const {
    (void)graph;
    return absl::OkStatus();
  }
};

struct QuantizationConfig {
  std::optional<QuantizationSpec> input_activation;
  std::optional<QuantizationSpec> output_activation;
  std::optional<QuantizationSpec> weight;
  bool quantize_bias = false;  // int32, scale = input scale x weight scale (per channel)
  // Claim the pattern, quantize nothing.
  static QuantizationConfig Float() { return {}; }
  bool is_float() const {
    return !input_activation && !output_activation && !weight && !quantize_bias;
  }
};

class ConfigTable {
 public:
  void SetGlobal(QuantizationConfig config) { global_ = std::move(config); }
  void SetOpType(OpKind op, QuantizationConfig config) { by_op_[op] = std::move(config); }
  // `name` is a node name or a module prefix ("layer4", "fc").
  void SetNodeName(std::string name, QuantizationConfig config) {
    by_name_[std::move(name)] = std::move(config);
  }
  // The config for `node` (name > op type > global); null when nothing applies (the node is
  // then not annotated at all and stays float).
  const QuantizationConfig* For(const Graph& graph, NodeId node) const;

 private:
  std::optional<QuantizationConfig> global_;
  std::map<OpKind, QuantizationConfig> by_op_;
  std::map<std::string, QuantizationConfig> by_name_;
};

class ComposableQuantizer : public Quantizer {
 public:
  explicit ComposableQuantizer(std::vector<std::unique_ptr<Quantizer>> quantizers)
      : quantizers_(std::move(quantizers)) {}
  std::string name() const override;
  // FailedPrecondition naming the node and both quantizers if one changes an annotation an
  // earlier one made.
  absl::Status Annotate(Graph& graph) override;
  absl::Status Validate(const Graph& graph) const override;

 private:
  std::vector<std::unique_ptr<Quantizer>> quantizers_;
};

// torchao's `quantize_(model, config, filter_fn)` as a quantizer: every node the filter accepts
// (conv2d or linear) gets the config's input activation, weight and output specs, one node at a
// time (no pattern fusion), like torchao's ObservedLinear -> QuantizedLinear swap.
using NodeFilter = std::function<bool(const Graph& graph, const Node& node)>;

class FilterQuantizer : public Quantizer {
 public:
  FilterQuantizer(NodeFilter filter, QuantizationConfig config)
      : filter_(std::move(filter)), config_(std::move(config)) {}
  std::string name() const override { return "filter"; }
  // InvalidArgument naming the node if the filter accepts something other than conv2d / linear.
  absl::Status Annotate(Graph& graph) override;

 private:
  NodeFilter filter_;
  QuantizationConfig config_;
};

}  // namespace qlab

#endif  // QLAB_QUANT_QUANTIZER_H_
