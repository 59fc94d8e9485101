// A real consumer for the exported models: ResNet20 (the shared pretrained checkpoint) in FP32
// and converted by the xnnpack, x86 and tensorrt backends, exported to ONNX, then
//   1. onnx.checker (Debian's python3-onnx, full check with shape inference) accepts each model;
//   2. ONNX Runtime (npm onnxruntime-node under <workspace>/.cache/ort, installed by
//      tools/setup.sh; the test fails without it) runs each on all 10,000 CIFAR-10 test images,
//      and its logits are compared with qlab's fake-quant model on the same images.
// Calibration uses 256 training images (a seeded subset, as the PTQ runner takes), so the
// compared images are never calibration ones. qlab's side runs on the FP32 engine, which executes
// the converted Q/DQ graph as fake quantization at engine speed (the reference interpreter would
// take minutes per model on 10,000 images); it agrees with the interpreter up to float summation
// order, which the tolerances below cover.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "engine/fp32_engine.h"
#include "gtest/gtest.h"
#include "interchange/onnx_export.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/prepare.h"

namespace qlab {
namespace {

constexpr int kEvalImages = 10000;  // the whole CIFAR-10 test set
constexpr int kLoadBatch = 500;     // images per loader batch and per FP32-engine run
constexpr int kCalibImages = 256;
constexpr uint64_t kCalibSeed = 0;
constexpr int kClasses = 10;

struct Variant {
  std::string name;  // "fp32", "xnnpack", ...
  Graph graph;
  std::string onnx_path;
  std::vector<float> qlab_logits;  // [kEvalImages, kClasses]
  float step = 0;                  // the logits' quantization step (0 for fp32)
};

struct Fixture {
  std::string error;  // set when the setup failed
  std::string dir;
  std::string input_path;  // the eval images, raw float32 NCHW
  std::vector<int> labels;
  std::vector<Variant> variants;
};

absl::StatusOr<std::vector<data::Batch>> LoadImages(const data::Dataset& set,
                                                    std::vector<int64_t> order, int batch_size) {
  const data::CifarEvalTransform transform;
  data::LoaderOptions options;
  options.batch_size = batch_size;
  QLAB_ASSIGN_OR_RETURN(auto loader,
                        data::BatchLoader::Create(set, std::move(order), transform, options));
  std::vector<data::Batch> batches;
  for (;;) {
    QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
    if (!batch.has_value()) break;
    batches.push_back(*std::move(batch));
  }
  return batches;
}

// The images of `batches`, in order, as one raw float32 NCHW file.
absl::Status WriteImages(const std::string& path, const std::vector<data::Batch>& batches) {
  std::ofstream out(path, std::ios::binary);
  for (const data::Batch& b : batches) {
    out.write(reinterpret_cast<const char*>(b.images.data<float>()),
              static_cast<std::streamsize>(b.images.numel() * sizeof(float)));
  }
  out.close();
  return out.good() ? absl::OkStatus() : absl::InternalError(absl::StrCat("cannot write ", path));
}

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  const std::string bytes = s.str();
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// The step of the logits: the scale of the dequantize producing the output (xnnpack, x86), else
// of the last activation quantize before it (tensorrt quantizes the linear's input only).
float LogitStep(const Graph& g) {
  const Node& out = g.node(g.outputs()[0]);
  if (out.op == OpKind::kDequantize) return out.attr<QuantizeAttrs>().params.scales[0];
  float step = 0;
  const std::vector<NodeId> order = g.TopologicalOrder().value();
  for (NodeId id : order) {
    const Node& n = g.node(id);
    if (n.op == OpKind::kQuantize) step = n.attr<QuantizeAttrs>().params.scales[0];
  }
  return step;
}

absl::Status Build(Fixture& f) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  f.dir = tmp != nullptr ? tmp : "/tmp";
  QLAB_ASSIGN_OR_RETURN(const std::string root, data::ResolveDataRoot(""));
  QLAB_ASSIGN_OR_RETURN(const LoadedWeights weights,
                        LoadWeights(root + "/cifar10-resnet-akamaster/resnet20.safetensors"));
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, ModelByName("resnet20"));
  ResNetOptions options;
  options.batch = kLoadBatch;
  QLAB_ASSIGN_OR_RETURN(Graph fp32, BuildResNet(spec, weights.tensors, options));
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(fp32).status());

  // Tests may not write into the workspace: the training archive is extracted under TEST_TMPDIR.
  QLAB_ASSIGN_OR_RETURN(auto train_set, data::OpenCifar10Train(root, f.dir + "/cache"));
  QLAB_ASSIGN_OR_RETURN(
      const std::vector<data::Batch> calib,
      LoadImages(*train_set, data::SeededSubset(train_set->size(), kCalibImages, kCalibSeed),
                 kCalibImages));
  QLAB_ASSIGN_OR_RETURN(auto test_set, data::OpenCifar10Test(root));
  if (test_set->size() != kEvalImages) {
    return absl::FailedPreconditionError(absl::StrCat("expected the whole CIFAR-10 test set (",
                                                      kEvalImages, " images), found ",
                                                      test_set->size()));
  }
  QLAB_ASSIGN_OR_RETURN(const std::vector<data::Batch> eval,
                        LoadImages(*test_set, data::AllIndices(*test_set), kLoadBatch));
  for (const data::Batch& b : eval)
    f.labels.insert(f.labels.end(), b.labels.begin(), b.labels.end());
  f.input_path = f.dir + "/images.bin";
  QLAB_RETURN_IF_ERROR(WriteImages(f.input_path, eval));

  Variant float_variant;
  float_variant.name = "fp32";
  float_variant.graph = fp32;
  f.variants.push_back(std::move(float_variant));
  for (Backend backend : {Backend::kXnnpack, Backend::kX86, Backend::kTensorRT}) {
    QLAB_ASSIGN_OR_RETURN(std::unique_ptr<BackendQuantizer> quantizer,
                          BackendQuantizer::Create(backend));
    QLAB_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareWith(fp32, *quantizer));
    for (const data::Batch& b : calib) QLAB_RETURN_IF_ERROR(prepared.Calibrate({b.images}));
    QLAB_ASSIGN_OR_RETURN(Graph converted, Convert(prepared));
    Variant v;
    v.name = BackendName(backend);
    v.graph = std::move(converted);
    f.variants.push_back(std::move(v));
  }
  for (Variant& v : f.variants) {
    v.onnx_path = absl::StrCat(f.dir, "/resnet20_", v.name, ".onnx");
    std::remove(v.onnx_path.c_str());
    ExportOptions export_options;
    export_options.model_name = absl::StrCat("resnet20_", v.name);
    QLAB_RETURN_IF_ERROR(ExportOnnxFile(v.graph, export_options, v.onnx_path));
    QLAB_ASSIGN_OR_RETURN(Fp32Engine engine, Fp32Engine::Create(v.graph, /*threads=*/2));
    for (const data::Batch& b : eval) {
      QLAB_ASSIGN_OR_RETURN(const Tensor logits, engine.Run(b.images));
      v.qlab_logits.insert(v.qlab_logits.end(), logits.data<float>(),
                           logits.data<float>() + logits.numel());
    }
    if (v.name != "fp32") v.step = LogitStep(v.graph);
  }
  return absl::OkStatus();
}

