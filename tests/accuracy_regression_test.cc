// Accuracy regression test: every case of experiments/regression.h is run for real and compared
// with its checked-in baseline (experiments/baselines/<case>.json). A failure prints what moved
// and by how much, and how to update the baselines when the change is intended.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "experiments/regression.h"
#include "gtest/gtest.h"

namespace qlab::experiments {
namespace {

class AccuracyRegressionTest : public ::testing::TestWithParam<RegressionCase> {};

TEST_P(AccuracyRegressionTest, WithinToleranceOfBaseline) {
  const RegressionCase& c = GetParam();
  const std::string baseline_path = absl::StrCat("experiments/baselines/", c.name, ".json");
  const absl::StatusOr<nlohmann::json> baseline = ReadJsonFile(baseline_path);
  ASSERT_TRUE(baseline.ok()) << baseline.status();
  PtqConfig config = c.config;
  // Tests may not write into the workspace: the training archive goes to the scratch folder.
  const char* tmp = std::getenv("TEST_TMPDIR");
  config.cache_dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/cache";
  const absl::StatusOr<nlohmann::json> record = RunPtq(config);
  ASSERT_TRUE(record.ok()) << record.status();
  const nlohmann::json summary = RegressionSummary(*record);
  const std::vector<std::string> violations = CompareToBaseline(summary, *baseline);
  EXPECT_TRUE(violations.empty())
      << c.name << " moved away from " << baseline_path << " (produced at commit "
      << baseline->value("git_commit", "?") << ", reason: " << baseline->value("reason", "?")
      << "):\n  " << absl::StrJoin(violations, "\n  ")
      << "\nIf this change is intended, update the baselines on purpose:\n"
      << "  bazel run //experiments:update_baselines -- --reason=\"<why>\"";
}

INSTANTIATE_TEST_SUITE_P(Cases, AccuracyRegressionTest, ::testing::ValuesIn(RegressionCases()),
                         [](const ::testing::TestParamInfo<RegressionCase>& info) {
                           return info.param.name;
                         });

TEST(CompareToBaselineTest, ReportsEachMovementReadably) {
  const nlohmann::json baseline = {{"fp32_top1", 0.9150},
                                   {"fake_quant_top1", 0.9120},
                                   {"agreement_fp32_fake_quant", 0.990},
                                   {"int8_top1", 0.9115},
                                   {"agreement_int8_fake_quant", 0.9985},
                                   {"weights_sha256", "a"},
                                   {"calibration_image_list_sha256", "b"},
                                   {"eval_image_list_sha256", "c"}};
  nlohmann::json run = baseline;
  EXPECT_TRUE(CompareToBaseline(run, baseline).empty());
  run["fake_quant_top1"] = 0.9110;  // -0.10 points: within 0.30
  EXPECT_TRUE(CompareToBaseline(run, baseline).empty());
  run["fake_quant_top1"] = 0.9060;           // -0.60 points
  run["agreement_fp32_fake_quant"] = 0.980;  // -1.0 points
  run["eval_image_list_sha256"] = "d";
  const std::vector<std::string> v = CompareToBaseline(run, baseline);
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0], "eval_image_list_sha256: c -> d (not the inputs the baseline used)");
  EXPECT_EQ(v[1], "fake_quant_top1: 91.20 % -> 90.60 % (-0.60 points, tolerance -0.30/+0.30)");
  EXPECT_EQ(v[2],
            "agreement_fp32_fake_quant: 99.00 % -> 98.00 % (-1.00 points, tolerance "
            "-0.50/+100.00)");
}

}  // namespace
}  // namespace qlab::experiments
