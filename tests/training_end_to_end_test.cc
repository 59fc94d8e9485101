// The training runners end to end on the real shared data, small but real:
//   * FP32 training (RunTrain) is reproducible: the same recipe and seed give the same log (the
//     images/s column aside), the same curve and bit-identical checkpoints; a run interrupted
//     after one epoch and resumed gives exactly what the uninterrupted run gave.
//   * QAT (RunQat) runs from the shared ResNet20 checkpoint through calibration, a short
//     fine-tune, convert and the int8 engine, and records what it promises.
//   * Bad settings and reused folders are refused with the offending value named.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "experiments/qat.h"
#include "gtest/gtest.h"
#include "tests/checkpoint_expectations.h"
#include "models/safetensors.h"
#include "train/optim/checkpoint.h"

namespace qlab::experiments {
namespace {

std::string TmpDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

TrainConfig SmallTrain(const std::string& run_dir) {
  TrainConfig c;
  c.model = "resnet20";
  c.cache_dir = TmpDir() + "/cache";
  c.run_dir = run_dir;
  c.show_progress = false;
  c.recipe.epochs = 2;
  c.recipe.train_images = 192;
  c.recipe.batch_size = 64;
  c.recipe.eval_images = 100;
  c.recipe.lr = 0.05;
  c.recipe.warmup_epochs = 0.5;
  c.recipe.seed = 5;
  c.recipe.log_every_steps = 1;
  return c;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The log without its last column (images/s, a timing).
std::vector<std::string> LogWithoutSpeed(const std::string& path) {
  std::vector<std::string> rows;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    rows.emplace_back(line.substr(0, line.rfind(',')));
  }
  return rows;
}

TEST(TrainingEndToEndTest, Fp32TrainingIsReproducibleAndResumable) {
  const std::string dir = TmpDir() + "/train";
  auto first = RunTrain(SmallTrain(dir + "/a"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = RunTrain(SmallTrain(dir + "/b"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*first)["training"]["curve"].size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    for (const char* key : {"train_loss", "train_top1", "test_top1", "lr_end", "step"}) {
      EXPECT_EQ((*first)["training"]["curve"][e][key], (*second)["training"]["curve"][e][key])
          << key;
    }
  }
  EXPECT_EQ(LogWithoutSpeed(dir + "/a/log.csv"), LogWithoutSpeed(dir + "/b/log.csv"));
  EXPECT_EQ(LogWithoutSpeed(dir + "/a/log.csv").size(), 1u + 3u + 1u + 3u + 1u)
      << "header, a row per step (3 per epoch) and one per epoch end";
  test_support::ExpectSameCheckpoint(dir + "/a/checkpoint-epoch-2.safetensors",
                    dir + "/b/checkpoint-epoch-2.safetensors");

  // Interrupted during epoch 2: a finished two-epoch run's folder with its last checkpoint
  // removed (the log still has epoch 2's rows, which resuming must drop and write again).
  auto full = RunTrain(SmallTrain(dir + "/c"));
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_EQ(std::remove((dir + "/c/checkpoint-epoch-2.safetensors").c_str()), 0);
  TrainConfig resumed = SmallTrain(dir + "/c");
  resumed.resume_from = dir + "/c/checkpoint-epoch-1.safetensors";
  auto rerun = RunTrain(resumed);
  ASSERT_TRUE(rerun.ok()) << rerun.status();
  EXPECT_EQ((*rerun)["training"]["resumed_at_epoch"], 1);
  test_support::ExpectSameCheckpoint(dir + "/a/checkpoint-epoch-2.safetensors",
                    dir + "/c/checkpoint-epoch-2.safetensors");
  EXPECT_EQ(LogWithoutSpeed(dir + "/a/log.csv"), LogWithoutSpeed(dir + "/c/log.csv"));

  // A finished run's folder is never reused.
  auto again = RunTrain(SmallTrain(dir + "/a"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
}

TEST(TrainingEndToEndTest, BadRecipeNamesTheSetting) {
  TrainConfig c = SmallTrain(TmpDir() + "/bad");
  c.recipe.lr = -1;
  EXPECT_TRUE(absl::StrContains(RunTrain(c).status().message(), "lr = -1")) << RunTrain(c).status();
  c = SmallTrain(TmpDir() + "/bad");
  c.recipe.schedule = "triangle";
  EXPECT_TRUE(absl::StrContains(RunTrain(c).status().message(), "triangle"));
  c = SmallTrain(TmpDir() + "/bad");
  c.model = "resnet18";
  EXPECT_TRUE(absl::StrContains(RunTrain(c).status().message(), "ImageNet"));
}

TEST(TrainingEndToEndTest, QatRunsFromThePretrainedCheckpointToInt8) {
  QatConfig c;
  c.quant.model = "resnet20";
  c.quant.quantizer = "x86";
  c.quant.cache_dir = TmpDir() + "/cache";
  c.quant.calib_images = 64;
  c.quant.eval_images = 200;
  c.quant.batch_size = 100;
  c.quant.show_progress = false;
  c.recipe.epochs = 1;
  c.recipe.train_images = 128;
  c.recipe.batch_size = 64;
  c.recipe.lr = 0.001;
  c.recipe.eval_images = 100;
  c.run_dir = TmpDir() + "/qat";
  auto record = RunQat(c);
  ASSERT_TRUE(record.ok()) << record.status();
  const nlohmann::json& r = (*record)["results"];
  // A pretrained ResNet20 (91.7 % on the full test set) fine-tuned for two small steps at a low
  // learning rate stays a good classifier in fake-quant and int8: far above chance (10 %).
  EXPECT_GT(r["fp32"]["top1"].get<double>(), 0.8);
  EXPECT_GT(r["ptq_baseline_fake_quant_top1"].get<double>(), 0.8);
  EXPECT_GT(r["fake_quant"]["top1"].get<double>(), 0.8);
  ASSERT_TRUE(r["int8"].contains("top1")) << r["int8"].dump();
  EXPECT_GT(r["int8"]["top1"].get<double>(), 0.8);
  EXPECT_GT(r["int8"]["prediction_agreement_int8_fake_quant"].get<double>(), 0.95);
  EXPECT_EQ((*record)["training"]["steps"], 2);
  EXPECT_EQ((*record)["config"]["quant"]["calibrator"], "moving_average");
  EXPECT_TRUE(std::ifstream(c.run_dir + "/log.csv").good());
  EXPECT_TRUE(std::ifstream(c.run_dir + "/checkpoint-epoch-1.safetensors").good());
}

}  // namespace
}  // namespace qlab::experiments
