// RunQat and RunTrain: see qat.h.
#include "experiments/qat.h"

#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/elapsed.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/status_macros.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "experiments/provenance.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "models/resnet.h"
#include "models/weights.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/prepare.h"
#include "train/optim/checkpoint.h"
#include "train/training_engine.h"

namespace qlab::experiments {
namespace {

using Clock = std::chrono::steady_clock;

// A new run folder (or, when resuming, the existing one the checkpoint lives in).
absl::Status PrepareRunDir(const std::string& run_dir, bool resuming) {
  if (run_dir.empty()) return absl::InvalidArgumentError("run_dir is empty");
  std::error_code error;
  const bool exists = std::filesystem::exists(run_dir, error);
  if (resuming) {
    if (!exists) {
      return absl::NotFoundError(absl::StrCat("resume: run folder ", run_dir, " does not exist"));
    }
    return absl::OkStatus();
  }
  if (exists) {
    return absl::AlreadyExistsError(
        absl::StrCat(run_dir, " exists: a new run needs a new folder (nothing is overwritten)"));
  }
  std::filesystem::create_directories(run_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", run_dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

struct CifarData {
  std::string root;
  std::string cache;
  std::unique_ptr<data::Dataset> train;
  std::unique_ptr<data::Dataset> test;
};

absl::StatusOr<CifarData> OpenCifar(const std::string& data_root, const std::string& cache_dir) {
  CifarData d;
  QLAB_ASSIGN_OR_RETURN(d.root, data::ResolveDataRoot(data_root));
  d.cache = cache_dir;
  if (d.cache.empty()) {
    QLAB_ASSIGN_OR_RETURN(d.cache, data::CacheDir());
  }
  QLAB_ASSIGN_OR_RETURN(d.train, data::OpenCifar10Train(d.root, d.cache));
  QLAB_ASSIGN_OR_RETURN(d.test, data::OpenCifar10Test(d.root));
  return d;
}

absl::StatusOr<ResNetSpec> CifarModel(const std::string& name) {
  QLAB_ASSIGN_OR_RETURN(ResNetSpec spec, ModelByName(name));
  if (spec.num_classes != 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", name,
                     " is an ImageNet model: training runs on CIFAR-10 (resnet20/32/44/56, "
                     "resnet18_cifar, resnet50_cifar)"));
  }
  return spec;
}

std::vector<int64_t> EvalOrder(const data::Dataset& test, int64_t images) {
  std::vector<int64_t> order = data::AllIndices(test);
  if (images > 0 && images < static_cast<int64_t>(order.size())) order.resize(images);
  return order;
}

BatchRunner Fp32Runner(Fp32Engine engine) {
  auto shared = std::make_shared<Fp32Engine>(std::move(engine));
  return [shared](const Tensor& images) { return shared->Run(images); };
}

nlohmann::json Timing(double total_seconds) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return {{"total_seconds", total_seconds},
          {"peak_rss_mb", static_cast<double>(usage.ru_maxrss) / 1024.0}};
}

// The name of the classifier: the last conv/linear layer in graph order.
std::string LastLayer(const Graph& graph) {
  std::string last;
  for (const NodeId id : graph.node_ids()) {
    const OpKind op = graph.node(id).op;
    if (op == OpKind::kLinear || op == OpKind::kConv2d) last = graph.node(id).name;
  }
  return last;
}

}  // namespace

nlohmann::json QatConfig::ToJson() const {
  return {{"quant", quant.ToJson()},
          {"recipe", recipe.ToJson()},
          {"lsq", lsq},
          {"lsq_mean_abs_init", lsq_mean_abs_init},
          {"pact", pact},
          {"first_last_8bit", first_last_8bit},
          {"int8_forward", int8_forward}};
}

