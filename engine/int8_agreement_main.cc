// int8_agreement: how closely the int8 engine follows the fake-quant reference, and where the two
// part (issue 7).
//
//   bazel run //engine:int8_agreement -- --model=resnet20 --quantizer=x86
//
// Quantizes a CIFAR-10 ResNet as `//experiments:ptq` does by default (the backend's defaults:
// histogram calibration, per-channel weights; 512 training images, seed 0, batches of 100),
// converts it, and then:
//   1. agreement: top-1 predictions of the fake-quant reference (the FP32 engine on the Q/DQ
//      model) against the int8 engine under each arithmetic form of Int8EngineOptions, on the
//      test images (all 10,000 by default);
//   2. isolation (--isolate_images, with the default options): every requantizing layer (conv,
//      linear with a quantized output, add, global average pool) is fed the int8 engine's own
//      quantized input and run once more as the reference runs it (its float op on the FP32
//      engine, then quantize), so that each line counts only that layer's own rounding
//      differences: elements differing, and by how many steps at most.
// Prints plain text; writes nothing.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"

ABSL_FLAG(std::string, model, "resnet20", "a CIFAR-10 ResNet with shared weights (resnet20..56)");
ABSL_FLAG(std::string, quantizer, "x86", "xnnpack, x86 or tensorrt");
ABSL_FLAG(int64_t, eval_images, 0, "test images for the agreement (0: all 10,000)");
ABSL_FLAG(int64_t, isolate_images, 200, "test images for the per-layer isolation (0: skip)");
ABSL_FLAG(std::string, forms, "all",
          "agreement forms to run: all, main (five), or default (the engine's default options)");
ABSL_FLAG(std::string, reference_accumulation, "double",
          "how the fake-quant reference's convolutions sum: double (as experiments/ptq "
          "evaluates it) or float (the fast FP32 kernels' order)");
ABSL_FLAG(std::string, isolate_int32_bias, "default",
          "int32-bias form of the isolated engine: default, one_multiplier, two_step, dequantized");

