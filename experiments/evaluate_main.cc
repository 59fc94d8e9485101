// evaluate: FP32 accuracy of a model from a weight file on the shared data, with a record.
//
//   bazel run //experiments:evaluate                                    # ResNet20, CIFAR-10 test
//   bazel run //experiments:evaluate -- --model=resnet56 --limit=1000
//   bazel run //experiments:evaluate -- --model=resnet18 --weights=/path/resnet18-f37072fd.pth
//
// CIFAR models read the CIFAR-10 test set, ImageNet models the ILSVRC2012 validation images under
// --data_root; the shared pretrained checkpoints are the default weights of resnet20/32/44/56.
// Prints top-1/top-5 and, with --out, writes a JSON record (config, weights sha256, image-list
// digest, git commit, machine, results).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "engine/fp32_engine.h"
#include "experiments/provenance.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/graph/interpreter.h"

ABSL_FLAG(std::string, model, "resnet20",
          "resnet18, resnet50, resnet18_cifar, resnet50_cifar, resnet20, resnet32, resnet44, "
          "resnet56");
ABSL_FLAG(std::string, weights, "",
          "safetensors or torch.save (.pth) file; default: the shared pretrained checkpoint for "
          "resnet20/32/44/56");
ABSL_FLAG(int64_t, limit, 0, "evaluate the first N images only (0: all)");
ABSL_FLAG(int, batch_size, 100, "images per batch");
ABSL_FLAG(std::string, out, "", "write the JSON record here (refuses to overwrite)");
ABSL_FLAG(std::string, engine, "fast",
          "fast (FP32 engine on kernels/fp32) or reference (the plain-loop interpreter)");
ABSL_FLAG(int, threads, 2, "threads of the fast engine");

namespace qlab {
namespace {

bool IsCifar(const ResNetSpec& spec) { return spec.num_classes == 10; }

absl::StatusOr<std::string> DefaultWeights(const ResNetSpec& spec, const std::string& root) {
  if (spec.family == ResNetFamily::kCifarOptionA) {
    return absl::StrCat(root, "/cifar10-resnet-akamaster/", spec.name, ".safetensors");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--model=", spec.name,
                   " has no bundled weights here: pass --weights=<file> (torchvision "
                   "checkpoints such as resnet18-f37072fd.pth load directly)"));
}

absl::Status Main() {
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, ModelByName(absl::GetFlag(FLAGS_model)));
  QLAB_ASSIGN_OR_RETURN(const std::string root,
                        data::ResolveDataRoot(absl::GetFlag(FLAGS_data_root)));
  std::string weights_path = absl::GetFlag(FLAGS_weights);
  if (weights_path.empty()) {
    QLAB_ASSIGN_OR_RETURN(weights_path, DefaultWeights(spec, root));
  }
  QLAB_ASSIGN_OR_RETURN(LoadedWeights weights, LoadWeights(weights_path));
  QLAB_ASSIGN_OR_RETURN(const std::string weights_sha256, Sha256File(weights_path));
  ResNetOptions options;
  options.batch = absl::GetFlag(FLAGS_batch_size);
  QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(spec, weights.tensors, options));
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(model).status());

  std::unique_ptr<data::Dataset> dataset;
  std::unique_ptr<data::Transform> transform;
  if (IsCifar(spec)) {
    QLAB_ASSIGN_OR_RETURN(dataset, data::OpenCifar10Test(root));
    transform = std::make_unique<data::CifarEvalTransform>();
  } else {
    QLAB_ASSIGN_OR_RETURN(dataset, data::OpenImageNetVal1300(root));
    transform = std::make_unique<data::ImageNetEvalTransform>();
  }
  std::vector<int64_t> order = data::AllIndices(*dataset);
  const int64_t limit = absl::GetFlag(FLAGS_limit);
  if (limit > 0 && limit < static_cast<int64_t>(order.size())) order.resize(limit);
  const std::string image_digest = experiments::ImageListDigest(*dataset, order, {root});

  const std::string engine_name = absl::GetFlag(FLAGS_engine);
  BatchRunner runner;
  if (engine_name == "reference") {
    runner = [&model](const Tensor& images) -> absl::StatusOr<Tensor> {
      QLAB_ASSIGN_OR_RETURN(RunResult r, RunGraph(model, {images}));
      return r.outputs[0];
    };
  } else if (engine_name == "fast") {
    QLAB_ASSIGN_OR_RETURN(Fp32Engine compiled,
                          Fp32Engine::Create(model, absl::GetFlag(FLAGS_threads)));
    auto engine = std::make_shared<Fp32Engine>(std::move(compiled));
    runner = [engine](const Tensor& images) { return engine->Run(images); };
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--engine=", engine_name, ": expected fast or reference"));
  }
  EvalOptions eval_options;
  eval_options.batch_size = absl::GetFlag(FLAGS_batch_size);
  eval_options.label = absl::StrCat("eval ", spec.name, " fp32");
  QLAB_ASSIGN_OR_RETURN(EvalResult result,
                        Evaluate(*dataset, order, *transform, runner, eval_options));
  std::printf("%s fp32 on %lld images: top-1 %.2f %%, top-5 %.2f %% (%.1f s)\n", spec.name.c_str(),
              static_cast<long long>(result.images), 100.0 * result.top1(), 100.0 * result.top5(),
              result.seconds);

  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    nlohmann::json record = {
        {"config",
         {{"model", spec.name},
          {"weights", weights_path},
          {"limit", limit},
          {"batch_size", absl::GetFlag(FLAGS_batch_size)},
          {"engine", engine_name},
          {"threads", absl::GetFlag(FLAGS_threads)}}},
        {"inputs",
         {{"weights_sha256", weights_sha256},
          {"weights_format", weights.format},
          {"data_root", root},
          {"images", static_cast<int64_t>(order.size())},
          {"image_list_sha256", image_digest}}},
        {"provenance", experiments::CollectProvenance().ToJson()},
        {"fp32", result.ToJson(dataset->class_names())},
        {"timing", {{"eval_seconds", result.seconds}}},
    };
    QLAB_RETURN_IF_ERROR(experiments::WriteJsonFile(out, record, /*overwrite=*/false));
    std::printf("record written to %s\n", out.c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (const absl::Status s = qlab::Main(); !s.ok()) {
    std::fprintf(stderr, "evaluate: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