absl::StatusOr<nlohmann::json> RunQat(const QatConfig& config) {
  const Clock::time_point run_start = Clock::now();
  QLAB_RETURN_IF_ERROR(ValidateRecipe(config.recipe));
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, CifarModel(config.quant.model));
  QLAB_ASSIGN_OR_RETURN(CifarData d, OpenCifar(config.quant.data_root, config.quant.cache_dir));
  QatConfig resolved = config;
  PtqConfig& q = resolved.quant;
  if (q.weights.empty()) {
    if (spec.family != ResNetFamily::kCifarOptionA) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", spec.name,
                       " has no bundled weights: pass --weights (e.g. from //experiments:train)"));
    }
    q.weights = absl::StrCat(d.root, "/cifar10-resnet-akamaster/", spec.name, ".safetensors");
  }
  if (q.calibrator.empty() && !resolved.lsq) q.calibrator = "moving_average";

  QLAB_ASSIGN_OR_RETURN(LoadedWeights weights, LoadWeights(q.weights));
  QLAB_ASSIGN_OR_RETURN(const std::string weights_sha256, Sha256File(q.weights));
  ResNetOptions options;
  options.batch = resolved.recipe.batch_size;
  // A training checkpoint (experiments:train) carries optimizer tensors beside the state dict.
  QLAB_ASSIGN_OR_RETURN(const Graph model,
                        BuildResNet(spec, train::ModelStateDict(weights.tensors), options));
  if (resolved.first_last_8bit && (q.weight_bits < 8 || q.activation_bits < 8)) {
    const std::string first = "conv1";
    const std::string last = LastLayer(model);
    if (q.layer_overrides.count(first) == 0) q.layer_overrides[first] = "8bit";
    if (q.layer_overrides.count(last) == 0) q.layer_overrides[last] = "8bit";
  }
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<BackendQuantizer> quantizer, MakeQuantizer(q));
  if (q.calibrator.empty()) q.calibrator = quantizer->default_config().input_activation->observer();
  quantizer->set_qat(true);
  QLAB_RETURN_IF_ERROR(PrepareRunDir(resolved.run_dir, !resolved.resume_from.empty()));

  // FP32 accuracy of the pretrained model (batch norms folded, the FP32 engine).
  const std::vector<int64_t> eval_order = EvalOrder(*d.test, q.eval_images);
  const data::CifarEvalTransform eval_transform;
  EvalOptions eval_options;
  eval_options.batch_size = q.batch_size;
  eval_options.show_progress = q.show_progress;
  Graph folded = model;
  QLAB_RETURN_IF_ERROR(FoldBatchNorm(folded).status());
  QLAB_ASSIGN_OR_RETURN(Fp32Engine fp32_engine, Fp32Engine::Create(folded, q.threads));
  eval_options.label = absl::StrCat("eval ", spec.name, " fp32");
  QLAB_ASSIGN_OR_RETURN(const EvalResult fp32,
                        Evaluate(*d.test, eval_order, eval_transform,
                                 Fp32Runner(std::move(fp32_engine)), eval_options));

  // Prepare for QAT and calibrate through the training engine.
  QLAB_ASSIGN_OR_RETURN(PreparedModel prepared, PrepareWith(model, *quantizer, /*qat=*/true));
  train::TrainingEngineOptions engine_options;
  engine_options.threads = q.threads;
  engine_options.label_smoothing = resolved.recipe.label_smoothing;
  train::QatOptions qat_options;
  qat_options.lsq = resolved.lsq;
  qat_options.lsq_mean_abs_init = resolved.lsq_mean_abs_init;
  qat_options.pact = resolved.pact;
  qat_options.int8_forward = resolved.int8_forward;
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<train::TrainingEngine> engine,
                        train::TrainingEngine::CreateQat(&prepared, engine_options, qat_options));
  const std::vector<int64_t> calib_order =
      data::SeededSubset(d.train->size(), q.calib_images, q.calib_seed);
  const Clock::time_point calib_start = Clock::now();
  {
    data::LoaderOptions loader_options;
    loader_options.batch_size = q.batch_size;
    QLAB_ASSIGN_OR_RETURN(
        std::unique_ptr<data::BatchLoader> loader,
        data::BatchLoader::Create(*d.train, calib_order, eval_transform, loader_options));
    std::optional<ProgressLine> progress;
    if (q.show_progress) progress.emplace("calibrate", q.calib_images, "img");
    for (;;) {
      QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
      if (!batch) break;
      QLAB_RETURN_IF_ERROR(engine->Calibrate(batch->images));
      if (progress) progress->Advance(static_cast<int64_t>(batch->labels.size()));
    }
    if (progress) progress->Finish();
  }
  const double calib_seconds = SecondsSince(calib_start);
  QLAB_RETURN_IF_ERROR(engine->InitializeLearnedScales());
  QLAB_ASSIGN_OR_RETURN(const double ptq_top1,
                        EngineTestAccuracy(*engine, *d.test, q.eval_images, q.show_progress,
                                           "eval before QAT (fake-quant)"));

  // Fine-tune.
  TrainingRunIo io;
  io.run_dir = resolved.run_dir;
  io.resume_from = resolved.resume_from;
  io.config_json = resolved.ToJson().dump();
  io.show_progress = q.show_progress;
  TrainRecipe recipe = resolved.recipe;
  if (recipe.eval_images == 0) recipe.eval_images = q.eval_images;
  if (recipe.distill > 0.0f) {
    // The teacher: the pretrained FP32 model (batch norms folded), on the same augmented batch.
    QLAB_ASSIGN_OR_RETURN(Fp32Engine teacher, Fp32Engine::Create(folded, q.threads));
    auto shared = std::make_shared<Fp32Engine>(std::move(teacher));
    io.teacher = [shared](const Tensor& images) { return shared->Run(images); };
  }
  QLAB_ASSIGN_OR_RETURN(const TrainingRunOutput run,
                        RunTraining(*engine, recipe, *d.train, *d.test, io));

  // Convert and evaluate as PTQ does.
  QLAB_RETURN_IF_ERROR(engine->WriteBackQat());
  engine.reset();
  QLAB_ASSIGN_OR_RETURN(const Graph converted, Convert(prepared));
  // The fake-quant reference sums in double, as PTQ's (fp32_engine.h's Fp32Accumulation).
  QLAB_ASSIGN_OR_RETURN(Fp32Engine fq_engine,
                        Fp32Engine::Create(converted, q.threads, Fp32Accumulation::kDouble));
  const BatchRunner fake_quant_runner = Fp32Runner(std::move(fq_engine));
  eval_options.label = absl::StrCat("eval ", spec.name, " QAT fake-quant");
  QLAB_ASSIGN_OR_RETURN(const EvalResult fake_quant, Evaluate(*d.test, eval_order, eval_transform,
                                                              fake_quant_runner, eval_options));
  nlohmann::json int8_json;
  absl::StatusOr<Int8Engine> int8_engine = Int8Engine::Create(converted, q.threads);
  if (int8_engine.ok()) {
    auto shared = std::make_shared<Int8Engine>(std::move(*int8_engine));
    const BatchRunner int8_runner = [shared](const Tensor& images) { return shared->Run(images); };
    eval_options.label = absl::StrCat("eval ", spec.name, " QAT int8");
    QLAB_ASSIGN_OR_RETURN(const EvalResult int8,
                          Evaluate(*d.test, eval_order, eval_transform, int8_runner, eval_options));
    int8_json = int8.ToJson(d.test->class_names());
    QLAB_ASSIGN_OR_RETURN(int8_json["prediction_agreement_int8_fake_quant"],
                          PredictionAgreement(int8, fake_quant));
    QLAB_ASSIGN_OR_RETURN(int8_json["prediction_agreement_int8_fp32"],
                          PredictionAgreement(int8, fp32));
  } else {
    int8_json = {{"not_lowered", std::string(int8_engine.status().message())}};
  }
  const auto& classes = d.test->class_names();
  QLAB_ASSIGN_OR_RETURN(const double agreement, PredictionAgreement(fp32, fake_quant));
  return nlohmann::json{
      {"config", resolved.ToJson()},
      {"inputs",
       {{"weights_sha256", weights_sha256},
        {"weights_format", weights.format},
        {"data_root", d.root},
        {"calibration_images", static_cast<int64_t>(calib_order.size())},
        {"calibration_image_list_sha256",
         ImageListDigest(*d.train, calib_order, {d.root, d.cache})},
        {"eval_images", static_cast<int64_t>(eval_order.size())},
        {"eval_image_list_sha256", ImageListDigest(*d.test, eval_order, {d.root, d.cache})},
        {"train_images_per_epoch",
         recipe.train_images > 0 ? recipe.train_images : d.train->size()}}},
      {"provenance", CollectProvenance().ToJson()},
      {"results",
       {{"fp32", fp32.ToJson(classes)},
        {"ptq_baseline_fake_quant_top1", ptq_top1},
        {"fake_quant", fake_quant.ToJson(classes)},
        {"fake_quant_vs_fp32_top1_delta", fake_quant.top1() - fp32.top1()},
        {"prediction_agreement_fp32_fake_quant", agreement},
        {"int8", int8_json}}},
      {"training",
       {{"curve", run.curve},
        {"log", absl::StrCat(resolved.run_dir, "/log.csv")},
        {"steps", run.steps},
        {"resumed_at_epoch", run.first_epoch},
        {"images_per_second", run.images_per_second},
        {"seconds", run.seconds}}},
      {"timing",
       [&] {
         nlohmann::json t = Timing(SecondsSince(run_start));
         t["calibration_seconds"] = calib_seconds;
         t["training_seconds"] = run.seconds;
         return t;
       }()},
  };
}

