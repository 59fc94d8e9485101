// The three backend quantizers: what each deployment backend runs, written as annotations.
//
// All three annotate the same patterns of a CNN (after batch-norm folding: conv2d -> relu,
// linear -> relu, add -> relu, pooling, flatten, cat, sigmoid) and differ in what they quantize
// and how:
//
//   xnnpack   activations int8 [-128,127] affine per tensor, histogram calibration, eps 2^-12;
//             weights int8 [-127,127] symmetric per output channel (per_channel_minmax);
//             bias int32 with scale act x weight; max/avg pool, flatten, cat, slice/pad share
//             their input's qparams; sigmoid output fixed at 1/256, zero point -128 (int8).
//   x86       activations uint8 [0,255] affine per tensor, histogram; weights int8 [-128,127]
//             symmetric per output channel; bias stays float (oneDNN adds an fp32 bias); sharing
//             as xnnpack; sigmoid output fixed at 1/256, zero point 0 (uint8).
//   tensorrt  int8 [-127,127] symmetric everywhere: activations per tensor with "max"
//             calibration (minmax), weights per output channel; bias float; inputs only: Q/DQ
//             before conv, linear and pools and on the residual input of each add (so that
//             conv + add fuse in the builder); outputs are never quantized.
//
// Each takes a ConfigTable whose global entry is preset to the backend's default config; set
// per-type or per-name entries (e.g. QuantizationConfig::Float() for "conv1" and "fc") before
// Annotate. Patterns are annotated longest first (conv->bn->relu, conv->bn, conv->relu, conv) and
// a node another quantizer annotated is skipped, so the quantizers compose.
#ifndef QLAB_QUANT_BACKEND_QUANTIZERS_H_
#define QLAB_QUANT_BACKEND_QUANTIZERS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "quant/quantizer.h"

namespace qlab {

enum class Backend { kXnnpack, kX86, kTensorRT };

// "xnnpack", "x86", "tensorrt" <-> Backend; InvalidArgument listing the names otherwise.
absl::StatusOr<Backend> ParseBackend(absl::string_view name);
const char* BackendName(Backend backend);

class BackendQuantizer : public Quantizer {
 public:
  // The backend's default config; `activation_observer` / `weight_observer` override the
  // calibrators (registry specs) of the default specs, empty keeps the backend's.
  static absl::StatusOr<std::unique_ptr<BackendQuantizer>> Create(
      Backend backend, const std::string& activation_observer = "",
      const std::string& weight_observer = "");

  std::string name() const override { return BackendName(backend_); }
  Backend backend() const { return backend_; }
  ConfigTable& configs() { return configs_; }
  // The backend's default config (what the global entry is preset to).
  const QuantizationConfig& default_config() const { return default_config_; }

  // pt2e's is_qat: the graph is for quantization-aware training, where conv -> batch_norm stays
  // unfolded (the training engine folds it the QAT way and again before convert,
  // train/training_engine.h), so Validate accepts a quantized conv weight feeding a batch norm.
  void set_qat(bool qat) { qat_ = qat; }
  bool qat() const { return qat_; }

  absl::Status Annotate(Graph& graph) override;
  // InvalidArgument naming the node for annotations this backend cannot run: per-channel
  // activations, weights that are not symmetric, batch_norm left unfolded after a quantized conv
  // (outside QAT).
  absl::Status Validate(const Graph& graph) const override;

 private:
  BackendQuantizer(Backend backend, QuantizationConfig default_config,
                   FixedQParamsQuantizationSpec sigmoid_output);
  absl::Status AnnotateLayers(Graph& graph);
  absl::Status AnnotateAdds(Graph& graph);
  absl::Status AnnotateSharedOps(Graph& graph);
  absl::Status AnnotateSigmoids(Graph& graph);

  Backend backend_;
  QuantizationConfig default_config_;
  FixedQParamsQuantizationSpec sigmoid_output_;
  ConfigTable configs_;
  bool qat_ = false;
};

}  // namespace qlab

#endif  // QLAB_QUANT_BACKEND_QUANTIZERS_H_
