// RunPtq (experiments/ptq.h).
#include "experiments/ptq.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/elapsed.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "experiments/provenance.h"
#include "interchange/onnx_export.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"
#include "quant/quantize_tensor.h"

namespace qlab::experiments {
namespace {

using Clock = std::chrono::steady_clock;

absl::Status ValidateConfig(const PtqConfig& c) {
  if (c.weight_granularity != "per_channel" && c.weight_granularity != "per_tensor") {
    return absl::InvalidArgumentError(absl::StrCat("weight_granularity \"", c.weight_granularity,
                                                   "\": expected per_channel or per_tensor"));
  }
  if (c.calib_images <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("calib_images must be > 0, got ", c.calib_images));
  }
  if (c.eval_images < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_images must be >= 0, got ", c.eval_images));
  }
  if (c.batch_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be > 0, got ", c.batch_size));
  }
  if (c.engine != "fast" && c.engine != "reference") {
    return absl::InvalidArgumentError(
        absl::StrCat("engine \"", c.engine, "\": expected fast or reference"));
  }
  if (c.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be >= 1, got ", c.threads));
  }
  if (c.timing_runs < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("timing_runs must be >= 0, got ", c.timing_runs));
  }
  for (const auto& [what, bits] :
       {std::pair{"weight_bits", c.weight_bits}, std::pair{"activation_bits", c.activation_bits}}) {
    if (bits < 2 || bits > 8) {
      return absl::InvalidArgumentError(absl::StrCat(what, " must be in [2, 8], got ", bits));
    }
  }
  if (!c.activation_scheme.empty() && c.activation_scheme != "affine" &&
      c.activation_scheme != "symmetric") {
    return absl::InvalidArgumentError(absl::StrCat("activation_scheme \"", c.activation_scheme,
                                                   "\": expected affine or symmetric"));
  }
  if (c.sqnr_images < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sqnr_images must be >= 0, got ", c.sqnr_images));
  }
  return LayerOverridesFromJson(nlohmann::json(c.layer_overrides), "layer_overrides").status();
}

// The weight spec per tensor (symmetric min-max) instead of the backend's per-channel one.
absl::Status ApplyWeightGranularity(const PtqConfig& c, QuantizationConfig& config) {
  if (c.weight_granularity != "per_tensor" || !config.weight) return absl::OkStatus();
  QuantizationSpec::Options weight;
  weight.format = config.weight->format();
  weight.format.qscheme = QScheme::kPerTensorSymmetric;
  weight.format.ch_axis = -1;
  weight.observer = c.weight_calibrator.empty() ? "minmax" : c.weight_calibrator;
  QLAB_ASSIGN_OR_RETURN(config.weight, QuantizationSpec::Create(weight));
  return absl::OkStatus();
}

// `spec` with another qscheme and/or calibrator, everything else (dtype, range, eps) kept.
absl::StatusOr<QuantizationSpec> ReplaceActivationSpec(const QuantizationSpec& spec,
                                                       std::optional<QScheme> qscheme,
                                                       const std::string& observer) {
  QuantizationSpec::Options options;
  options.format = spec.format();
  if (qscheme) options.format.qscheme = *qscheme;
  options.observer = observer.empty() ? spec.observer() : observer;
  options.eps = spec.eps();
  options.is_dynamic = spec.is_dynamic();
  return QuantizationSpec::Create(options);
}

// Both activation specs of `config` with another qscheme and/or calibrator.
absl::Status ReplaceActivationSpecs(QuantizationConfig& config, std::optional<QScheme> qscheme,
                                    const std::string& observer) {
  for (std::optional<QuantizationSpec>* spec :
       {&config.input_activation, &config.output_activation}) {
    if (!spec->has_value()) continue;
    QLAB_ASSIGN_OR_RETURN(**spec, ReplaceActivationSpec(**spec, qscheme, observer));
  }
  return absl::OkStatus();
}

// activation_scheme: per_tensor_affine or per_tensor_symmetric on the backend's dtype and range.
absl::Status ApplyActivationScheme(const PtqConfig& c, QuantizationConfig& config) {
  if (c.activation_scheme.empty()) return absl::OkStatus();
  const QScheme qscheme =
      c.activation_scheme == "symmetric" ? QScheme::kPerTensorSymmetric : QScheme::kPerTensorAffine;
  return ReplaceActivationSpecs(config, qscheme, "");
}

// `format`'s range narrowed to `bits` bits, keeping its kind (unsigned, signed, restricted).
QuantFormat WithBits(QuantFormat format, int bits) {
  if (bits >= 8) return format;
  const int32_t half = int32_t{1} << (bits - 1);
  if (format.quant_min == 0) {
    format.quant_max = 2 * half - 1;
  } else if (format.quant_min == -format.quant_max) {
    format.quant_min = -(half - 1);
    format.quant_max = half - 1;
  } else {
    format.quant_min = -half;
    format.quant_max = half - 1;
  }
  return format;
}

