// The training loop shared by FP32 training (experiments/train_main.cc) and QAT
// (experiments/qat.h): epochs of seeded, augmented CIFAR-10 batches through a TrainingEngine, SGD
// with a learning-rate schedule, a CSV training log, per-epoch test accuracy, checkpoints and
// resume, and a progress line with images/s and ETA.
//
// Reproducible: epoch e visits the training images in SeededPermutation(n, MixSeed(seed, e))
// order (the first train_images of it when train_images > 0), augments sample i with the key
// MixSeed(e, i) (random crop with 4-pixel padding, horizontal flip), and every kernel reduces in
// a fixed order, so the same recipe and seed give the same weights and the same log (timings
// aside), whatever the thread count.
#ifndef QLAB_EXPERIMENTS_TRAINING_RUN_H_
#define QLAB_EXPERIMENTS_TRAINING_RUN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/data/dataset.h"
#include "nlohmann/json.hpp"
#include "train/training_engine.h"

namespace qlab::experiments {

struct TrainRecipe {
  int epochs = 1;
  // Images per epoch: 0 for the whole training set, else the first N of each epoch's permutation
  // (short fine-tunes and smoke runs).
  int64_t train_images = 0;
  int batch_size = 128;
  double lr = 0.1;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  // Weight decay on batch-norm parameters, biases and quantization scales too (PyTorch's plain
  // SGD does; most recipes exclude them).
  bool decay_all = false;
  // train/optim/lr_schedule.h grammar: "cosine", "cosine:<min_lr>", "step:<epochs...>:<gamma>",
  // "constant".
  std::string schedule = "cosine";
  double warmup_epochs = 0.0;
  float label_smoothing = 0.0f;
  // Knowledge distillation (QAT): the weight of the teacher's soft targets in the loss, in
  // [0, 1] (train/ops/cross_entropy.h DistillationCrossEntropy); 0: labels only. The teacher is
  // the run's FP32 model (TrainingRunIo::teacher).
  float distill = 0.0f;
  uint64_t seed = 0;
  // Test images evaluated after each epoch (the first N of the test set; 0: all of it).
  int64_t eval_images = 0;
  // QAT: freeze batch-norm statistics / observers after this many optimizer steps (-1: never).
  int64_t freeze_bn_after_steps = -1;
  int64_t freeze_observers_after_steps = -1;
  // Steps between training-log rows (each epoch's end is always logged).
  int log_every_steps = 50;

  nlohmann::json ToJson() const;
};

// InvalidArgument naming the field for a recipe that cannot run.
absl::Status ValidateRecipe(const TrainRecipe& recipe);

// InvalidArgument when the recipe distills (distill > 0) and the run has no teacher model
// (only //experiments:qat has one: the pretrained FP32 model).
absl::Status ValidateTeacher(const TrainRecipe& recipe, bool has_teacher);

struct TrainingRunOutput {
  nlohmann::json curve;          // one object per epoch: loss, train/test accuracy, lr, seconds
  double final_test_top1 = 0.0;  // fraction
  int64_t steps = 0;
  int64_t first_epoch = 0;  // > 0 when resumed
  double seconds = 0.0;
  double images_per_second = 0.0;
};

struct TrainingRunIo {
  // Where log.csv and checkpoint-epoch-<N>.safetensors go (must exist).
  std::string run_dir;
  // A checkpoint to resume from (its epoch count, weights and momentum); empty: start fresh.
  std::string resume_from;
  // Written into every checkpoint's metadata.
  std::string config_json;
  bool show_progress = true;
  // Save a checkpoint after every epoch (else only after the last).
  bool checkpoint_every_epoch = true;
  // The teacher for recipe.distill > 0: logits [N, classes] of a batch of images.
  std::function<absl::StatusOr<Tensor>(const Tensor& images)> teacher;
};

// Trains `engine` on `train_set` (CIFAR-10 training images) per `recipe`, evaluating on
// `test_set` after each epoch with the engine's evaluation-mode forward (for QAT: fake-quant
// accuracy).
absl::StatusOr<TrainingRunOutput> RunTraining(train::TrainingEngine& engine,
                                              const TrainRecipe& recipe,
                                              const data::Dataset& train_set,
                                              const data::Dataset& test_set,
                                              const TrainingRunIo& io);

// Top-1 accuracy (fraction) of the engine's evaluation-mode forward on the first `images` test
// images (0: all), in batches of 200.
absl::StatusOr<double> EngineTestAccuracy(train::TrainingEngine& engine,
                                          const data::Dataset& test_set, int64_t images,
                                          bool show_progress, const std::string& label);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_TRAINING_RUN_H_
