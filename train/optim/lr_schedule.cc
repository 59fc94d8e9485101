// Learning-rate schedules (train/optim/lr_schedule.h): validation, the closed forms, and the
// config-string parser.
//
// The closed forms evaluate PyTorch's own expressions in the same order (LinearLR's and
// CosineAnnealingLR's _get_closed_form_lr), and the multistep decay multiplies by gamma once per
// milestone as MultiStepLR does, so the values differ from PyTorch's stepped schedulers only by
// the rounding of PyTorch's recursive (chainable) updates.
#include "train/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace qlab::train {
namespace {

constexpr double kPi = 3.14159265358979323846;  // math.pi, the same double

absl::Status Invalid(absl::string_view field, double value, absl::string_view requirement) {
  return absl::InvalidArgumentError(absl::StrCat(
      "learning-rate schedule: ", field, " = ", absl::StrFormat("%.17g", value), " ", requirement));
}

absl::StatusOr<double> ParseNumber(absl::string_view spec, absl::string_view what,
                                   absl::string_view text) {
  double value = 0.0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &value) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat("learning-rate schedule \"", spec, "\": ", what,
                                                   " \"", text, "\" is not a finite number"));
  }
  return value;
}

absl::StatusOr<std::vector<int64_t>> ParseMilestones(absl::string_view spec, absl::string_view text,
                                                     int64_t steps_per_epoch) {
  std::vector<int64_t> steps;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int64_t epoch = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(piece), &epoch) || epoch < 0) {
      return absl::InvalidArgumentError(absl::StrCat("learning-rate schedule \"", spec,
                                                     "\": milestone \"", piece,
                                                     "\" is not a non-negative integer"));
    }
    if (epoch > std::numeric_limits<int64_t>::max() / steps_per_epoch) {
      return absl::InvalidArgumentError(absl::StrCat("learning-rate schedule \"", spec,
                                                     "\": milestone ", epoch, " × ",
                                                     steps_per_epoch, " steps overflows"));
    }
    steps.push_back(epoch * steps_per_epoch);
  }
  return steps;
}

}  // namespace

absl::string_view LrDecayName(LrDecay decay) {
  switch (decay) {
    case LrDecay::kConstant:
      return "constant";
    case LrDecay::kCosine:
      return "cosine";
    case LrDecay::kMultiStep:
      return "multistep";
  }
  return "unknown";
}

absl::Status ValidateLrSchedule(const LrSchedule& s) {
  if (!std::isfinite(s.base_lr) || s.base_lr < 0.0) {
    return Invalid("base_lr", s.base_lr, "must be finite and >= 0");
  }
  if (s.total_steps <= 0) {
    return Invalid("total_steps", static_cast<double>(s.total_steps), "must be > 0");
  }
  if (s.warmup_steps < 0 || s.warmup_steps >= s.total_steps) {
    return Invalid("warmup_steps", static_cast<double>(s.warmup_steps),
                   absl::StrCat("must be in [0, total_steps = ", s.total_steps, ")"));
  }
  if (s.warmup_steps > 0 &&
      !(s.warmup_start_factor > 0.0 && s.warmup_start_factor <= 1.0)) {  // NaN fails too
    return Invalid("warmup_start_factor", s.warmup_start_factor, "must be in (0, 1]");
  }
  if (s.decay != LrDecay::kMultiStep && !s.milestones.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("learning-rate schedule: milestones (", absl::StrJoin(s.milestones, ","),
                     ") given for a ", LrDecayName(s.decay), " decay, which has none"));
  }
  if (s.decay == LrDecay::kCosine && !(s.min_lr >= 0.0 && s.min_lr <= s.base_lr)) {
    return Invalid("min_lr", s.min_lr, absl::StrCat("must be in [0, base_lr = ", s.base_lr, "]"));
  }
  if (s.decay == LrDecay::kMultiStep) {
    if (!(s.gamma > 0.0 && s.gamma <= 1.0)) return Invalid("gamma", s.gamma, "must be in (0, 1]");
    int64_t previous = s.warmup_steps;
    for (const int64_t milestone : s.milestones) {
      if (milestone <= previous || milestone >= s.total_steps) {
        return Invalid("milestone", static_cast<double>(milestone),
                       absl::StrCat("(in steps) must be after the warm-up (", s.warmup_steps,
                                    " steps) and the previous milestone, and before the end of "
                                    "the run (",
                                    s.total_steps, " steps)"));
      }
      previous = milestone;
    }
  }
  return absl::OkStatus();
}