absl::StatusOr<QuantizationSpec> SpecWithBits(const QuantizationSpec& spec, int bits) {
  QuantizationSpec::Options options;
  options.format = WithBits(spec.format(), bits);
  options.observer = spec.observer();
  options.eps = spec.eps();
  options.is_dynamic = spec.is_dynamic();
  return QuantizationSpec::Create(options);
}

// weight_bits / activation_bits applied to every spec of `config`.
absl::Status ApplyBitWidths(const PtqConfig& c, QuantizationConfig& config) {
  for (std::optional<QuantizationSpec>* spec :
       {&config.input_activation, &config.output_activation}) {
    if (!spec->has_value()) continue;
    QLAB_ASSIGN_OR_RETURN(**spec, SpecWithBits(**spec, c.activation_bits));
  }
  if (config.weight) {
    QLAB_ASSIGN_OR_RETURN(*config.weight, SpecWithBits(*config.weight, c.weight_bits));
  }
  return absl::OkStatus();
}

// layer_overrides into the quantizer's ConfigTable; `run_config` is what "default" means and
// `eight_bit_config` what "8bit" means.
absl::Status ApplyLayerOverrides(const PtqConfig& c, const QuantizationConfig& run_config,
                                 const QuantizationConfig& eight_bit_config,
                                 BackendQuantizer& quantizer) {
  for (const auto& [prefix, value] : c.layer_overrides) {
    QuantizationConfig config = run_config;
    if (value == "float") {
      config = QuantizationConfig::Float();
    } else if (value == "8bit") {
      config = eight_bit_config;
    } else if (value != "default") {
      const absl::Status s = ReplaceActivationSpecs(config, std::nullopt, value);
      if (!s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer_overrides[\"", prefix, "\"]: ", s.message()));
      }
    }
    if (prefix == "*") {
      quantizer.configs().SetGlobal(std::move(config));
    } else {
      quantizer.configs().SetNodeName(prefix, std::move(config));
    }
  }
  return absl::OkStatus();
}

