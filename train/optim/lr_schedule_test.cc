// Tests of the learning-rate schedules (train/optim/lr_schedule.h): the config-string parser and
// its errors, validation, and every schedule form against PyTorch 1.13's schedulers stepped once
// per step (torch_lr_schedule.py: LinearLR + CosineAnnealingLR / MultiStepLR / LambdaLR through
// SequentialLR).
//
// Tolerance: |qlab − torch| <= 1e-6 × |torch| at every step. qlab evaluates the closed forms;
// PyTorch steps its chainable (recursive) forms in double, each step multiplying the previous lr
// by a ratio, so its rounding accumulates: ~1e-16 per step, amplified near the end of a cosine
// decay to min_lr 0 where the ratio (1 + cos(πt/T)) / (1 + cos(π(t−1)/T)) is computed from
// differences of nearly equal numbers (relative error ~1e-16 × T², about 1e-10 for the T = 1000
// runs here). 1e-6 is far above that and far below what any real mistake produces: one step of
// offset in the warm-up or the cosine changes the lr by >= π / (2T) ≈ 1.6e-3 relative in the
// middle of a 1000-step decay (O(1) near its end), a milestone off by one step or a wrong warm-up
// slope by a factor of gamma or start_factor at some step. Observed on this machine (printed
// per case): at most 1.7e-15 relative, i.e. PyTorch's recursion loses almost nothing here.
#include "train/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace qlab::train {
namespace {

constexpr double kRelativeTolerance = 1e-6;

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

LrRunShape RunShape(int64_t total_steps, int64_t steps_per_epoch = 1, int64_t warmup_steps = 0) {
  LrRunShape run;
  run.base_lr = 0.1;
  run.total_steps = total_steps;
  run.steps_per_epoch = steps_per_epoch;
  run.warmup_steps = warmup_steps;
  return run;
}

// --- parsing and validation ----------------------------------------------------------------

TEST(ParseLrScheduleTest, ParsesEveryForm) {
  absl::StatusOr<LrSchedule> constant = ParseLrSchedule("constant", RunShape(100));
  ASSERT_TRUE(constant.ok()) << constant.status();
  EXPECT_EQ(constant->decay, LrDecay::kConstant);

  absl::StatusOr<LrSchedule> cosine = ParseLrSchedule("cosine", RunShape(100));
  ASSERT_TRUE(cosine.ok()) << cosine.status();
  EXPECT_EQ(cosine->decay, LrDecay::kCosine);
  EXPECT_EQ(cosine->min_lr, 0.0);

  absl::StatusOr<LrSchedule> cosine_min = ParseLrSchedule("cosine:1e-4", RunShape(100));
  ASSERT_TRUE(cosine_min.ok()) << cosine_min.status();
  EXPECT_EQ(cosine_min->min_lr, 1e-4);

  // Milestones are epochs, times steps_per_epoch.
  absl::StatusOr<LrSchedule> step = ParseLrSchedule("step:100, 150:0.2", RunShape(200 * 391, 391));
  ASSERT_TRUE(step.ok()) << step.status();
  EXPECT_EQ(step->decay, LrDecay::kMultiStep);
  EXPECT_EQ(step->milestones, (std::vector<int64_t>{100 * 391, 150 * 391}));
  EXPECT_EQ(step->gamma, 0.2);
  EXPECT_EQ(step->total_steps, 200 * 391);

  absl::StatusOr<LrSchedule> default_gamma = ParseLrSchedule("multistep:30,60", RunShape(90));
  ASSERT_TRUE(default_gamma.ok()) << default_gamma.status();
  EXPECT_EQ(default_gamma->gamma, 0.1);
}

TEST(ParseLrScheduleTest, ErrorsNameTheBadPart) {
  struct Bad {
    const char* spec;
    LrRunShape run;
    const char* named;
  };
  const Bad bad[] = {
      {"linear", RunShape(100), "linear"},
      {"cosine:abc", RunShape(100), "abc"},
      {"cosine:0.5", RunShape(100), "min_lr"},  // above base_lr 0.1
      {"cosine:1e-3:7", RunShape(100), "at most"},
      {"constant:1", RunShape(100), "at most"},
      {"step", RunShape(100), "milestones"},
      {"step::0.1", RunShape(100), "milestone"},
      {"step:30,x:0.1", RunShape(100), "\"x\""},
      {"step:30,20", RunShape(100), "milestone"},  // not increasing
      {"step:30,60:2", RunShape(100), "gamma"},
      {"step:30:nan", RunShape(100), "nan"},
      {"step:30,60", RunShape(100, 2), "120"},       // epoch 60 = step 120, past the run
      {"step:3", RunShape(100, 1, 5), "milestone"},  // inside the warm-up
      {"cosine", RunShape(0), "total_steps"},
      {"cosine", RunShape(100, 1, 100), "warmup_steps"},
      {"cosine", RunShape(100, 0), "steps_per_epoch"},
  };
  for (const Bad& b : bad) {
    const absl::StatusOr<LrSchedule> s = ParseLrSchedule(b.spec, b.run);
    ASSERT_FALSE(s.ok()) << b.spec;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << b.spec;
    EXPECT_NE(s.status().message().find(b.named), absl::string_view::npos)
        << b.spec << ": " << s.status();
  }
}

TEST(LrScheduleTest, ValidateRejectsBadWarmupFactorAndStrayMilestones) {
  LrSchedule s;
  s.total_steps = 100;
  s.warmup_steps = 10;
  s.warmup_start_factor = 0.0;
  EXPECT_EQ(ValidateLrSchedule(s).code(), absl::StatusCode::kInvalidArgument);
  s.warmup_start_factor = 0.5;
  EXPECT_TRUE(ValidateLrSchedule(s).ok());
  s.milestones = {50};  // a cosine schedule has none
  EXPECT_EQ(ValidateLrSchedule(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LrScheduleTest, SpecRoundTrips) {
  for (const char* spec : {"constant", "cosine:0.00025", "step:10,30,45:0.3"}) {
    absl::StatusOr<LrSchedule> s = ParseLrSchedule(spec, RunShape(50));
    ASSERT_TRUE(s.ok()) << s.status();
    absl::StatusOr<LrSchedule> again = ParseLrSchedule(LrScheduleSpec(*s), RunShape(50));
    ASSERT_TRUE(again.ok()) << LrScheduleSpec(*s) << ": " << again.status();
    EXPECT_EQ(again->decay, s->decay) << spec;
    EXPECT_EQ(again->min_lr, s->min_lr) << spec;
    EXPECT_EQ(again->milestones, s->milestones) << spec;
    EXPECT_EQ(again->gamma, s->gamma) << spec;
  }
}

// Endpoints stated in the header, computed from their definitions.
TEST(LrScheduleTest, EndpointsAndClamping) {
  absl::StatusOr<LrSchedule> s = ParseLrSchedule("cosine:0.001", RunShape(100, 1, 10));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_DOUBLE_EQ(LearningRate(*s, 0), 0.1 * s->warmup_start_factor);
  EXPECT_DOUBLE_EQ(LearningRate(*s, 10), 0.1);     // the end of the warm-up is base_lr
  EXPECT_DOUBLE_EQ(LearningRate(*s, 100), 0.001);  // min_lr at total_steps
  EXPECT_EQ(LearningRate(*s, -5), LearningRate(*s, 0));
  EXPECT_EQ(LearningRate(*s, 1000), LearningRate(*s, 100));
  // Monotone decay after the warm-up.
  for (int64_t step = 11; step <= 100; ++step) {
    EXPECT_LT(LearningRate(*s, step), LearningRate(*s, step - 1)) << step;
  }
}

// --- against PyTorch -----------------------------------------------------------------------

struct TorchCase {
  const char* name;
  const char* spec;
  LrRunShape run;
};

std::vector<TorchCase> TorchCases() {
  LrRunShape pytorch_default_warmup = RunShape(97, 1, 7);
  pytorch_default_warmup.warmup_start_factor = 1.0 / 3.0;  // LinearLR's default
  return {
      {"cosine", "cosine", RunShape(1000)},
      {"cosine_min_warmup", "cosine:1e-4", RunShape(1000, 1, 50)},
      {"cosine_short_warmup", "cosine", pytorch_default_warmup},
      {"multistep", "step:300,600,900:0.1", RunShape(1000)},
      {"multistep_epochs_warmup", "step:20,30:0.2",
       [&] {
         LrRunShape r = RunShape(40 * 5, 5, 25);  // 40 epochs of 5 steps, milestones at 100, 150
         r.warmup_start_factor = 0.01;
         return r;
       }()},
      {"constant_warmup", "constant", RunShape(60, 1, 10)},
  };
}

class LrScheduleTorchTest : public ::testing::Test {
 protected:
  // One Python process for all cases: importing torch takes about a second.
  static void SetUpTestSuite() {
    std::vector<std::string> names;
    for (const TorchCase& c : TorchCases()) {
      absl::StatusOr<LrSchedule> s = ParseLrSchedule(c.spec, c.run);
      if (!s.ok()) {
        std::cerr << c.name << ": " << s.status() << "\n";
        return;
      }
      std::ofstream json(absl::StrCat(OutDir(), "/", c.name, ".json"));
      json << absl::StrFormat(
          "{\"base_lr\": %.17g, \"total_steps\": %d, \"warmup_steps\": %d, "
          "\"warmup_start_factor\": %.17g, \"decay\": \"%s\", \"min_lr\": %.17g, "
          "\"milestones\": [%s], \"gamma\": %.17g}\n",
          s->base_lr, s->total_steps, s->warmup_steps, s->warmup_start_factor,
          LrDecayName(s->decay), s->min_lr, absl::StrJoin(s->milestones, ", "), s->gamma);
      if (!json.good()) return;
      names.push_back(c.name);
    }
    const std::string command = absl::StrCat("/usr/bin/python3 train/optim/torch_lr_schedule.py ",
                                             OutDir(), " ", absl::StrJoin(names, " "));
    python_ok_ = std::system(command.c_str()) == 0;
  }
  static bool python_ok_;
};
bool LrScheduleTorchTest::python_ok_ = false;

std::vector<double> ReadDoubles(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::vector<double> values;
  double v;
  while (file.read(reinterpret_cast<char*>(&v), sizeof(v))) values.push_back(v);
  return values;
}

TEST_F(LrScheduleTorchTest, MatchesPyTorchSchedulersSteppedPerStep) {
  ASSERT_TRUE(python_ok_) << "torch_lr_schedule.py failed: is python3-torch installed "
                             "(tools/setup.sh)?";
  for (const TorchCase& c : TorchCases()) {
    SCOPED_TRACE(c.name);
    const LrSchedule s = *ParseLrSchedule(c.spec, c.run);
    const std::vector<double> torch = ReadDoubles(absl::StrCat(OutDir(), "/", c.name, ".lr"));
    ASSERT_EQ(torch.size(), static_cast<size_t>(s.total_steps + 1));
    double max_relative = 0.0, min_lr = torch[0], max_lr = torch[0];
    for (int64_t step = 0; step <= s.total_steps; ++step) {
      const double mine = LearningRate(s, step);
      const double theirs = torch[step];
      ASSERT_LE(std::fabs(mine - theirs), kRelativeTolerance * std::fabs(theirs))
          << "step " << step << ": qlab " << mine << ", torch " << theirs;
      if (theirs != 0.0) max_relative = std::max(max_relative, std::fabs(mine - theirs) / theirs);
      min_lr = std::min(min_lr, theirs);
      max_lr = std::max(max_lr, theirs);
    }
    std::cout << c.name << " (" << c.spec << "): max relative difference " << max_relative
              << " over " << s.total_steps + 1 << " steps, lr from " << max_lr << " to " << min_lr
              << "\n";
    // The schedule really varies (a constant reference would make the comparison weak).
    EXPECT_LT(min_lr, 0.5 * max_lr);
  }
}

}  // namespace
}  // namespace qlab::train
