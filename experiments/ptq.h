// Post-training quantization, end to end: the product's main job as a library.
//
// RunPtq builds a model from its weight file, folds batch norm, annotates it with a backend
// quantizer, calibrates on a seeded subset of the training images, converts to the Q/DQ
// reference model, evaluates FP32 and fake-quant (and, once lowering exists, int8) on the test
// images, times the engines and returns one JSON record (and, on request, writes the converted
// model as ONNX):
//
//   config       every setting that decides the numbers (model, weights, quantizer,
//                calibrator, granularity, image counts, seeds, batch size)
//   inputs       sha256 of the weights and of the calibration / evaluation image lists
//   provenance   git commit (+ dirty), CPU, cores, Highway target, build mode
//   results      accuracies, per-class accuracy, prediction agreement, per-layer qparams,
//                per-layer quantization error (SQNR of each quantized conv/linear output)
//   model_size   parameter bytes FP32 vs quantized
//   exports      the ONNX files written (path, sha256, bytes), when export_onnx was set
//   timing       every wall-clock number (the only part that differs between identical runs)
//
// `bazel run //experiments:ptq` (ptq_main.cc) is the command-line front; sweeps and the
// regression test call RunPtq directly.
#ifndef QLAB_EXPERIMENTS_PTQ_H_
#define QLAB_EXPERIMENTS_PTQ_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/data/dataset.h"
#include "nlohmann/json.hpp"
#include "quant/backend_quantizers.h"

namespace qlab::experiments {

struct PtqConfig {
  std::string model = "resnet20";
  std::string weights;    // empty: the shared checkpoint of resnet20/32/44/56
  std::string data_root;  // empty: <workspace>/../shared/data
  std::string cache_dir;  // where the training archive is extracted once; empty: <workspace>/.cache
  std::string quantizer = "xnnpack";
  std::string calibrator;  // activation calibrator (registry spec); empty: the backend's
  std::string weight_granularity = "per_channel";  // or "per_tensor"
  // Weight calibrator (registry spec); empty: the backend's (per_channel_minmax, or minmax with
  // weight_granularity per_tensor). Per-channel weights need a per-channel kind
  // (per_channel_minmax, per_channel_mse, ...), per-tensor weights a per-tensor one.
  std::string weight_calibrator;
  // Activation qscheme: "" keeps the backend's (xnnpack, x86: affine; tensorrt: symmetric);
  // "affine" / "symmetric" force per_tensor_affine / per_tensor_symmetric on the backend's own
  // dtype and range (x86 symmetric is uint8 with zero point 128: half the range unused after a
  // ReLU, which is what the comparison is meant to show).
  std::string activation_scheme;
  // Bit widths (2..8) of weights and activations: the backend's ranges narrowed to 2^bits levels
  // ([0, 2^b - 1] for unsigned, [-2^(b-1), 2^(b-1) - 1] for signed, [-(2^(b-1) - 1), 2^(b-1) - 1]
  // for restricted symmetric), stored in the same 8-bit containers.
  int weight_bits = 8;
  int activation_bits = 8;
  // Per-layer overrides, by node name or module prefix (ConfigTable: the longest prefix wins):
  //   "float"       leave the layer in float
  //   "default"     the run's config (backend, granularity, scheme, calibrator)
  //   <calibrator>  the run's config with this activation calibrator (registry spec)
  //   "8bit"        the run's config at 8-bit weights and activations (first / last layers of
  //                 a low-bit run, as is customary)
  // The key "*" replaces the global entry: {"*": "float", "layer2.0.conv1": "default"} quantizes
  // that one layer only (per-layer sensitivity).
  std::map<std::string, std::string> layer_overrides;
  // Images (the first of the evaluation list) on which the per-layer SQNR of float vs
  // fake-quant is measured with the reference interpreter; 0 skips it.
  int64_t sqnr_images = 32;
  int64_t calib_images = 512;
  uint64_t calib_seed = 0;
  int64_t eval_images = 0;  // 0: the whole test set
  int batch_size = 100;
  int timing_runs = 20;  // per engine and batch size, after warm-up; 0 skips timing
  // "fast": FP32 and fake-quant on the FP32 engine (kernels/fp32, `threads` threads; the
  // fake-quant model's convolutions sum in double, engine/fp32_engine.h's Fp32Accumulation);
  // "reference": both on the plain-loop interpreter (slow; the oracle, for cross-checks).
  std::string engine = "fast";
  // When set, the converted (Q/DQ) model is also written there as ONNX (interchange/), for ONNX
  // Runtime or TensorRT; an existing file is never replaced (AlreadyExists, before evaluation).
  // The record's "exports" section names each written file with its sha256.
  std::string export_onnx;
  // When set, the FP32 model (batch norm folded, as calibrated) is written there as ONNX too.
  std::string export_onnx_fp32;
  int threads = 2;
  bool show_progress = true;