// Every override key ("*" aside) names a node or module prefix of `model`: a misspelt layer
// name would otherwise silently quantize the layer it meant to keep in float.
absl::Status CheckOverridesMatch(const PtqConfig& c, const Graph& model) {
  for (const auto& [prefix, value] : c.layer_overrides) {
    if (prefix == "*") continue;
    bool found = false;
    for (const NodeId id : model.node_ids()) {
      const std::string& name = model.node(id).name;
      if (name == prefix || absl::StartsWith(name, absl::StrCat(prefix, "."))) {
        found = true;
        break;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer_overrides[\"", prefix, "\"]: no node of ", c.model, " has this name or prefix"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BackendQuantizer>> MakeQuantizer(const PtqConfig& c) {
  QLAB_RETURN_IF_ERROR(ValidateConfig(c));
  QLAB_ASSIGN_OR_RETURN(const Backend backend, ParseBackend(c.quantizer));
  // Per-tensor weights take their calibrator in ApplyWeightGranularity.
  const std::string per_channel_weight_calibrator =
      c.weight_granularity == "per_tensor" ? "" : c.weight_calibrator;
  QLAB_ASSIGN_OR_RETURN(
      std::unique_ptr<BackendQuantizer> quantizer,
      BackendQuantizer::Create(backend, c.calibrator, per_channel_weight_calibrator));
  QuantizationConfig eight_bit = quantizer->default_config();
  QLAB_RETURN_IF_ERROR(ApplyWeightGranularity(c, eight_bit));
  QLAB_RETURN_IF_ERROR(ApplyActivationScheme(c, eight_bit));
  QuantizationConfig config = eight_bit;
  QLAB_RETURN_IF_ERROR(ApplyBitWidths(c, config));
  quantizer->configs().SetGlobal(config);
  QLAB_RETURN_IF_ERROR(ApplyLayerOverrides(c, config, eight_bit, *quantizer));
  return quantizer;
}

namespace {

int64_t ParameterBytes(const Graph& graph) {
  int64_t bytes = 0;
  for (const NodeId id : graph.node_ids()) {
    const Node& n = graph.node(id);
    if (n.op == OpKind::kParameter) bytes += static_cast<int64_t>(n.value.nbytes());
  }
  return bytes;
}

// One line per observer slot: who shares it, what it is, and the parameters convert used.
absl::StatusOr<nlohmann::json> QParamsSummary(const PreparedModel& prepared) {
  nlohmann::json slots = nlohmann::json::array();
  for (size_t i = 0; i < prepared.slots().size(); ++i) {
    const ObserverSlot& slot = prepared.slots()[i];
    std::vector<std::string> members;
    for (const EdgeOrNode& m : slot.members) members.push_back(m.ToString(prepared.graph()));
    nlohmann::json entry = {{"members", members}};
    const absl::StatusOr<QuantParams> params = prepared.SlotQParams(static_cast<int>(i));
    if (params.ok()) {
      entry["dtype"] = std::string(DTypeName(params->dtype));
      entry["qscheme"] = QSchemeName(params->qscheme);
      entry["scale"] = params->scales;
      entry["zero_point"] = params->zero_points;
    } else {
      // Weight slots are observed at convert time when calibration never ran them; dynamic
      // slots have no fixed parameters. Say so rather than drop the slot.
      entry["note"] = std::string(params.status().message());
    }
    slots.push_back(std::move(entry));
  }
  return slots;
}

// Median and 90th percentile of `runs` timed calls of `runner` on a batch of `batch` images,
// after two warm-up calls.
absl::StatusOr<nlohmann::json> TimeRunner(const BatchRunner& runner, int64_t batch,
                                          int64_t image_size, int runs) {
  QLAB_ASSIGN_OR_RETURN(Tensor input,
                        Tensor::Create(DType::kFloat32, {batch, 3, image_size, image_size}));
  for (int i = 0; i < 2; ++i) QLAB_RETURN_IF_ERROR(runner(input).status());
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const Clock::time_point start = Clock::now();
    QLAB_RETURN_IF_ERROR(runner(input).status());
    ms.push_back(1e3 * SecondsSince(start));
  }
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1, static_cast<size_t>(q * static_cast<double>(ms.size())))];
  };
  return nlohmann::json{
      {"batch", batch}, {"runs", runs}, {"median_ms", at(0.5)}, {"p90_ms", at(0.9)}};
}

// `graph` written as ONNX to `path` (never replacing a file; the config as the model's
// doc_string), and the record's entry for it: what a later reader needs to find the file and to
// tell whether it is still the one this run wrote.
absl::StatusOr<nlohmann::json> ExportOnnxRecorded(const Graph& graph, const std::string& name,
                                                  const PtqConfig& config,
                                                  const std::string& path) {
  ExportOptions options;
  options.model_name = name;
  options.doc_string = config.ToJson().dump();
  QLAB_RETURN_IF_ERROR(ExportOnnxFile(graph, options, path));
  QLAB_ASSIGN_OR_RETURN(const std::string sha256, Sha256File(path));
  std::error_code error;
  const uintmax_t bytes = std::filesystem::file_size(path, error);
  return nlohmann::json{{"path", path},
                        {"sha256", sha256},
                        {"bytes", error ? 0 : static_cast<int64_t>(bytes)},
                        {"format", "onnx opset 13 (interchange/onnx_export.h)"}};
}

// `graph` on the configured engine. The FP32 engine is compiled once and shared by the calls
// (it is not thread-safe, and Evaluate calls the runner from one thread); `accumulation` is its
// convolutions' (the reference interpreter always sums in its own plain loops).
absl::StatusOr<BatchRunner> MakeRunner(const Graph& graph, const PtqConfig& config,
                                       Fp32Accumulation accumulation) {
  if (config.engine == "reference") {
    return BatchRunner([&graph](const Tensor& images) -> absl::StatusOr<Tensor> {
      QLAB_ASSIGN_OR_RETURN(RunResult r, RunGraph(graph, {images}));
      return r.outputs[0];
    });
  }
  QLAB_ASSIGN_OR_RETURN(Fp32Engine engine,
                        Fp32Engine::Create(graph, config.threads, accumulation));
  auto shared = std::make_shared<Fp32Engine>(std::move(engine));
  return BatchRunner([shared](const Tensor& images) { return shared->Run(images); });
}

// --- Per-layer quantization error -------------------------------------------------------------
//
// For every conv/linear whose weight convert quantized, the SQNR of the converted (fake-quant)
// model's output of that layer against the float model's, on the first `sqnr_images` evaluation
// images:  10 log10( sum x^2 / sum (x - x_q)^2 ),  x the float output, x_q the fake-quant one.
// Both graphs keep the float model's node names, so a layer is looked up by name. The value is
// taken at the layer's own output (before its ReLU and before any output quantization), so it
// measures the error accumulated through the network up to that layer, which is what decides the
// final accuracy. Both models run on the reference interpreter: single-threaded plain loops, so
// the numbers are identical from run to run.

// The conv/linear layers of `model`, in graph order, whose counterpart in `converted` reads a
// dequantized weight.
absl::StatusOr<std::vector<std::pair<NodeId, NodeId>>> QuantizedLayers(const Graph& model,
                                                                       const Graph& converted) {
  std::vector<std::pair<NodeId, NodeId>> layers;
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, model.TopologicalOrder());
  for (const NodeId id : order) {
    const Node& node = model.node(id);
    if (node.op != OpKind::kConv2d && node.op != OpKind::kLinear) continue;
    const absl::StatusOr<NodeId> twin = converted.FindNode(node.name);
    if (!twin.ok()) continue;  // not expected: convert keeps layer names
    const Node& q = converted.node(*twin);
    if (q.inputs.size() < 2 || converted.node(q.inputs[1]).op != OpKind::kDequantize) continue;
    layers.emplace_back(id, *twin);
  }
  return layers;
}

double SqnrDb(const Tensor& reference, const Tensor& approximation) {
  const float* x = reference.data<float>();
  const float* y = approximation.data<float>();
  double signal = 0.0;
  double noise = 0.0;
  for (int64_t i = 0; i < reference.numel(); ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(y[i]);
    signal += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    noise += d * d;
  }
  if (noise == 0.0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

// [{"layer": name, "op": "conv2d", "sqnr_db": value}, ...] in graph order; a layer whose outputs
// are identical has "sqnr_db": null (infinite; JSON has no infinity).
absl::StatusOr<nlohmann::json> PerLayerSqnr(const Graph& model, const Graph& converted,
                                            const data::Dataset& eval_set,
                                            const std::vector<int64_t>& eval_order,
                                            const data::Transform& transform, int64_t images) {
  nlohmann::json result = nlohmann::json::array();
  const int64_t n = std::min<int64_t>(images, static_cast<int64_t>(eval_order.size()));
  if (n == 0) return result;
  const std::vector<int64_t> first(eval_order.begin(), eval_order.begin() + n);
  data::LoaderOptions loader_options;
  loader_options.batch_size = static_cast<int>(n);
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::BatchLoader> loader,
                        data::BatchLoader::Create(eval_set, first, transform, loader_options));
  QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
  if (!batch) return absl::InternalError("per-layer SQNR: the evaluation loader gave no batch");

  QLAB_ASSIGN_OR_RETURN(const auto layers, QuantizedLayers(model, converted));
  RunOptions float_options;
  RunOptions quant_options;
  for (const auto& [float_id, quant_id] : layers) {
    float_options.keep.push_back(float_id);
    quant_options.keep.push_back(quant_id);
  }
  QLAB_ASSIGN_OR_RETURN(const RunResult reference, RunGraph(model, {batch->images}, float_options));
  QLAB_ASSIGN_OR_RETURN(const RunResult quantized,
                        RunGraph(converted, {batch->images}, quant_options));
  for (const auto& [float_id, quant_id] : layers) {
    const Tensor& x = reference.kept.at(float_id);
    const Tensor& y = quantized.kept.at(quant_id);
    if (x.numel() != y.numel()) {
      return absl::InternalError(absl::StrCat("per-layer SQNR: ", model.node(float_id).name,
                                              " has ", x.numel(), " values in the float model and ",
                                              y.numel(), " in the converted one"));
    }
    const double db = SqnrDb(x, y);
    nlohmann::json entry = {{"layer", model.node(float_id).name},
                            {"op", std::string(OpKindName(model.node(float_id).op))}};
    entry["sqnr_db"] = std::isfinite(db) ? nlohmann::json(db) : nlohmann::json(nullptr);
    result.push_back(std::move(entry));
  }
  return result;
}

// Per quantize node: the largest difference, in that node's quantization steps, between the
// int8 engine's integers and the fake-quant reference's, on the first 8 evaluation images.
absl::StatusOr<nlohmann::json> PerLayerInt8Difference(const Graph& converted, Int8Engine& engine,
                                                      const data::Dataset& dataset,
                                                      const std::vector<int64_t>& order,
                                                      const data::Transform& transform) {
  const std::vector<int64_t> first(order.begin(),
                                   order.begin() + std::min<size_t>(8, order.size()));
  data::LoaderOptions options;
  options.batch_size = static_cast<int>(std::max<size_t>(1, first.size()));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::BatchLoader> loader,
                        data::BatchLoader::Create(dataset, first, transform, options));
  QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
  if (!batch) return nlohmann::json::array();
  RunOptions keep;
  for (const NodeId id : converted.node_ids()) {
    if (converted.node(id).op == OpKind::kQuantize) keep.keep.push_back(id);
  }
  QLAB_ASSIGN_OR_RETURN(const RunResult reference, RunGraph(converted, {batch->images}, keep));
  engine.KeepAllValues(true);
  const absl::Status run = engine.Run(batch->images).status();
  engine.KeepAllValues(false);
  QLAB_RETURN_IF_ERROR(run);
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> topological, converted.TopologicalOrder());
  nlohmann::json layers = nlohmann::json::array();
  for (const NodeId id : topological) {
    const Node& q = converted.node(id);
    if (q.op != OpKind::kQuantize) continue;
    const absl::StatusOr<Tensor> lowered = engine.QuantizedValue(q.name);
    if (!lowered.ok()) continue;  // folded into its input's value (same parameters)
    const QuantParams& params = q.attr<QuantizeAttrs>().params;
    QLAB_ASSIGN_OR_RETURN(const Tensor expected, DequantizeTensor(reference.kept.at(id), params));
    double max_steps = 0.0;
    for (int64_t i = 0; i < expected.numel(); ++i) {
      max_steps = std::max(max_steps, std::fabs(static_cast<double>(lowered->data<float>()[i]) -
                                                expected.data<float>()[i]) /
                                          params.scales[0]);
    }
    layers.push_back({{"quantize", q.name}, {"max_steps", std::round(max_steps * 100) / 100}});
  }
  return layers;
}

}  // namespace