const Fixture& Shared() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture;
    const absl::Status status = Build(*f);
    if (!status.ok()) f->error = status.ToString();
    return f;
  }();
  return *fixture;
}

int Argmax(const float* row) {
  int best = 0;
  for (int c = 1; c < kClasses; ++c) best = row[c] > row[best] ? c : best;
  return best;
}

TEST(OnnxResNetTest, CheckerAcceptsEveryExport) {
  const Fixture& f = Shared();
  ASSERT_TRUE(f.error.empty()) << f.error;
  std::vector<std::string> paths;
  for (const Variant& v : f.variants) paths.push_back(v.onnx_path);
  const std::string command =
      absl::StrCat("/usr/bin/python3 interchange/onnx_check.py ", absl::StrJoin(paths, " "));
  EXPECT_EQ(std::system(command.c_str()), 0) << command << " (needs python3-onnx: tools/setup.sh)";
}

// <workspace>/.cache/ort/node_modules, asserting ONNX Runtime is there. CI runs tools/setup.sh
// first, which installs it or fails: a missing one is an error here, never a skip.
std::string OrtModules() {
  const std::string workspace = data::FindWorkspaceRoot().value();
  const std::string modules = workspace + "/.cache/ort/node_modules";
  EXPECT_EQ(std::system(
                absl::StrCat("test -d ", modules, "/onnxruntime-node && command -v node").c_str()),
            0)
      << "ONNX Runtime is not installed under " << modules << ": run " << workspace
      << "/tools/setup.sh (it installs Node.js and npm onnxruntime-node into .cache/ort)";
  return modules;
}

