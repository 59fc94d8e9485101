// RunTraining: epochs, batches, schedule, SGD, log, checkpoints, resume (see training_run.h).
#include "experiments/training_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/elapsed.h"
#include "core/interrupt.h"
#include "core/progress.h"
#include "core/status_macros.h"
#include "models/data/batch_loader.h"
#include "models/data/random.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "train/optim/checkpoint.h"
#include "train/optim/lr_schedule.h"
#include "train/optim/sgd.h"
#include "train/optim/training_log.h"

namespace qlab::experiments {
namespace {

using Clock = std::chrono::steady_clock;

int64_t ImagesPerEpoch(const TrainRecipe& r, const data::Dataset& train_set) {
  return r.train_images > 0 ? std::min<int64_t>(r.train_images, train_set.size())
                            : train_set.size();
}

// Resuming from the checkpoint at `step`: rows an interrupted run logged after it are dropped
// (the resumed run logs those steps again), so the log reads as one uninterrupted run.
absl::Status DropLogRowsAfter(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("resume: cannot read the training log ", path));
  std::string text, line;
  bool header = true;
  while (std::getline(in, line)) {
    if (!header) {
      int64_t row_step = 0;
      if (!absl::SimpleAtoi(line.substr(0, line.find(',')), &row_step)) {
        return absl::DataLossError(absl::StrCat("resume: ", path, ": bad row \"", line, "\""));
      }
      if (row_step > step) continue;
    }
    header = false;
    absl::StrAppend(&text, line, "\n");
  }
  in.close();
  const std::string tmp = absl::StrCat(path, ".resume-tmp");
  const CriticalWrite critical;  // Ctrl-C waits for the rename: no temporary is left behind
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return absl::InternalError(absl::StrCat("resume: cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("resume: cannot replace ", path));
  }
  return absl::OkStatus();
}

}  // namespace

nlohmann::json TrainRecipe::ToJson() const {
  return nlohmann::json{{"epochs", epochs},
                        {"train_images", train_images},
                        {"batch_size", batch_size},
                        {"lr", lr},
                        {"momentum", momentum},
                        {"nesterov", nesterov},
                        {"weight_decay", weight_decay},
                        {"decay_all", decay_all},
                        {"schedule", schedule},
                        {"warmup_epochs", warmup_epochs},
                        {"label_smoothing", label_smoothing},
                        {"distill", distill},
                        {"seed", seed},
                        {"eval_images", eval_images},
                        {"freeze_bn_after_steps", freeze_bn_after_steps},
                        {"freeze_observers_after_steps", freeze_observers_after_steps},
                        {"log_every_steps", log_every_steps}};
}

absl::Status ValidateRecipe(const TrainRecipe& r) {
  auto bad = [](absl::string_view field, auto value, absl::string_view expected) {
    return absl::InvalidArgumentError(absl::StrCat(field, " = ", value, ": expected ", expected));
  };
  if (r.epochs < 1) return bad("epochs", r.epochs, ">= 1");
  if (r.train_images < 0) return bad("train_images", r.train_images, ">= 0");
  if (r.batch_size < 1) return bad("batch_size", r.batch_size, ">= 1");
  if (!(r.lr > 0.0) || !std::isfinite(r.lr)) return bad("lr", r.lr, "a finite value > 0");
  if (!(r.momentum >= 0.0 && r.momentum < 1.0)) return bad("momentum", r.momentum, "[0, 1)");
  if (!(r.weight_decay >= 0.0)) return bad("weight_decay", r.weight_decay, ">= 0");
  if (!(r.warmup_epochs >= 0.0 && r.warmup_epochs < r.epochs)) {
    return bad("warmup_epochs", r.warmup_epochs, "in [0, epochs)");
  }
  if (!(r.label_smoothing >= 0.0f && r.label_smoothing < 1.0f)) {
    return bad("label_smoothing", r.label_smoothing, "[0, 1)");
  }
  if (!(r.distill >= 0.0f && r.distill <= 1.0f)) return bad("distill", r.distill, "[0, 1]");
  if (r.eval_images < 0) return bad("eval_images", r.eval_images, ">= 0");
  if (r.log_every_steps < 1) return bad("log_every_steps", r.log_every_steps, ">= 1");
  return absl::OkStatus();
}

absl::Status ValidateTeacher(const TrainRecipe& recipe, bool has_teacher) {
  if (recipe.distill > 0.0f && !has_teacher) {
    return absl::InvalidArgumentError(absl::StrCat(
        "distill = ", recipe.distill,
        ": distillation needs a teacher model (//experiments:qat uses the pretrained FP32 model; "
        "//experiments:train has none)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> EngineTestAccuracy(train::TrainingEngine& engine,
                                          const data::Dataset& test_set, int64_t images,
                                          bool show_progress, const std::string& label) {
  std::vector<int64_t> order = data::AllIndices(test_set);
  if (images > 0 && images < static_cast<int64_t>(order.size())) order.resize(images);
  if (order.empty()) return absl::InvalidArgumentError("no test images to evaluate");
  EvalOptions options;
  options.batch_size = 200;
  options.show_progress = show_progress;
  options.label = label;
  QLAB_ASSIGN_OR_RETURN(
      const EvalResult result,
      Evaluate(
          test_set, std::move(order), data::CifarEvalTransform(),
          [&engine](const Tensor& images) { return engine.Predict(images); }, options));
  return result.top1();
}

absl::StatusOr<TrainingRunOutput> RunTraining(train::TrainingEngine& engine,
                                              const TrainRecipe& recipe,
                                              const data::Dataset& train_set,
                                              const data::Dataset& test_set,
                                              const TrainingRunIo& io) {
  QLAB_RETURN_IF_ERROR(ValidateRecipe(recipe));
  QLAB_RETURN_IF_ERROR(ValidateTeacher(recipe, static_cast<bool>(io.teacher)));
  const Clock::time_point run_start = Clock::now();
  const int64_t per_epoch = ImagesPerEpoch(recipe, train_set);
  const int64_t steps_per_epoch = per_epoch / recipe.batch_size;  // the last partial batch drops
  if (steps_per_epoch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", recipe.batch_size, " > the ",
                                                   per_epoch, " training images per epoch"));
  }
  train::LrRunShape shape;
  shape.base_lr = recipe.lr;
  shape.total_steps = steps_per_epoch * recipe.epochs;
  shape.steps_per_epoch = steps_per_epoch;
  shape.warmup_steps = static_cast<int64_t>(std::llround(recipe.warmup_epochs * steps_per_epoch));
  QLAB_ASSIGN_OR_RETURN(const train::LrSchedule schedule,
                        train::ParseLrSchedule(recipe.schedule, shape));

  train::SgdOptions sgd_options;
  sgd_options.lr = static_cast<float>(recipe.lr);
  sgd_options.momentum = static_cast<float>(recipe.momentum);
  sgd_options.nesterov = recipe.nesterov;
  sgd_options.weight_decay = static_cast<float>(recipe.weight_decay);
  QLAB_ASSIGN_OR_RETURN(train::Sgd sgd, train::Sgd::Create(sgd_options));
  for (train::TrainableParameter& p : engine.parameters()) {
    QLAB_RETURN_IF_ERROR(
        sgd.AddParameter(p.name, p.value, p.grad, p.size, recipe.decay_all || p.is_weight));
  }

  // Resume: weights, running statistics, momentum and the epoch count from the checkpoint.
  int64_t first_epoch = 0;
  const std::string log_path = absl::StrCat(io.run_dir, "/log.csv");
  std::optional<train::TrainingLog> log;
  if (!io.resume_from.empty()) {
    QLAB_ASSIGN_OR_RETURN(train::TrainingState state, train::LoadCheckpoint(io.resume_from));
    QLAB_RETURN_IF_ERROR(engine.LoadStateDict(state.model));
    QLAB_RETURN_IF_ERROR(sgd.RestoreMomentumBuffers(state.momentum));
    if (state.seed != recipe.seed) {
      return absl::InvalidArgumentError(absl::StrCat("resume: checkpoint ", io.resume_from,
                                                     " was trained with seed ", state.seed,
                                                     ", this run has seed ", recipe.seed));
    }
    first_epoch = state.epoch;
    QLAB_RETURN_IF_ERROR(DropLogRowsAfter(log_path, state.step));
    QLAB_ASSIGN_OR_RETURN(log, train::TrainingLog::OpenForResume(log_path));
  } else {
    QLAB_ASSIGN_OR_RETURN(log, train::TrainingLog::Create(log_path));
  }

  const data::CifarTrainTransform augment(recipe.seed);
  TrainingRunOutput out;
  out.first_epoch = first_epoch;
  out.curve = nlohmann::json::array();
  int64_t step = first_epoch * steps_per_epoch;
  double train_seconds = 0.0;
  int64_t images_trained = 0;
  for (int64_t epoch = first_epoch; epoch < recipe.epochs; ++epoch) {
    const Clock::time_point epoch_start = Clock::now();
    std::vector<int64_t> order =
        data::SeededPermutation(train_set.size(), data::MixSeed(recipe.seed, epoch));
    order.resize(static_cast<size_t>(steps_per_epoch * recipe.batch_size));
    data::LoaderOptions loader_options;
    loader_options.batch_size = recipe.batch_size;
    loader_options.drop_last = true;
    loader_options.epoch = static_cast<uint64_t>(epoch);
    loader_options.prefetch_batches = 3;
    QLAB_ASSIGN_OR_RETURN(std::unique_ptr<data::BatchLoader> loader,
                          data::BatchLoader::Create(train_set, order, augment, loader_options));
    std::optional<ProgressLine> progress;
    if (io.show_progress) {
      progress.emplace(absl::StrCat("train epoch ", epoch + 1, "/", recipe.epochs),
                       static_cast<int64_t>(order.size()), "img");
    }
    double loss_sum = 0.0, window_loss = 0.0;
    int64_t correct = 0, seen = 0, window_correct = 0, window_seen = 0, window_steps = 0;
    Clock::time_point window_start = Clock::now();
    for (;;) {
      QLAB_ASSIGN_OR_RETURN(std::optional<data::Batch> batch, loader->Next());
      if (!batch) break;
      if (recipe.freeze_bn_after_steps >= 0 && step >= recipe.freeze_bn_after_steps &&
          !engine.batch_norm_frozen()) {
        engine.FreezeBatchNormStatistics();
      }
      if (recipe.freeze_observers_after_steps >= 0 && step >= recipe.freeze_observers_after_steps) {
        engine.FreezeObservers();
      }
      const double lr = train::LearningRate(schedule, step);
      sgd.set_lr(static_cast<float>(lr));
      train::StepStats stats;
      if (recipe.distill > 0.0f) {
        QLAB_ASSIGN_OR_RETURN(const Tensor teacher_logits, io.teacher(batch->images));
        QLAB_ASSIGN_OR_RETURN(stats, engine.ForwardBackwardDistilled(
                                         batch->images, batch->labels, teacher_logits,
                                         recipe.distill));
      } else {
        QLAB_ASSIGN_OR_RETURN(stats, engine.ForwardBackward(batch->images, batch->labels));
      }
      sgd.Step(engine.pool());
      ++step;
      loss_sum += stats.loss * stats.count;
      correct += stats.correct;
      seen += stats.count;
      window_loss += stats.loss;
      window_correct += stats.correct;
      window_seen += stats.count;
      ++window_steps;
      if (progress) progress->Advance(stats.count);
      if (step % recipe.log_every_steps == 0) {
        train::TrainingLogRow row;
        row.step = step;
        row.epoch = epoch;
        row.loss = static_cast<float>(window_loss / window_steps);
        row.lr = static_cast<float>(lr);
        row.train_accuracy = static_cast<float>(window_correct) / window_seen;
        row.images_per_second = static_cast<float>(window_seen / SecondsSince(window_start));
        QLAB_RETURN_IF_ERROR(log->Append(row));
        window_loss = 0.0;
        window_correct = window_seen = window_steps = 0;
        window_start = Clock::now();
      }
    }
    if (progress) progress->Finish();
    const double epoch_train_seconds = SecondsSince(epoch_start);
    train_seconds += epoch_train_seconds;
    images_trained += seen;
    QLAB_ASSIGN_OR_RETURN(const double test_top1,
                          EngineTestAccuracy(engine, test_set, recipe.eval_images, io.show_progress,
                                             absl::StrCat("test after epoch ", epoch + 1)));
    train::TrainingLogRow row;
    row.step = step;
    row.epoch = epoch + 1;
    row.loss = static_cast<float>(loss_sum / seen);
    row.lr = static_cast<float>(train::LearningRate(schedule, step - 1));
    row.train_accuracy = static_cast<float>(correct) / seen;
    row.test_accuracy = static_cast<float>(test_top1);
    row.images_per_second = static_cast<float>(seen / epoch_train_seconds);
    QLAB_RETURN_IF_ERROR(log->Append(row));
    out.curve.push_back({{"epoch", epoch + 1},
                         {"step", step},
                         {"train_loss", loss_sum / seen},
                         {"train_top1", static_cast<double>(correct) / seen},
                         {"test_top1", test_top1},
                         {"lr_end", *row.lr},
                         {"train_seconds", epoch_train_seconds}});
    out.final_test_top1 = test_top1;
    if (io.show_progress) {
      std::fprintf(stderr, "epoch %lld/%d: loss %.4f, train %.2f %%, test %.2f %% (%.0f s)\n",
                   static_cast<long long>(epoch + 1), recipe.epochs, loss_sum / seen,
                   100.0 * correct / seen, 100.0 * test_top1, epoch_train_seconds);
    }
    if (io.checkpoint_every_epoch || epoch + 1 == recipe.epochs) {
      train::TrainingState state;
      state.model = engine.StateDict();
      state.momentum = sgd.MomentumBuffers();
      state.epoch = epoch + 1;
      state.step = step;
      state.seed = recipe.seed;
      state.config_json = io.config_json;
      QLAB_RETURN_IF_ERROR(train::SaveCheckpoint(
          absl::StrCat(io.run_dir, "/", train::CheckpointFileName(epoch + 1)), state));
    }
  }
  out.steps = step;
  out.seconds = SecondsSince(run_start);
  out.images_per_second = train_seconds > 0 ? images_trained / train_seconds : 0.0;
  return out;
}

}  // namespace qlab::experiments