std::vector<std::string> RelativeImageNames(const data::Dataset& dataset,
                                            const std::vector<int64_t>& order,
                                            const std::vector<std::string>& roots) {
  std::vector<std::string> names;
  names.reserve(order.size());
  for (const int64_t i : order) {
    const std::string full_name = dataset.name(i);
    absl::string_view name = full_name;
    for (const std::string& root : roots) {
      if (!root.empty() && absl::ConsumePrefix(&name, root)) {
        absl::ConsumePrefix(&name, "/");
        break;
      }
    }
    names.emplace_back(name);
  }
  return names;
}

std::string ImageListDigest(const data::Dataset& dataset, const std::vector<int64_t>& order,
                            const std::vector<std::string>& roots) {
  Sha256 hasher;
  for (const std::string& name : RelativeImageNames(dataset, order, roots)) {
    hasher.Update(name);
    hasher.Update("\n");
  }
  return hasher.HexDigest();
}

nlohmann::json PtqConfig::ToJson() const {
  return nlohmann::json{{"model", model},
                        {"weights", weights},
                        {"quantizer", quantizer},
                        {"calibrator", calibrator},
                        {"weight_granularity", weight_granularity},
                        {"weight_calibrator", weight_calibrator},
                        {"activation_scheme", activation_scheme},
                        {"weight_bits", weight_bits},
                        {"activation_bits", activation_bits},
                        {"layer_overrides", layer_overrides},
                        {"sqnr_images", sqnr_images},
                        {"calib_images", calib_images},
                        {"calib_seed", calib_seed},
                        {"eval_images", eval_images},
                        {"batch_size", batch_size},
                        {"timing_runs", timing_runs},
                        {"engine", engine},
                        {"threads", threads}};
}

