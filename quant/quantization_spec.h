// The annotation API's four specs: how one tensor of the graph is to be quantized.
//
// As in PyTorch 2 export quantization (torchao `quantizer/quantizer.py`), a backend Quantizer says
// what it wants for each edge (an operator's input) or node (an operator's output) with one of:
//   QuantizationSpec              observe the tensor with a calibrator and quantize it
//                                 (dtype, range, qscheme, channel axis, observer by registry name);
//   SharedQuantizationSpec        use the same observer -- hence the same scale and zero point --
//                                 as another edge or node (add inputs, cat inputs, pool in/out);
//   FixedQParamsQuantizationSpec  known parameters, no observer (sigmoid output: 1/256, 0);
//   DerivedQuantizationSpec       parameters computed from other tensors' parameters
//                                 (conv bias: scale = input scale x weight scale, per channel).
// Specs are small immutable values validated on construction (Create), so a bad spec fails where
// the quantizer writes it, naming the offending value, not later inside prepare.
#ifndef QLAB_QUANT_QUANTIZATION_SPEC_H_
#define QLAB_QUANT_QUANTIZATION_SPEC_H_

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/dtype.h"
#include "quant/graph/graph.h"
#include "quant/qparams.h"

namespace qlab {

// An edge (an operator's input) or a node (an operator's output): what a spec is attached to,
// and what a shared or derived spec refers to.
class EdgeOrNode {
 public:
  static EdgeOrNode Output(NodeId node) { return EdgeOrNode(Edge{node, kNoNode}); }
  static EdgeOrNode Input(NodeId producer, NodeId consumer) {
    return EdgeOrNode(Edge{producer, consumer});
  }

  bool is_edge() const { return edge_.consumer != kNoNode; }
  // The node whose output this is (for an edge: the producer).
  NodeId producer() const { return edge_.producer; }
  // kNoNode for a node output.
  NodeId consumer() const { return edge_.consumer; }

  // "%conv1" or "(%x -> %add)".
  std::string ToString(const Graph& graph) const;

  friend bool operator==(const EdgeOrNode& a, const EdgeOrNode& b) { return a.edge_ == b.edge_; }
  friend bool operator!=(const EdgeOrNode& a, const EdgeOrNode& b) { return !(a == b); }
  friend bool operator<(const EdgeOrNode& a, const EdgeOrNode& b) {
    return a.edge_.producer != b.edge_.producer ? a.edge_.producer < b.edge_.producer
                                                : a.edge_.consumer < b.edge_.consumer;
  }
  template <typename H>
  friend H AbslHashValue(H h, const EdgeOrNode& e) {
    return H::combine(std::move(h), e.edge_);
  }

 private:
  explicit EdgeOrNode(Edge edge) : edge_(edge) {}
  Edge edge_;
};

// The integer format every concrete spec names: dtype and the range used within it (4-bit is
// int8 with [-8, 7]), qscheme, channel axis for per-channel schemes.
struct QuantFormat {
  DType dtype = DType::kInt8;
  int32_t quant_min = -128;
  int32_t quant_max = 127;
  QScheme qscheme = QScheme::kPerTensorAffine;
  int ch_axis = -1;  // per-channel schemes only

  // The QuantTarget (quant/qparams.h) ChooseQParams needs.
  QuantTarget target(float eps) const;
  // InvalidArgument unless dtype is an integer type, quant_min < quant_max within its range, and
  // ch_axis >= 0 exactly for the per-channel schemes. `what` prefixes the message.
  absl::Status Validate(absl::string_view what) const;
  // "int8[-128,127] per_tensor_affine" / "... per_channel_symmetric(axis=0)".
  std::string ToString() const;
  friend bool operator==(const QuantFormat& a, const QuantFormat& b) {
    return a.dtype == b.dtype && a.quant_min == b.quant_min && a.quant_max == b.quant_max &&
           a.qscheme == b.qscheme && a.ch_axis == b.ch_axis;
  }
};

class QuantizationSpec {
 public:
  struct Options {
    QuantFormat format;
    // Calibrator registry spec (calibration/registry.h): "minmax", "histogram",
    // "per_channel_minmax", "percentile:99.99", ... Per-channel qschemes need a per-channel
    // observer and the other way round.
    std::string observer = "minmax";
    // Smallest scale (PyTorch observers' eps; XNNPACK's quantizer uses 2^-12).
    float eps = 1.1920928955078125e-07f;
    // Parameters chosen from each batch at run time instead of from calibration.
    bool is_dynamic = false;
  };
  // InvalidArgument naming the field: bad range for the dtype, per-channel without an axis (or an
  // axis on a per-tensor scheme), unknown observer or one of the wrong kind, eps <= 0.
  static absl::StatusOr<QuantizationSpec> Create(Options options);

