// The recipe flags (see recipe_flags.h).
#include "experiments/recipe_flags.h"

#include "absl/flags/flag.h"
#include "core/status_macros.h"
#include "experiments/record_io.h"
#include "train/optim/checkpoint.h"

ABSL_FLAG(int, epochs, 1, "training epochs");
ABSL_FLAG(int64_t, train_images, 0,
          "training images per epoch (the first N of each epoch's seeded permutation; 0: all)");
ABSL_FLAG(int, train_batch_size, 128, "training batch size");
ABSL_FLAG(double, lr, 0.1, "base learning rate");
ABSL_FLAG(double, momentum, 0.9, "SGD momentum");
ABSL_FLAG(bool, nesterov, false, "Nesterov momentum");
ABSL_FLAG(double, weight_decay, 5e-4, "weight decay (conv/linear weights only unless --decay_all)");
ABSL_FLAG(bool, decay_all, false, "weight decay on batch-norm parameters, biases and scales too");
ABSL_FLAG(std::string, schedule, "cosine",
          "learning-rate schedule: constant, cosine, cosine:<min_lr>, step:<epoch>,...:<gamma>");
ABSL_FLAG(double, warmup_epochs, 0.0, "linear warm-up (epochs, fractions allowed)");
ABSL_FLAG(float, label_smoothing, 0.0f, "cross-entropy label smoothing");
ABSL_FLAG(float, distill, 0.0f,
          "QAT: knowledge distillation from the FP32 model, the weight of its soft targets in "
          "[0, 1] (0: labels only)");
ABSL_FLAG(uint64_t, seed, 0, "seed of the data order, augmentation and initialization");
ABSL_FLAG(int64_t, epoch_eval_images, 0, "test images evaluated after each epoch (0: all)");
ABSL_FLAG(int64_t, freeze_bn_after_steps, -1,
          "QAT: freeze batch-norm statistics after this many steps (-1: never)");
ABSL_FLAG(int64_t, freeze_observers_after_steps, -1,
          "QAT: freeze observers after this many steps (-1: never)");
ABSL_FLAG(int, log_every_steps, 50, "steps between training-log rows");
ABSL_FLAG(std::string, out, "", "run folder (new); default results/<qat|train>/run-<N>");
ABSL_FLAG(std::string, resume, "",
          "an interrupted run's folder: continue from its latest checkpoint");

namespace qlab::experiments {

void SetRecipeFlagDefaults(const TrainRecipe& d) {
  absl::SetFlag(&FLAGS_epochs, d.epochs);
  absl::SetFlag(&FLAGS_train_images, d.train_images);
  absl::SetFlag(&FLAGS_train_batch_size, d.batch_size);
  absl::SetFlag(&FLAGS_lr, d.lr);
  absl::SetFlag(&FLAGS_momentum, d.momentum);
  absl::SetFlag(&FLAGS_nesterov, d.nesterov);
  absl::SetFlag(&FLAGS_weight_decay, d.weight_decay);
  absl::SetFlag(&FLAGS_decay_all, d.decay_all);
  absl::SetFlag(&FLAGS_schedule, d.schedule);
  absl::SetFlag(&FLAGS_warmup_epochs, d.warmup_epochs);
  absl::SetFlag(&FLAGS_label_smoothing, d.label_smoothing);
  absl::SetFlag(&FLAGS_distill, d.distill);
  absl::SetFlag(&FLAGS_seed, d.seed);
  absl::SetFlag(&FLAGS_epoch_eval_images, d.eval_images);
  absl::SetFlag(&FLAGS_freeze_bn_after_steps, d.freeze_bn_after_steps);
  absl::SetFlag(&FLAGS_freeze_observers_after_steps, d.freeze_observers_after_steps);
  absl::SetFlag(&FLAGS_log_every_steps, d.log_every_steps);
}

TrainRecipe RecipeFromFlags() {
  TrainRecipe r;
  r.epochs = absl::GetFlag(FLAGS_epochs);
  r.train_images = absl::GetFlag(FLAGS_train_images);
  r.batch_size = absl::GetFlag(FLAGS_train_batch_size);
  r.lr = absl::GetFlag(FLAGS_lr);
  r.momentum = absl::GetFlag(FLAGS_momentum);
  r.nesterov = absl::GetFlag(FLAGS_nesterov);
  r.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  r.decay_all = absl::GetFlag(FLAGS_decay_all);
  r.schedule = absl::GetFlag(FLAGS_schedule);
  r.warmup_epochs = absl::GetFlag(FLAGS_warmup_epochs);
  r.label_smoothing = absl::GetFlag(FLAGS_label_smoothing);
  r.distill = absl::GetFlag(FLAGS_distill);
  r.seed = absl::GetFlag(FLAGS_seed);
  r.eval_images = absl::GetFlag(FLAGS_epoch_eval_images);
  r.freeze_bn_after_steps = absl::GetFlag(FLAGS_freeze_bn_after_steps);
  r.freeze_observers_after_steps = absl::GetFlag(FLAGS_freeze_observers_after_steps);
  r.log_every_steps = absl::GetFlag(FLAGS_log_every_steps);
  return r;
}

absl::StatusOr<RunFolder> RunFolderFromFlags(const std::string& default_prefix) {
  RunFolder folder;
  if (const std::string resume = absl::GetFlag(FLAGS_resume); !resume.empty()) {
    folder.run_dir = UnderWorkspace(resume);
    QLAB_ASSIGN_OR_RETURN(folder.resume_from, train::LatestCheckpoint(folder.run_dir));
    return folder;
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  folder.run_dir = out.empty() ? NewNumberedDir(default_prefix) : UnderWorkspace(out);
  return folder;
}

}  // namespace qlab::experiments