absl::StatusOr<nlohmann::json> RunPtq(const PtqConfig& config) {
  QLAB_RETURN_IF_ERROR(ValidateConfig(config));
  const Clock::time_point run_start = Clock::now();
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, ModelByName(config.model));
  QLAB_ASSIGN_OR_RETURN(const std::string root, data::ResolveDataRoot(config.data_root));
  PtqConfig resolved = config;
  if (resolved.weights.empty()) {
    if (spec.family != ResNetFamily::kCifarOptionA) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", spec.name,
                       " has no bundled weights: pass weights (a torchvision .pth or a "
                       "safetensors file)"));
    }
    resolved.weights = absl::StrCat(root, "/cifar10-resnet-akamaster/", spec.name, ".safetensors");
  }
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<BackendQuantizer> quantizer, MakeQuantizer(resolved));
  if (resolved.calibrator.empty()) {
    resolved.calibrator = quantizer->default_config().input_activation->observer();
  }
  if (resolved.weight_calibrator.empty() && quantizer->default_config().weight) {
    // What MakeQuantizer used: per-tensor weights get minmax (ApplyWeightGranularity).
    resolved.weight_calibrator = resolved.weight_granularity == "per_tensor"
                                     ? "minmax"
                                     : quantizer->default_config().weight->observer();
  }
  if (resolved.activation_scheme.empty()) {
    resolved.activation_scheme =
        IsSymmetric(quantizer->default_config().input_activation->format().qscheme) ? "symmetric"
                                                                                    : "affine";
  }

  QLAB_ASSIGN_OR_RETURN(LoadedWeights weights, LoadWeights(resolved.weights));
  QLAB_ASSIGN_OR_RETURN(const std::string weights_sha256, Sha256File(resolved.weights));
  ResNetOptions options;
  options.batch = resolved.batch_size;
  QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(spec, weights.tensors, options));
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(model).status());
  QLAB_RETURN_IF_ERROR(CheckOverridesMatch(resolved, model));

  // Data: CIFAR models calibrate on the training set and evaluate on the test set. ImageNet
  // models have only the shared validation images: calibration takes a seeded subset of them
  // and evaluation the rest, so no image is used for both.
  std::unique_ptr<data::Dataset> calib_set;
  std::unique_ptr<data::Dataset> eval_set_owned;
  std::unique_ptr<data::Transform> transform;
  std::vector<int64_t> calib_order;
  std::vector<int64_t> eval_order;
  std::vector<std::string> image_roots = {root};
  if (spec.num_classes == 10) {
    std::string cache = resolved.cache_dir;
    if (cache.empty()) {
      QLAB_ASSIGN_OR_RETURN(cache, data::CacheDir());
    }
    QLAB_ASSIGN_OR_RETURN(calib_set, data::OpenCifar10Train(root, cache));
    image_roots.push_back(cache);
    QLAB_ASSIGN_OR_RETURN(eval_set_owned, data::OpenCifar10Test(root));
    transform = std::make_unique<data::CifarEvalTransform>();
    eval_order = data::AllIndices(*eval_set_owned);
  } else {
    QLAB_ASSIGN_OR_RETURN(calib_set, data::OpenImageNetVal1300(root));
    transform = std::make_unique<data::ImageNetEvalTransform>();
  }
  if (resolved.calib_images > calib_set->size()) {
    return absl::InvalidArgumentError(absl::StrCat("calib_images ", resolved.calib_images,
                                                   " > the ", calib_set->size(),
                                                   " calibration images available"));
  }
  calib_order = data::SeededSubset(calib_set->size(), resolved.calib_images, resolved.calib_seed);
  if (eval_set_owned == nullptr) {
    std::vector<int64_t> sorted = calib_order;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < calib_set->size(); ++i) {
      if (!std::binary_search(sorted.begin(), sorted.end(), i)) eval_order.push_back(i);
    }
  }
  const data::Dataset& eval_set = eval_set_owned ? *eval_set_owned : *calib_set;
  if (resolved.eval_images > 0 && resolved.eval_images < static_cast<int64_t>(eval_order.size())) {
    eval_order.resize(resolved.eval_images);
  }

  // Annotate, prepare, calibrate, convert.
  QLAB_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareWith(model, *quantizer));
  const Clock::time_point calib_start = Clock::now();
  {
    data::LoaderOptions loader_options;
    loader_options.batch_size = resolved.batch_size;
    QLAB_ASSIGN_OR_RETURN(
        std::unique_ptr<data::BatchLoader> loader,
        data::BatchLoader::Create(*calib_set, calib_order, *transform, loader_options));
    std::optional<ProgressLine> progress;
    if (resolved.show_progress) {
      progress.emplace(absl::StrCat("calibrate ", spec.name, " ", resolved.calibrator),
                       resolved.calib_images, "img");
    }
    for (;;) {
      QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
      if (!batch) break;
      QLAB_RETURN_IF_ERROR(prepared.Calibrate({batch->images}));
      if (progress) progress->Advance(static_cast<int64_t>(batch->labels.size()));
    }
    if (progress) progress->Finish();
  }
  const double calib_seconds = SecondsSince(calib_start);
  QLAB_ASSIGN_OR_RETURN(const Graph converted, Convert(prepared));
  QLAB_ASSIGN_OR_RETURN(nlohmann::json qparams, QParamsSummary(prepared));
  // Exported before the (long) evaluation, so that an existing file fails the run at once.
  nlohmann::json exports = nlohmann::json::object();
  if (!resolved.export_onnx.empty()) {
    QLAB_ASSIGN_OR_RETURN(
        exports["onnx"],
        ExportOnnxRecorded(converted, absl::StrCat(spec.name, "_", resolved.quantizer), resolved,
                           resolved.export_onnx));
  }
  if (!resolved.export_onnx_fp32.empty()) {
    QLAB_ASSIGN_OR_RETURN(exports["onnx_fp32"],
                          ExportOnnxRecorded(model, absl::StrCat(spec.name, "_fp32"), resolved,
                                             resolved.export_onnx_fp32));
  }

  // Evaluate.
  EvalOptions eval_options;
  eval_options.batch_size = resolved.batch_size;
  eval_options.show_progress = resolved.show_progress;
  eval_options.label = absl::StrCat("eval ", spec.name, " fp32");
  QLAB_ASSIGN_OR_RETURN(const BatchRunner fp32_runner,
                        MakeRunner(model, resolved, Fp32Accumulation::kFloat));
  // The fake-quant reference sums in double (fp32_engine.h): the int8 engine is compared with it.
  QLAB_ASSIGN_OR_RETURN(const BatchRunner fake_quant_runner,
                        MakeRunner(converted, resolved, Fp32Accumulation::kDouble));
  QLAB_ASSIGN_OR_RETURN(const EvalResult fp32,
                        Evaluate(eval_set, eval_order, *transform, fp32_runner, eval_options));
  eval_options.label = absl::StrCat("eval ", spec.name, " fake-quant");
  QLAB_ASSIGN_OR_RETURN(const EvalResult fake_quant, Evaluate(eval_set, eval_order, *transform,
                                                              fake_quant_runner, eval_options));
  QLAB_ASSIGN_OR_RETURN(const double agreement, PredictionAgreement(fp32, fake_quant));
  QLAB_ASSIGN_OR_RETURN(
      const nlohmann::json per_layer_sqnr,
      PerLayerSqnr(model, converted, eval_set, eval_order, *transform, resolved.sqnr_images));

  // int8: the lowered engine, when the graph lowers (a layer left in float does not yet).
  nlohmann::json int8_json;
  std::optional<BatchRunner> int8_runner;
  absl::StatusOr<Int8Engine> int8_engine = Int8Engine::Create(converted, resolved.threads);
  if (int8_engine.ok()) {
    auto shared = std::make_shared<Int8Engine>(std::move(*int8_engine));
    int8_runner = [shared](const Tensor& images) { return shared->Run(images); };
    eval_options.label = absl::StrCat("eval ", spec.name, " int8");
    QLAB_ASSIGN_OR_RETURN(const EvalResult int8,
                          Evaluate(eval_set, eval_order, *transform, *int8_runner, eval_options));
    QLAB_ASSIGN_OR_RETURN(const double vs_fake_quant, PredictionAgreement(int8, fake_quant));
    QLAB_ASSIGN_OR_RETURN(const double vs_fp32, PredictionAgreement(int8, fp32));
    QLAB_ASSIGN_OR_RETURN(
        nlohmann::json per_layer,
        PerLayerInt8Difference(converted, *shared, eval_set, eval_order, *transform));
    int8_json = int8.ToJson(eval_set.class_names());
    int8_json["prediction_agreement_int8_fake_quant"] = vs_fake_quant;
    int8_json["prediction_agreement_int8_fp32"] = vs_fp32;
    int8_json["per_layer_max_difference_steps"] = std::move(per_layer);
    int8_json["lowering"] = {{"integer_steps", shared->report().integer_steps.size()},
                             {"float_steps", shared->report().float_steps}};
  } else {
    int8_json = {{"not_lowered", std::string(int8_engine.status().message())}};
  }

  nlohmann::json timing = {{"calibration_seconds", calib_seconds},
                           {"fp32_eval_seconds", fp32.seconds},
                           {"fake_quant_eval_seconds", fake_quant.seconds}};
  if (resolved.timing_runs > 0) {
    for (const int64_t batch : {int64_t{1}, int64_t{32}}) {
      QLAB_ASSIGN_OR_RETURN(timing[absl::StrCat("fp32_", resolved.engine, "_batch", batch)],
                            TimeRunner(fp32_runner, batch, spec.image_size, resolved.timing_runs));
      if (int8_runner) {
        QLAB_ASSIGN_OR_RETURN(
            timing[absl::StrCat("int8_batch", batch)],
            TimeRunner(*int8_runner, batch, spec.image_size, resolved.timing_runs));
      }
    }
  }
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  timing["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB
  timing["total_seconds"] = SecondsSince(run_start);

  const auto& classes = eval_set.class_names();
  nlohmann::json record{
      {"config", resolved.ToJson()},
      {"inputs",
       {{"weights_sha256", weights_sha256},
        {"weights_format", weights.format},
        {"data_root", root},
        {"calibration_images", static_cast<int64_t>(calib_order.size())},
        {"calibration_image_list_sha256", ImageListDigest(*calib_set, calib_order, image_roots)},
        {"calibration_image_names", RelativeImageNames(*calib_set, calib_order, image_roots)},
        {"eval_images", static_cast<int64_t>(eval_order.size())},
        {"eval_image_list_sha256", ImageListDigest(eval_set, eval_order, image_roots)}}},
      {"provenance", CollectProvenance().ToJson()},
      {"results",
       {{"fp32", fp32.ToJson(classes)},
        {"fake_quant", fake_quant.ToJson(classes)},
        {"fake_quant_vs_fp32_top1_delta", fake_quant.top1() - fp32.top1()},
        {"prediction_agreement_fp32_fake_quant", agreement},
        {"int8", int8_json},
        {"qparams", qparams},
        {"per_layer_sqnr_db", per_layer_sqnr}}},
      {"model_size",
       {{"fp32_parameter_bytes", ParameterBytes(model)},
        {"quantized_parameter_bytes", ParameterBytes(converted)}}},
      {"timing", timing},
  };
  if (!exports.empty()) record["exports"] = std::move(exports);
  return record;
}