  const QuantFormat& format() const { return options_.format; }
  const std::string& observer() const { return options_.observer; }
  float eps() const { return options_.eps; }
  bool is_dynamic() const { return options_.is_dynamic; }
  QuantTarget target() const { return options_.format.target(options_.eps); }
  std::string ToString() const;

 private:
  explicit QuantizationSpec(Options options) : options_(std::move(options)) {}
  Options options_;
};

class SharedQuantizationSpec {
 public:
  explicit SharedQuantizationSpec(EdgeOrNode shared_with) : shared_with_(shared_with) {}
  EdgeOrNode shared_with() const { return shared_with_; }

 private:
  EdgeOrNode shared_with_;
};

class FixedQParamsQuantizationSpec {
 public:
  // Per-tensor schemes only. InvalidArgument for a bad format, a scale that is not finite and
  // positive, or a zero point outside [quant_min, quant_max].
  static absl::StatusOr<FixedQParamsQuantizationSpec> Create(QuantFormat format, float scale,
                                                             int32_t zero_point);
  const QuantFormat& format() const { return format_; }
  float scale() const { return scale_; }
  int32_t zero_point() const { return zero_point_; }
  QuantParams params() const;

 private:
  FixedQParamsQuantizationSpec(QuantFormat format, float scale, int32_t zero_point)
      : format_(format), scale_(scale), zero_point_(zero_point) {}
  QuantFormat format_;
  float scale_;
  int32_t zero_point_;
};

// derive_fn receives the parameters computed for each `derived_from` entry, in order, and returns
// the derived parameters' scales and zero points (the format's dtype/range/qscheme/axis are the
// spec's own and are filled in by convert).
using DeriveQParamsFn =
    std::function<absl::StatusOr<QuantParams>(absl::Span<const QuantParams> sources)>;

class DerivedQuantizationSpec {
 public:
  // InvalidArgument for no sources, no function or a bad format.
  static absl::StatusOr<DerivedQuantizationSpec> Create(std::vector<EdgeOrNode> derived_from,
                                                        DeriveQParamsFn derive_fn,
                                                        QuantFormat format);
  const std::vector<EdgeOrNode>& derived_from() const { return derived_from_; }
  const DeriveQParamsFn& derive_fn() const { return derive_fn_; }
  const QuantFormat& format() const { return format_; }

 private:
  DerivedQuantizationSpec(std::vector<EdgeOrNode> derived_from, DeriveQParamsFn derive_fn,
                          QuantFormat format)
      : derived_from_(std::move(derived_from)), derive_fn_(std::move(derive_fn)), format_(format) {}
  std::vector<EdgeOrNode> derived_from_;
  DeriveQParamsFn derive_fn_;
  QuantFormat format_;
};

using QSpec = std::variant<QuantizationSpec, SharedQuantizationSpec, FixedQParamsQuantizationSpec,
                           DerivedQuantizationSpec>;

// The standard bias rule: sources (input activation, weight) -> scale[c] = act_scale x
// weight_scale[c] (or x the single weight scale), zero point 0. InvalidArgument unless there are
// exactly two per-tensor/per-channel sources, the first per tensor.
absl::StatusOr<QuantParams> DeriveBiasQParams(absl::Span<const QuantParams> sources);

// A DerivedQuantizationSpec for the bias of `layer` (conv2d / linear): int32 over the full range,
// per-channel symmetric on axis 0, derived from (input -> layer) and (weight -> layer).
absl::StatusOr<DerivedQuantizationSpec> BiasSpecFor(const Graph& graph, NodeId layer);

// "int8[-128,127] per_tensor_affine histogram", "shared(%x -> %add)", "fixed(1/256=0.00390625,
// 0)", "derived(%x -> %conv1, %conv1.weight -> %conv1)".
std::string QSpecToString(const QSpec& spec, const Graph& graph);

}  // namespace qlab

#endif  // QLAB_QUANT_QUANTIZATION_SPEC_H_
