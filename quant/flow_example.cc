// flow_example: the quantization flow on a small graph, printed step by step.
//
//   bazel run //quant:flow_example [-- --backend=x86]
//
// Builds conv -> relu -> max_pool -> add(+ shortcut conv) -> flatten -> linear, annotates it with a
// backend quantizer, prepares, calibrates on seeded random batches, converts, and prints the
// graph after each step plus the converted model's agreement with the float one. quant/README.md
// shows its output.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "core/status_macros.h"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/graph.h"
#include "quant/graph/interpreter.h"
#include "quant/prepare.h"
#include "quant/quantization_annotation.h"

ABSL_FLAG(std::string, backend, "xnnpack", "quantizer backend: xnnpack, x86 or tensorrt");
ABSL_FLAG(std::string, activation_observer, "minmax",
          "calibrator for activations (registry spec; empty: the backend's default)");

namespace qlab {
namespace {

absl::StatusOr<Tensor> Uniform(Shape shape, float bound, std::mt19937& rng) {
  QLAB_ASSIGN_OR_RETURN(Tensor t, Tensor::Create(DType::kFloat32, std::move(shape)));
  std::uniform_real_distribution<float> dist(-bound, bound);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

absl::StatusOr<Graph> BuildExample(std::mt19937& rng) {
  Graph g;
  QLAB_ASSIGN_OR_RETURN(const NodeId x, g.AddInput("x", {1, 3, 8, 8}));
  auto conv = [&](const std::string& name, NodeId in, int64_t cin, int64_t cout, int64_t k,
                  int64_t stride, int64_t pad) -> absl::StatusOr<NodeId> {
    const float bound = 1.0f / std::sqrt(static_cast<float>(cin * k * k));
    QLAB_ASSIGN_OR_RETURN(Tensor w, Uniform({cout, cin, k, k}, bound, rng));
    QLAB_ASSIGN_OR_RETURN(Tensor b, Uniform({cout}, 0.1f, rng));
    QLAB_ASSIGN_OR_RETURN(const NodeId wid, g.AddParameter(name + ".weight", w));
    QLAB_ASSIGN_OR_RETURN(const NodeId bid, g.AddParameter(name + ".bias", b));
    Conv2dAttrs attrs;
    attrs.stride = {stride, stride};
    attrs.padding = {pad, pad};
    return g.AddNode(OpKind::kConv2d, name, {in, wid, bid}, attrs);
  };
  QLAB_ASSIGN_OR_RETURN(NodeId h, conv("conv1", x, 3, 4, 3, 1, 1));
  QLAB_ASSIGN_OR_RETURN(h, g.AddNode(OpKind::kRelu, "relu1", {h}));
  QLAB_ASSIGN_OR_RETURN(h, g.AddNode(OpKind::kMaxPool2d, "pool", {h}, Pool2dAttrs{}));
  QLAB_ASSIGN_OR_RETURN(const NodeId shortcut, conv("shortcut", x, 3, 4, 1, 2, 0));
  QLAB_ASSIGN_OR_RETURN(h, g.AddNode(OpKind::kAdd, "add", {h, shortcut}));
  QLAB_ASSIGN_OR_RETURN(h, g.AddNode(OpKind::kFlatten, "flatten", {h}, FlattenAttrs{}));
  QLAB_ASSIGN_OR_RETURN(Tensor fc_w, Uniform({10, 64}, 0.125f, rng));
  QLAB_ASSIGN_OR_RETURN(const NodeId fc_wid, g.AddParameter("fc.weight", fc_w));
  QLAB_ASSIGN_OR_RETURN(h, g.AddNode(OpKind::kLinear, "fc", {h, fc_wid}));
  QLAB_RETURN_IF_ERROR(g.SetOutputs({h}));
  return g;
}

absl::Status Main() {
  std::mt19937 rng(2024);
  QLAB_ASSIGN_OR_RETURN(const Backend backend, ParseBackend(absl::GetFlag(FLAGS_backend)));
  QLAB_ASSIGN_OR_RETURN(Graph graph, BuildExample(rng));
  std::printf("== float graph ==\n%s\n", graph.Dump().c_str());

  QLAB_ASSIGN_OR_RETURN(
      auto quantizer, BackendQuantizer::Create(backend, absl::GetFlag(FLAGS_activation_observer)));
  Graph annotated = graph;
  QLAB_RETURN_IF_ERROR(quantizer->Annotate(annotated));
  QLAB_RETURN_IF_ERROR(quantizer->Validate(annotated));
  std::printf("== annotated by %s ==\n%s\n", quantizer->name().c_str(),
              DumpAnnotated(annotated).c_str());

  QLAB_ASSIGN_OR_RETURN(PreparedModel prepared, Prepare(annotated));
  std::printf("== prepared (one observer slot per group) ==\n%s\n", prepared.Dump().c_str());

  for (int batch = 0; batch < 8; ++batch) {
    QLAB_ASSIGN_OR_RETURN(Tensor x, Uniform({1, 3, 8, 8}, 1.0f, rng));
    QLAB_RETURN_IF_ERROR(prepared.Calibrate({x}));
  }
  QLAB_ASSIGN_OR_RETURN(Graph converted, Convert(prepared));
  std::printf("== converted (Q/DQ reference model) ==\n%s\n", converted.Dump().c_str());

  QLAB_ASSIGN_OR_RETURN(Tensor probe, Uniform({1, 3, 8, 8}, 1.0f, rng));
  QLAB_ASSIGN_OR_RETURN(RunResult float_out, RunGraph(graph, {probe}));
  QLAB_ASSIGN_OR_RETURN(RunResult quant_out, RunGraph(converted, {probe}));
  float max_diff = 0.0f, max_abs = 0.0f;
  const Tensor& f = float_out.outputs[0];
  const Tensor& q = quant_out.outputs[0];
  for (int64_t i = 0; i < f.numel(); ++i) {
    max_diff = std::max(max_diff, std::fabs(f.data<float>()[i] - q.data<float>()[i]));
    max_abs = std::max(max_abs, std::fabs(f.data<float>()[i]));
  }
  std::printf("max |float - converted| over the logits: %.5f (logits span +-%.4f)\n", max_diff,
              max_abs);
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = qlab::Main();
  if (!status.ok()) {
    std::fprintf(stderr, "flow_example: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