namespace qlab {
namespace {

using Options = Int8EngineOptions;

// --reference_accumulation (validated in Main).
Fp32Accumulation ReferenceAccumulation() {
  return absl::GetFlag(FLAGS_reference_accumulation) == "float" ? Fp32Accumulation::kFloat
                                                                 : Fp32Accumulation::kDouble;
}

struct Form {
  const char* name;
  Options options;
};

std::vector<Form> Forms(const std::string& which) {
  Options classic;
  classic.float_bias = Options::FloatBias::kRoundedToInt32;
  classic.int32_bias = Options::Int32Bias::kOneMultiplier;
  classic.add = Options::Add::kPerInputMultipliers;
  classic.global_average = Options::GlobalAverage::kInteger;
  if (which == "default") return {{"default", Options()}};
  if (which == "main") {
    Options float_bias_only = classic;
    float_bias_only.float_bias = Options::FloatBias::kFloat;
    Options one_multiplier, dequantized;
    one_multiplier.int32_bias = Options::Int32Bias::kOneMultiplier;
    dequantized.int32_bias = Options::Int32Bias::kDequantized;
    return {{"classic (rounded bias, one multiplier, add s_i/y_s)", classic},
            {"float bias, otherwise classic", float_bias_only},
            {"default but int32 bias one multiplier", one_multiplier},
            {"default but int32 bias dequantized", dequantized},
            {"engine default", Options()}};
  }
  std::vector<Form> forms = {{"classic (rounded bias, one multiplier, add s_i/y_s)", classic}};
  Options o = classic;
  o.float_bias = Options::FloatBias::kFloat;
  forms.push_back({"float bias, int32 bias one multiplier, add s_i/y_s", o});
  o.int32_bias = Options::Int32Bias::kTwoStep;
  forms.push_back({"float bias, int32 bias two-step, add s_i/y_s", o});
  o.int32_bias = Options::Int32Bias::kDequantized;
  forms.push_back({"float bias, int32 bias dequantized, add s_i/y_s", o});
  o.add = Options::Add::kReference;
  forms.push_back({"float bias, int32 bias dequantized, add as reference", o});
  o.int32_bias = Options::Int32Bias::kTwoStep;
  forms.push_back({"float bias, int32 bias two-step, add as reference", o});
  o.int32_bias = Options::Int32Bias::kOneMultiplier;
  forms.push_back({"float bias, int32 bias one multiplier, add as reference", o});
  forms.push_back({"engine default (+ global average as reference)", Options()});
  return forms;
}

std::vector<int> Argmax(const Tensor& logits) {
  const int64_t n = logits.dim(0), classes = logits.dim(1);
  std::vector<int> best(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits.data<float>() + i * classes;
    best[i] = static_cast<int>(std::max_element(row, row + classes) - row);
  }
  return best;
}

absl::StatusOr<std::vector<data::Batch>> LoadBatches(const data::Dataset& dataset,
                                                     const std::vector<int64_t>& order,
                                                     const data::Transform& transform) {
  data::LoaderOptions options;
  options.batch_size = 100;
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::BatchLoader> loader,
                        data::BatchLoader::Create(dataset, order, transform, options));
  std::vector<data::Batch> batches;
  for (;;) {
    QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
    if (!batch) break;
    batches.push_back(std::move(*batch));
  }
  return batches;
}

// The reference's own computation of the requantizing layer ending at quantize node `q` of
// `converted`, on inputs given as float values: a small graph holding copies of that layer's
// op (and relu), parameters and output quantize -> dequantize pair. Its inputs are the layer's
// activation inputs (dequantize nodes of other quantize nodes), returned in `inputs` by the
// name of the quantize node each reads. Nullopt for a quantize node that ends no such layer.
struct IsolatedLayer {
  Graph graph;
  std::vector<std::string> inputs;  // quantize node names, in graph.inputs() order
  std::string op;
};

absl::StatusOr<std::optional<IsolatedLayer>> IsolateLayer(const Graph& converted, NodeId q) {
  const Node& quantize = converted.node(q);
  NodeId producer = quantize.inputs[0];
  bool relu = false;
  if (converted.node(producer).op == OpKind::kRelu) {
    relu = true;
    producer = converted.node(producer).inputs[0];
  }
  const Node& op = converted.node(producer);
  const bool global_average = op.op == OpKind::kAdaptiveAvgPool2d || op.op == OpKind::kAvgPool2d;
  if (op.op != OpKind::kConv2d && op.op != OpKind::kLinear && op.op != OpKind::kAdd &&
      !global_average) {
    return std::nullopt;
  }
  IsolatedLayer layer;
  layer.op = std::string(OpKindName(op.op));
  Graph& g = layer.graph;
  std::vector<NodeId> op_inputs;
  for (const NodeId in : op.inputs) {
    const Node& n = converted.node(in);
    if (n.op == OpKind::kParameter) {
      QLAB_ASSIGN_OR_RETURN(const NodeId p, g.AddParameter(n.name, n.value));
      op_inputs.push_back(p);
      continue;
    }
    if (n.op != OpKind::kDequantize) return std::nullopt;  // a float input: not a Q/DQ layer
    const Node& source = converted.node(n.inputs[0]);
    if (source.op == OpKind::kParameter) {  // quantized weights or bias: copied with their DQ
      QLAB_ASSIGN_OR_RETURN(const NodeId p, g.AddParameter(source.name, source.value));
      QLAB_ASSIGN_OR_RETURN(const NodeId dq, g.AddNode(OpKind::kDequantize, n.name, {p}, n.attrs));
      op_inputs.push_back(dq);
      continue;
    }
    if (source.op != OpKind::kQuantize) return std::nullopt;
    QLAB_ASSIGN_OR_RETURN(const NodeId x, g.AddInput(source.name, n.shape));
    layer.inputs.push_back(source.name);
    op_inputs.push_back(x);
  }
  QLAB_ASSIGN_OR_RETURN(NodeId last, g.AddNode(op.op, op.name, op_inputs, op.attrs));
  if (relu) {
    QLAB_ASSIGN_OR_RETURN(last, g.AddNode(OpKind::kRelu, "relu", {last}));
  }
  QLAB_ASSIGN_OR_RETURN(const NodeId qn,
                        g.AddNode(OpKind::kQuantize, quantize.name, {last}, quantize.attrs));
  QLAB_ASSIGN_OR_RETURN(const NodeId dq,
                        g.AddNode(OpKind::kDequantize, "out", {qn}, quantize.attrs));
  QLAB_RETURN_IF_ERROR(g.SetOutputs({dq}));
  return layer;
}

struct LayerCount {
  std::string name, op;
  int64_t elements = 0, differing = 0;
  double max_steps = 0.0;
};

absl::Status Isolate(const Graph& converted, const std::vector<data::Batch>& batches) {
  Options options;
  const std::string int32_bias = absl::GetFlag(FLAGS_isolate_int32_bias);
  if (int32_bias == "one_multiplier") {
    options.int32_bias = Options::Int32Bias::kOneMultiplier;
  } else if (int32_bias == "two_step") {
    options.int32_bias = Options::Int32Bias::kTwoStep;
  } else if (int32_bias == "dequantized") {
    options.int32_bias = Options::Int32Bias::kDequantized;
  } else if (int32_bias != "default") {
    return absl::InvalidArgumentError(absl::StrCat("--isolate_int32_bias=", int32_bias));
  }
  QLAB_ASSIGN_OR_RETURN(Int8Engine engine, Int8Engine::Create(converted, 2, options));
  engine.KeepAllValues(true);
  QLAB_ASSIGN_OR_RETURN(const std::vector<NodeId> order, converted.TopologicalOrder());
  std::vector<LayerCount> counts;
  std::vector<std::pair<NodeId, IsolatedLayer>> layers;
  for (const NodeId id : order) {
    if (converted.node(id).op != OpKind::kQuantize) continue;
    QLAB_ASSIGN_OR_RETURN(std::optional<IsolatedLayer> layer, IsolateLayer(converted, id));
    if (!layer) continue;
    counts.push_back({converted.node(id).name, layer->op});
    layers.emplace_back(id, std::move(*layer));
  }
  for (const data::Batch& batch : batches) {
    QLAB_RETURN_IF_ERROR(engine.Run(batch.images).status());
    for (size_t l = 0; l < layers.size(); ++l) {
      const IsolatedLayer& layer = layers[l].second;
      const std::string& name = converted.node(layers[l].first).name;
      const absl::StatusOr<Tensor> int8 = engine.QuantizedValue(name);
      if (!int8.ok()) continue;  // not materialized by the engine (e.g. the logits' input)
      std::vector<Tensor> inputs;
      const std::vector<NodeId> graph_inputs = layer.graph.inputs();
      for (size_t i = 0; i < layer.inputs.size(); ++i) {
        QLAB_ASSIGN_OR_RETURN(const Tensor v, engine.QuantizedValue(layer.inputs[i]));
        // The engine keeps [N, C] values as [N, C, 1, 1] (the same bytes).
        Shape shape = layer.graph.node(graph_inputs[i]).shape;
        shape[0] = v.dim(0);
        QLAB_ASSIGN_OR_RETURN(Tensor reshaped, v.Reshape(shape));
        inputs.push_back(std::move(reshaped));
      }
      Tensor reference;
      if (inputs.size() == 1) {
        // One input: the FP32 engine with the fake-quant evaluation's accumulation.
        QLAB_ASSIGN_OR_RETURN(Fp32Engine fp32,
                              Fp32Engine::Create(layer.graph, 1, ReferenceAccumulation()));
        QLAB_ASSIGN_OR_RETURN(reference, fp32.Run(inputs[0]));
      } else {
        // The add: the interpreter's a + b is the same single IEEE addition as the FP32 engine's.
        QLAB_ASSIGN_OR_RETURN(RunResult r, RunGraph(layer.graph, inputs));
        reference = std::move(r.outputs[0]);
      }
      const float scale = converted.node(layers[l].first).attr<QuantizeAttrs>().params.scales[0];
      LayerCount& c = counts[l];
      for (int64_t i = 0; i < reference.numel(); ++i) {
        const double steps =
            std::fabs(static_cast<double>(int8->data<float>()[i]) - reference.data<float>()[i]) /
            scale;
        c.elements += 1;
        if (steps > 0.5) c.differing += 1;
        c.max_steps = std::max(c.max_steps, steps);
      }
    }
  }
  std::printf(
      "\nisolated layers (same quantized input to the int8 step and the reference; int32 "
      "bias form %s):\n",
      int32_bias.c_str());
  std::printf("%-28s %-22s %12s %10s %10s %9s\n", "quantize node", "op", "elements", "differ",
              "ppm", "max steps");
  int64_t total = 0, total_differing = 0;
  for (const LayerCount& c : counts) {
    total += c.elements;
    total_differing += c.differing;
    std::printf("%-28s %-22s %12lld %10lld %10.1f %9.0f\n", c.name.c_str(), c.op.c_str(),
                static_cast<long long>(c.elements), static_cast<long long>(c.differing),
                c.elements ? 1e6 * c.differing / c.elements : 0.0, std::round(c.max_steps));
  }
  std::printf("%-28s %-22s %12lld %10lld %10.1f\n", "all", "", static_cast<long long>(total),
              static_cast<long long>(total_differing), total ? 1e6 * total_differing / total : 0.0);
  return absl::OkStatus();
}

absl::Status Main() {
  const std::string accumulation = absl::GetFlag(FLAGS_reference_accumulation);
  if (accumulation != "double" && accumulation != "float") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--reference_accumulation=", accumulation, ": expected double or float"));
  }
  const std::string model_name = absl::GetFlag(FLAGS_model);
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, ModelByName(model_name));
  if (spec.num_classes != 10) return absl::InvalidArgumentError("CIFAR-10 models only");
  QLAB_ASSIGN_OR_RETURN(const std::string root,
                        data::ResolveDataRoot(absl::GetFlag(FLAGS_data_root)));
  QLAB_ASSIGN_OR_RETURN(
      LoadedWeights weights,
      LoadWeights(absl::StrCat(root, "/cifar10-resnet-akamaster/", spec.name, ".safetensors")));
  ResNetOptions resnet_options;
  resnet_options.batch = 100;
  QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(spec, weights.tensors, resnet_options));
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(model).status());
  QLAB_ASSIGN_OR_RETURN(const Backend backend, ParseBackend(absl::GetFlag(FLAGS_quantizer)));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<BackendQuantizer> quantizer,
                        BackendQuantizer::Create(backend, ""));
  QLAB_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareWith(model, *quantizer));

  QLAB_ASSIGN_OR_RETURN(const std::string cache, data::CacheDir());
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::Dataset> train, data::OpenCifar10Train(root, cache));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::Dataset> test, data::OpenCifar10Test(root));
  const data::CifarEvalTransform transform;
  QLAB_ASSIGN_OR_RETURN(
      const std::vector<data::Batch> calibration,
      LoadBatches(*train, data::SeededSubset(train->size(), 512, /*seed=*/0), transform));
  for (const data::Batch& batch : calibration) {
    QLAB_RETURN_IF_ERROR(prepared.Calibrate({batch.images}));
  }
  QLAB_ASSIGN_OR_RETURN(const Graph converted, Convert(prepared));

  std::vector<int64_t> eval_order = data::AllIndices(*test);
  const int64_t eval_images = absl::GetFlag(FLAGS_eval_images);
  if (eval_images > 0 && eval_images < static_cast<int64_t>(eval_order.size())) {
    eval_order.resize(eval_images);
  }
  QLAB_ASSIGN_OR_RETURN(const std::vector<data::Batch> batches,
                        LoadBatches(*test, eval_order, transform));

  std::vector<int> reference;
  {
    QLAB_ASSIGN_OR_RETURN(Fp32Engine fake_quant,
                          Fp32Engine::Create(converted, 2, ReferenceAccumulation()));
    for (const data::Batch& batch : batches) {
      QLAB_ASSIGN_OR_RETURN(const Tensor logits, fake_quant.Run(batch.images));
      const std::vector<int> best = Argmax(logits);
      reference.insert(reference.end(), best.begin(), best.end());
    }
  }
  std::printf("%s %s: top-1 agreement with fake-quant (%s accumulation) on %zu test images\n",
              spec.name.c_str(), absl::GetFlag(FLAGS_quantizer).c_str(), accumulation.c_str(),
              reference.size());
  for (const Form& form : Forms(absl::GetFlag(FLAGS_forms))) {
    QLAB_ASSIGN_OR_RETURN(Int8Engine engine, Int8Engine::Create(converted, 2, form.options));
    int64_t same = 0, i = 0;
    for (const data::Batch& batch : batches) {
      QLAB_ASSIGN_OR_RETURN(const Tensor logits, engine.Run(batch.images));
      for (const int best : Argmax(logits)) same += best == reference[i++] ? 1 : 0;
    }
    std::printf("  %-58s %6.2f %%  (%lld differ)\n", form.name,
                100.0 * same / static_cast<double>(reference.size()),
                static_cast<long long>(reference.size() - same));
    std::fflush(stdout);
  }

  const int64_t isolate_images = absl::GetFlag(FLAGS_isolate_images);
  if (isolate_images > 0) {
    std::vector<int64_t> first = data::AllIndices(*test);
    first.resize(std::min<size_t>(first.size(), isolate_images));
    QLAB_ASSIGN_OR_RETURN(const std::vector<data::Batch> isolation,
                          LoadBatches(*test, first, transform));
    QLAB_RETURN_IF_ERROR(Isolate(converted, isolation));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = qlab::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "int8_agreement: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