std::string OnnxExportPath(const std::string& flag, const std::string& out,
                           const std::string& model, bool several_models) {
  if (flag.empty() || flag == "false" || flag == "0") return "";
  if (flag == "true" || flag == "1") return absl::StrCat(out, "/", model, ".onnx");
  if (absl::string_view stem = flag; absl::ConsumeSuffix(&stem, ".onnx")) {
    return several_models ? absl::StrCat(stem, "_", model, ".onnx") : flag;
  }
  return absl::StrCat(absl::StripSuffix(flag, "/"), "/", model, ".onnx");
}

std::string OnnxFp32Path(const std::string& onnx_path) {
  absl::string_view stem = onnx_path;
  absl::ConsumeSuffix(&stem, ".onnx");
  return absl::StrCat(stem, "_fp32.onnx");
}

absl::StatusOr<std::map<std::string, std::string>> LayerOverridesFromJson(
    const nlohmann::json& value, const std::string& what) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": expected an object {\"<layer or prefix>\": \"float\" | \"default\" | "
                     "\"8bit\" | "
                     "\"<calibrator>\"}, got ",
                     value.dump()));
  }
  std::map<std::string, std::string> overrides;
  for (const auto& [key, entry] : value.items()) {
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": empty layer name"));
    }
    if (!entry.is_string() || entry.get<std::string>().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, "[\"", key,
                       "\"]: expected \"float\", \"default\", \"8bit\" or a calibrator spec, got ",
                       entry.dump()));
    }
    overrides[key] = entry.get<std::string>();
  }
  return overrides;
}