double LearningRate(const LrSchedule& s, int64_t step) {
  step = std::clamp<int64_t>(step, 0, s.total_steps);
  if (step < s.warmup_steps) {
    const double f = s.warmup_start_factor;
    return s.base_lr *
           (f + (1.0 - f) * static_cast<double>(step) / static_cast<double>(s.warmup_steps));
  }
  switch (s.decay) {
    case LrDecay::kConstant:
      return s.base_lr;
    case LrDecay::kCosine: {
      const double t = static_cast<double>(step - s.warmup_steps);
      const double period = static_cast<double>(s.total_steps - s.warmup_steps);
      return s.min_lr + (s.base_lr - s.min_lr) * (1.0 + std::cos(kPi * t / period)) / 2.0;
    }
    case LrDecay::kMultiStep: {
      double lr = s.base_lr;
      for (const int64_t milestone : s.milestones) {
        if (milestone <= step) lr *= s.gamma;
      }
      return lr;
    }
  }
  return s.base_lr;
}

absl::StatusOr<LrSchedule> ParseLrSchedule(absl::string_view spec, const LrRunShape& run) {
  if (run.steps_per_epoch <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "learning-rate schedule: steps_per_epoch = ", run.steps_per_epoch, " must be > 0"));
  }
  LrSchedule s;
  s.base_lr = run.base_lr;
  s.total_steps = run.total_steps;
  s.warmup_steps = run.warmup_steps;
  s.warmup_start_factor = run.warmup_start_factor;
  const std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  const absl::string_view kind = absl::StripAsciiWhitespace(parts[0]);
  auto too_many_fields = [&](size_t allowed) {
    return absl::InvalidArgumentError(absl::StrCat("learning-rate schedule \"", spec, "\": ", kind,
                                                   " takes at most ", allowed - 1,
                                                   " ':'-separated argument(s)"));
  };
  if (kind == "constant") {
    if (parts.size() > 1) return too_many_fields(1);
    s.decay = LrDecay::kConstant;
  } else if (kind == "cosine") {
    if (parts.size() > 2) return too_many_fields(2);
    s.decay = LrDecay::kCosine;
    if (parts.size() == 2) {
      QLAB_ASSIGN_OR_RETURN(s.min_lr, ParseNumber(spec, "min_lr", parts[1]));
    }
  } else if (kind == "step" || kind == "multistep") {
    if (parts.size() > 3) return too_many_fields(3);
    if (parts.size() < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("learning-rate schedule \"", spec, "\": ", kind,
                       " needs its milestones, e.g. \"step:100,150:0.1\" (epochs, then gamma)"));
    }
    s.decay = LrDecay::kMultiStep;
    QLAB_ASSIGN_OR_RETURN(s.milestones, ParseMilestones(spec, parts[1], run.steps_per_epoch));
    if (parts.size() == 3) {
      QLAB_ASSIGN_OR_RETURN(s.gamma, ParseNumber(spec, "gamma", parts[2]));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("learning-rate schedule \"", spec, "\": unknown kind \"", kind,
                     "\" (expected constant, cosine[:min_lr] or step:<epochs,...>[:gamma])"));
  }
  absl::Status valid = ValidateLrSchedule(s);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(valid.message(), " (from \"", spec, "\")"));
  }
  return s;
}

std::string LrScheduleSpec(const LrSchedule& s) {
  switch (s.decay) {
    case LrDecay::kConstant:
      return "constant";
    case LrDecay::kCosine:
      return absl::StrFormat("cosine:%.17g", s.min_lr);
    case LrDecay::kMultiStep:
      return absl::StrFormat("multistep:%s:%.17g", absl::StrJoin(s.milestones, ","), s.gamma);
  }
  return "unknown";
}

}  // namespace qlab::train