  nlohmann::json ToJson() const;
};

// InvalidArgument naming the setting for a bad config (unknown model, quantizer, calibrator or
// granularity; non-positive counts); errors of the steps (missing data, bad weights) otherwise.
absl::StatusOr<nlohmann::json> RunPtq(const PtqConfig& config);

// The quantizer `config` asks for: the backend's defaults with the calibrator, weight
// granularity, activation scheme and bit widths applied, then the per-layer overrides. Also used
// by QAT (experiments/qat.h), which annotates the same way. InvalidArgument for a bad setting.
absl::StatusOr<std::unique_ptr<BackendQuantizer>> MakeQuantizer(const PtqConfig& config);

// The names of `dataset`'s images in `order`, each made relative to the first of `roots` it
// starts with (records list the calibration images this way).
std::vector<std::string> RelativeImageNames(const data::Dataset& dataset,
                                            const std::vector<int64_t>& order,
                                            const std::vector<std::string>& roots);

// SHA-256 over the names of `dataset`'s images in `order`, each made relative to the first of
// `roots` (the data root, the extraction cache) it starts with, so that the same images give
// the same digest wherever the data and the cache live.
std::string ImageListDigest(const data::Dataset& dataset, const std::vector<int64_t>& order,
                            const std::vector<std::string>& roots);

// Layer overrides from JSON (a --layer_config file, a sweep config's "layer_overrides"): an
// object {"<node name or prefix>": "float" | "default" | "<calibrator spec>", ...}.
// InvalidArgument naming `what` and the key for anything else (calibrator specs are checked when
// the run builds its quantizer).
absl::StatusOr<std::map<std::string, std::string>> LayerOverridesFromJson(
    const nlohmann::json& value, const std::string& what);

// Where `ptq --export_onnx=<flag>` writes `model`'s converted graph ("" for no export):
//   "", "false", "0"        no export
//   "true", "1"             <out>/<model>.onnx, beside the record
//   a path ending in .onnx  that file; with several models, <stem>_<model>.onnx
//   anything else           a folder: <flag>/<model>.onnx
// `flag` paths are used as given (the caller resolves relative ones). The FP32 export goes beside
// it with "_fp32" before the extension (OnnxFp32Path).
std::string OnnxExportPath(const std::string& flag, const std::string& out,
                           const std::string& model, bool several_models);
std::string OnnxFp32Path(const std::string& onnx_path);

// A PtqConfig from a JSON object whose keys are PtqConfig's field names (as ToJson writes them,
// plus data_root, cache_dir, export_onnx, export_onnx_fp32, show_progress); absent keys keep their
// defaults. InvalidArgument naming the key for an unknown key or a value of the wrong type.
absl::StatusOr<PtqConfig> PtqConfigFromJson(const nlohmann::json& value);

// The record without its "timing" section: what must be byte-identical between two runs of the
// same config.
nlohmann::json DeterministicPart(const nlohmann::json& record);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_PTQ_H_