absl::StatusOr<PtqConfig> PtqConfigFromJson(const nlohmann::json& value) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError("a PTQ config must be a JSON object, got " + value.dump());
  }
  PtqConfig c;
  for (const auto& item : value.items()) {
    // Named references, not a structured binding: the lambdas below capture them, which C++17
    // allows only for variables (gcc accepts a captured binding, clang does not).
    const std::string& key = item.key();
    const nlohmann::json& v = item.value();
    const auto wrong = [&](const char* expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("PTQ config key \"", key, "\": expected ", expected, ", got ", v.dump()));
    };
    const auto text = [&](std::string& field) -> absl::Status {
      if (!v.is_string()) return wrong("a string");
      field = v.get<std::string>();
      return absl::OkStatus();
    };
    const auto integer = [&](auto& field) -> absl::Status {
      using Field = std::decay_t<decltype(field)>;
      if (!v.is_number_integer()) return wrong("an integer");
      // The value must fit the field: get<> would narrow silently ("weight_bits": 2^32 + 8 read
      // as 8, "calib_seed": -1 as 2^64 - 1), running another configuration than the one written.
      // nlohmann stores parsed non-negative integers unsigned and negative ones signed.
      constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<Field>::max());
      const bool fits =
          v.is_number_unsigned()  ? v.get<uint64_t>() <= kMax
          : v.get<int64_t>() >= 0 ? static_cast<uint64_t>(v.get<int64_t>()) <= kMax
                                  : std::is_signed_v<Field> &&
                                        v.get<int64_t>() >=
                                            static_cast<int64_t>(std::numeric_limits<Field>::min());
      if (!fits) {
        return wrong(absl::StrCat("an integer in [", std::numeric_limits<Field>::min(), ", ",
                                  std::numeric_limits<Field>::max(), "]")
                         .c_str());
      }
      field = v.get<Field>();
      return absl::OkStatus();
    };
    absl::Status s;
    if (key == "model")
      s = text(c.model);
    else if (key == "weights")
      s = text(c.weights);
    else if (key == "data_root")
      s = text(c.data_root);
    else if (key == "cache_dir")
      s = text(c.cache_dir);
    else if (key == "quantizer")
      s = text(c.quantizer);
    else if (key == "calibrator")
      s = text(c.calibrator);
    else if (key == "weight_granularity")
      s = text(c.weight_granularity);
    else if (key == "weight_calibrator")
      s = text(c.weight_calibrator);
    else if (key == "activation_scheme")
      s = text(c.activation_scheme);
    else if (key == "engine")
      s = text(c.engine);
    else if (key == "export_onnx")
      s = text(c.export_onnx);
    else if (key == "export_onnx_fp32")
      s = text(c.export_onnx_fp32);
    else if (key == "weight_bits")
      s = integer(c.weight_bits);
    else if (key == "activation_bits")
      s = integer(c.activation_bits);
    else if (key == "sqnr_images")
      s = integer(c.sqnr_images);
    else if (key == "calib_images")
      s = integer(c.calib_images);
    else if (key == "calib_seed")
      s = integer(c.calib_seed);
    else if (key == "eval_images")
      s = integer(c.eval_images);
    else if (key == "batch_size")
      s = integer(c.batch_size);
    else if (key == "timing_runs")
      s = integer(c.timing_runs);
    else if (key == "threads")
      s = integer(c.threads);
    else if (key == "show_progress") {
      if (!v.is_boolean()) return wrong("true or false");
      c.show_progress = v.get<bool>();
    } else if (key == "layer_overrides") {
      QLAB_ASSIGN_OR_RETURN(c.layer_overrides, LayerOverridesFromJson(v, "layer_overrides"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown PTQ config key \"", key, "\"; known: ", PtqConfig().ToJson().dump(),
                       " and data_root, cache_dir, export_onnx, export_onnx_fp32, show_progress"));
    }
    QLAB_RETURN_IF_ERROR(s);
  }
  return c;
}

nlohmann::json DeterministicPart(const nlohmann::json& record) {
  nlohmann::json copy = record;
  copy.erase("timing");
  return copy;
}

}  // namespace qlab::experiments