nlohmann::json TrainConfig::ToJson() const {
  return {
      {"model", model}, {"weights", weights}, {"recipe", recipe.ToJson()}, {"threads", threads}};
}

absl::StatusOr<nlohmann::json> RunTrain(const TrainConfig& config) {
  const Clock::time_point run_start = Clock::now();
  QLAB_RETURN_IF_ERROR(ValidateRecipe(config.recipe));
  // Here, before the run folder is created: RunTraining's own check comes after it exists.
  QLAB_RETURN_IF_ERROR(ValidateTeacher(config.recipe, /*has_teacher=*/false));
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, CifarModel(config.model));
  QLAB_ASSIGN_OR_RETURN(CifarData d, OpenCifar(config.data_root, config.cache_dir));
  ResNetOptions options;
  options.batch = config.recipe.batch_size;
  options.seed = static_cast<uint32_t>(config.recipe.seed);
  std::string weights_sha256 = "";
  Graph model;
  if (!config.weights.empty()) {
    QLAB_ASSIGN_OR_RETURN(LoadedWeights w, LoadWeights(config.weights));
    QLAB_ASSIGN_OR_RETURN(weights_sha256, Sha256File(config.weights));
    QLAB_ASSIGN_OR_RETURN(model, BuildResNet(spec, train::ModelStateDict(w.tensors), options));
  } else {
    QLAB_ASSIGN_OR_RETURN(model, BuildResNet(spec, options));
  }
  QLAB_RETURN_IF_ERROR(PrepareRunDir(config.run_dir, !config.resume_from.empty()));
  train::TrainingEngineOptions engine_options;
  engine_options.threads = config.threads;
  engine_options.label_smoothing = config.recipe.label_smoothing;
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<train::TrainingEngine> engine,
                        train::TrainingEngine::Create(model, engine_options));
  TrainingRunIo io;
  io.run_dir = config.run_dir;
  io.resume_from = config.resume_from;
  io.config_json = config.ToJson().dump();
  io.show_progress = config.show_progress;
  QLAB_ASSIGN_OR_RETURN(const TrainingRunOutput run,
                        RunTraining(*engine, config.recipe, *d.train, *d.test, io));
  const std::vector<int64_t> eval_order = EvalOrder(*d.test, config.recipe.eval_images);
  return nlohmann::json{
      {"config", config.ToJson()},
      {"inputs",
       {{"initial_weights_sha256", weights_sha256},
        {"data_root", d.root},
        {"train_images_per_epoch",
         config.recipe.train_images > 0 ? config.recipe.train_images : d.train->size()},
        {"eval_images", static_cast<int64_t>(eval_order.size())},
        {"eval_image_list_sha256", ImageListDigest(*d.test, eval_order, {d.root, d.cache})}}},
      {"provenance", CollectProvenance().ToJson()},
      {"results", {{"test_top1", run.final_test_top1}}},
      {"training",
       {{"curve", run.curve},
        {"log", absl::StrCat(config.run_dir, "/log.csv")},
        {"checkpoint",
         absl::StrCat(config.run_dir, "/checkpoint-epoch-", config.recipe.epochs, ".safetensors")},
        {"steps", run.steps},
        {"resumed_at_epoch", run.first_epoch},
        {"images_per_second", run.images_per_second},
        {"seconds", run.seconds}}},
      {"timing", Timing(SecondsSince(run_start))},
  };
}

}  // namespace qlab::experiments