// ONNX Runtime's logits for the first `images` evaluation images (ort_run.js; `level` as there).
absl::StatusOr<std::vector<float>> RunOrt(const Fixture& f, const Variant& v,
                                          const std::string& modules, int images,
                                          const std::string& level) {
  const std::string out_path = absl::StrCat(f.dir, "/ort_", v.name, "_", level, ".bin");
  const std::string command =
      absl::StrCat("NODE_PATH=", modules, " node interchange/ort_run.js ", v.onnx_path, " ",
                   f.input_path, " ", images, " 3 32 32 ", out_path, " ", kLoadBatch, " ", level);
  if (std::system(command.c_str()) != 0) return absl::InternalError(command);
  std::vector<float> ort = ReadFloats(out_path);
  if (ort.size() != static_cast<size_t>(images) * kClasses) {
    return absl::InternalError(absl::StrCat(out_path, ": ", ort.size(), " floats"));
  }
  return ort;
}

struct Agreement {
  int images = 0;
  int agree = 0;  // same top-1 class
  int qlab_correct = 0;
  int ort_correct = 0;
  double max_diff = 0;  // over all logits
  double mean_diff = 0;
  double mean_abs = 0;  // mean |qlab logit|
};

Agreement Compare(const Fixture& f, const Variant& v, const std::vector<float>& ort,
                  const std::string& level) {
  Agreement a;
  a.images = static_cast<int>(ort.size() / kClasses);
  double sum_diff = 0, sum_abs = 0;
  for (int i = 0; i < a.images; ++i) {
    const float* q = &v.qlab_logits[i * kClasses];
    const float* o = &ort[i * kClasses];
    for (int c = 0; c < kClasses; ++c) {
      const double d = std::fabs(static_cast<double>(q[c]) - o[c]);
      a.max_diff = std::max(a.max_diff, d);
      sum_diff += d;
      sum_abs += std::fabs(q[c]);
    }
    a.agree += Argmax(q) == Argmax(o);
    a.qlab_correct += Argmax(q) == f.labels[i];
    a.ort_correct += Argmax(o) == f.labels[i];
  }
  a.mean_diff = sum_diff / (a.images * kClasses);
  a.mean_abs = sum_abs / (a.images * kClasses);
  std::printf(
      "%-8s %-13s step %.5f  max|qlab-ort| %.5f (%.2f steps)  mean %.6f (%.3f steps)  "
      "top-1 agree %d/%d (%.2f %%)  accuracy qlab %d ort %d  mean|logit| %.3f\n",
      v.name.c_str(), level.c_str(), v.step, a.max_diff, v.step > 0 ? a.max_diff / v.step : 0.0,
      a.mean_diff, v.step > 0 ? a.mean_diff / v.step : 0.0, a.agree, a.images,
      100.0 * a.agree / a.images, a.qlab_correct, a.ort_correct, a.mean_abs);
  return a;
}

