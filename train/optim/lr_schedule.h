// Learning-rate schedules for qlab training: the learning rate of every optimizer step of a run,
// as a pure function of the step, equal to PyTorch 1.13's schedulers stepped once per step.
//
// A schedule is an optional linear warm-up followed by one decay:
//   * warm-up, steps [0, warmup_steps): base_lr × (f + (1 − f) × step / warmup_steps) with
//     f = warmup_start_factor — torch.optim.lr_scheduler.LinearLR(start_factor=f,
//     end_factor=1, total_iters=warmup_steps);
//   * then, with t = step − warmup_steps and T = total_steps − warmup_steps, one of
//       constant:  base_lr;
//       cosine:    min_lr + (base_lr − min_lr) × (1 + cos(π t / T)) / 2 — CosineAnnealingLR's
//                  closed form with T_max = T, eta_min = min_lr (reaches min_lr at the end of
//                  the run, one step after the last step);
//       multistep: base_lr × gamma^(number of milestones <= step) — MultiStepLR. Milestones count
//                  from the start of the run (they are absolute steps, not shifted by the
//                  warm-up), so "the lr drops at epoch 30" means the same with or without
//                  warm-up. In PyTorch terms: SequentialLR([LinearLR(...), MultiStepLR(
//                  milestones=[m − warmup_steps ...])], milestones=[warmup_steps]).
// With warm-up the PyTorch equivalent is SequentialLR([LinearLR, <decay>], [warmup_steps]);
// train/optim/lr_schedule_test.cc checks every form against PyTorch itself.
//
// Schedules usually come from a config string (ParseLrSchedule):
//   "constant"
//   "cosine"                 cosine to min_lr 0
//   "cosine:<min_lr>"        e.g. "cosine:1e-4"
//   "multistep:<m1>,<m2>,...:<gamma>" or "step:..." (the same), milestones in epochs,
//                            e.g. "step:100,150:0.1" (the He et al. CIFAR recipe); ":<gamma>"
//                            may be left out (gamma 0.1).
// Milestone epochs become steps by multiplying by LrRunShape::steps_per_epoch (pass 1 to give
// milestones in steps).
//
//   LrRunShape run;                    // 200 epochs of 391 batches, 5 epochs of warm-up
//   run.total_steps = 200 * 391;
//   run.steps_per_epoch = 391;
//   run.warmup_steps = 5 * 391;
//   QLAB_ASSIGN_OR_RETURN(LrSchedule schedule, ParseLrSchedule("step:100,150:0.1", run));
//   sgd.set_lr(static_cast<float>(LearningRate(schedule, step)));
#ifndef QLAB_TRAIN_OPTIM_LR_SCHEDULE_H_
#define QLAB_TRAIN_OPTIM_LR_SCHEDULE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qlab::train {

enum class LrDecay : uint8_t { kConstant, kCosine, kMultiStep };

// "constant", "cosine", "multistep".
absl::string_view LrDecayName(LrDecay decay);

struct LrSchedule {
  double base_lr = 0.1;
  int64_t total_steps = 1;           // optimizer steps in the whole run, > 0
  int64_t warmup_steps = 0;          // [0, total_steps)
  double warmup_start_factor = 0.1;  // (0, 1]; used only when warmup_steps > 0
  LrDecay decay = LrDecay::kCosine;
  double min_lr = 0.0;              // cosine: [0, base_lr]
  std::vector<int64_t> milestones;  // multistep: strictly increasing, in (warmup_steps,
                                    // total_steps), absolute steps
  double gamma = 0.1;               // multistep: (0, 1]
};

// InvalidArgument naming the field and its value when a field is outside the range stated above
// (non-finite values included).
absl::Status ValidateLrSchedule(const LrSchedule& schedule);

// The learning rate of optimizer step `step` (0-based: step 0 is the first update). Steps before
// 0 give step 0's rate, steps at or after total_steps the rate at total_steps (the end value of
// the decay: min_lr for cosine). `schedule` must be valid (ValidateLrSchedule).
double LearningRate(const LrSchedule& schedule, int64_t step);

// What a config string does not say about a run.
struct LrRunShape {
  double base_lr = 0.1;
  int64_t total_steps = 1;
  int64_t steps_per_epoch = 1;  // > 0; milestones in the string are multiplied by it
  int64_t warmup_steps = 0;
  double warmup_start_factor = 0.1;
};

// A schedule from a config string (grammar at the top of this file) and the run's shape.
// InvalidArgument naming the string and the bad part (unknown kind, a number that does not
// parse, too many fields) or, from ValidateLrSchedule, the bad value.
absl::StatusOr<LrSchedule> ParseLrSchedule(absl::string_view spec, const LrRunShape& run);

// The schedule as a config string that ParseLrSchedule(…, steps_per_epoch = 1) turns back into
// the same decay (milestones in steps; numbers printed to round-trip), for records and logs.
std::string LrScheduleSpec(const LrSchedule& schedule);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPTIM_LR_SCHEDULE_H_