// What a deployment gets: ORT's full optimization, all 10,000 test images.
TEST(OnnxResNetTest, OnnxRuntimeMatchesQlab) {
  const Fixture& f = Shared();
  ASSERT_TRUE(f.error.empty()) << f.error;
  const std::string modules = OrtModules();
  for (const Variant& v : f.variants) {
    SCOPED_TRACE(v.name);
    const absl::StatusOr<std::vector<float>> ort = RunOrt(f, v, modules, kEvalImages, "all");
    ASSERT_TRUE(ort.ok()) << ort.status();
    const Agreement a = Compare(f, v, *ort, "all");
    if (v.name == "fp32") {
      // Same float math in another order (ORT's im2col/GEMM vs qlab's kernels): float rounding
      // only, on logits of magnitude ~10 (observed 2e-5).
      EXPECT_LT(a.max_diff, 1e-3);
      EXPECT_EQ(a.agree, kEvalImages);
      continue;
    }
    // Any float difference, even summation order, moves a few values across a rounding boundary
    // of some quantize; a one-step change then spreads through the following layers (about 2x
    // more differing elements per residual block), and images whose top two logits are within a
    // step or two may flip. On top of that ORT changes the model's numerics where it fuses: it
    // rounds a float bias (x86, tensorrt: their backends keep biases float) to int32 on the grid
    // s_x * s_w, a fixed per-channel offset of up to half a bias step; and x86 runs fully in
    // QLinearConv / QLinearAdd. Emulating that bias rounding in the unfused graph reproduces
    // ORT's per-layer differences (interchange/README.md). Observed on the 10,000 images:
    // xnnpack 99.83 % agreement (max 3, mean 0.14 output steps), x86 99.51 % (max 5, mean 0.60),
    // tensorrt 99.47 % (float logits, mean difference 3.0 % of the mean |logit|).
    if (v.name == "xnnpack") {
      EXPECT_GE(a.agree, kEvalImages * 995 / 1000) << "top-1 agreement (issue 10's 99.5 %)";
    } else {
      // ORT's bias rounding costs x86 and tensorrt about 0.3 points: 99.3 % keeps a margin
      // below the observed 99.5 % without hiding a real regression (a wrong scale or zero point
      // drops agreement to tens of percent).
      EXPECT_GE(a.agree, kEvalImages * 993 / 1000) << "top-1 agreement";
    }
    if (v.name == "tensorrt") {
      // Float logits (tensorrt never quantizes outputs), so no step to count in: the mean
      // difference relative to the mean logit magnitude (observed 3.0 %).
      EXPECT_LT(a.mean_diff, 0.06 * a.mean_abs);
    } else {
      // Quantized logits: a handful of output steps at worst, under one on average.
      EXPECT_LE(a.max_diff, 6 * v.step * 1.0001);
      EXPECT_LT(a.mean_diff, 1.0 * v.step);
    }
  }
}

// The exported graphs' exact ONNX semantics: ORT with its QDQ transforms off runs every
// DequantizeLinear -> op -> QuantizeLinear in float as written, which is what qlab's fake-quant
// model computes. Only float summation order differs, so agreement is tighter than with fusion,
// for every backend alike. The first 2,000 images keep the float runs short.
TEST(OnnxResNetTest, OnnxRuntimeWithoutQdqFusionMatchesQlab) {
  const Fixture& f = Shared();
  ASSERT_TRUE(f.error.empty()) << f.error;
  const std::string modules = OrtModules();
  constexpr int kImages = 2000;
  for (const Variant& v : f.variants) {
    if (v.name == "fp32") continue;  // nothing to fuse: the first test covers it
    SCOPED_TRACE(v.name);
    const absl::StatusOr<std::vector<float>> ort = RunOrt(f, v, modules, kImages, "no_qdq_fusion");
    ASSERT_TRUE(ort.ok()) << ort.status();
    const Agreement a = Compare(f, v, *ort, "no_qdq_fusion");
    // Observed on all 10,000 images (2,000): xnnpack 99.96 % (99.95 %), x86 99.98 % (99.95 %),
    // tensorrt 100 % (100 %): the 99.5 % with room to spare.
    EXPECT_GE(a.agree, kImages * 995 / 1000) << "top-1 agreement";
    if (v.name == "tensorrt") {
      // Float logits; observed 0.09 % of the mean |logit| (3.0 % with fusion).
      EXPECT_LT(a.mean_diff, 0.005 * a.mean_abs);
    } else {
      // Summation order alone: observed max 3, mean 0.05 (xnnpack) / 0.06 (x86) output steps.
      EXPECT_LE(a.max_diff, 4 * v.step * 1.0001);
      EXPECT_LT(a.mean_diff, 0.25 * v.step);
    }
  }
}

}  // namespace
}  // namespace qlab
