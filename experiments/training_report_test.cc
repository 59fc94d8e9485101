// RenderTrainingReport: the numbers and curves of a run reach the page, bad logs are refused.
#include "experiments/training_report.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {
namespace {

nlohmann::json QatRecord() {
  return nlohmann::json::parse(R"({
    "config": {"quant": {"model": "resnet20", "weight_bits": 4, "activation_bits": 4},
               "lsq": true},
    "results": {"fp32": {"top1": 0.9173}, "ptq_baseline_fake_quant_top1": 0.78,
                "fake_quant": {"top1": 0.8912}, "int8": {"top1": 0.8871}},
    "training": {"steps": 3, "images_per_second": 151.25},
    "provenance": {"git_commit": "abc123"}})");
}

constexpr char kLog[] =
    "step,epoch,loss,lr,train_accuracy,test_accuracy,images_per_second\n"
    "1,0,2.5,0.002,0.25,,100\n"
    "2,0,1.75,0.001,0.5,,100\n"
    "2,1,2.125,0.001,0.375,0.8912,100\n";

TEST(TrainingReportTest, ShowsTheAccuraciesAndTheCurves) {
  absl::StatusOr<std::string> html = RenderTrainingReport(QatRecord(), kLog);
  ASSERT_TRUE(html.ok()) << html.status();
  for (const char* expected : {"QAT resnet20 W4A4 LSQ", "91.73 %", "78.00 %", "89.12 %", "88.71 %",
                               "151.2", "abc123", "training loss", "<svg"}) {
    EXPECT_TRUE(absl::StrContains(*html, expected)) << expected;
  }
  // The step losses are plotted (tooltips carry exact values); the epoch row's mean is not a
  // point of the step curve.
  EXPECT_TRUE(absl::StrContains(*html, "1.7500"));
  EXPECT_FALSE(absl::StrContains(*html, "2.1250"));
  // Deterministic.
  EXPECT_EQ(*html, *RenderTrainingReport(QatRecord(), kLog));
}

TEST(TrainingReportTest, RefusesALogThatIsNotATrainingLog) {
  EXPECT_FALSE(RenderTrainingReport(QatRecord(), "a,b\n1,2\n").ok());
  const absl::Status short_row =
      RenderTrainingReport(QatRecord(),
                           "step,epoch,loss,lr,train_accuracy,test_accuracy,images_per_second\n"
                           "1,0,2.5\n")
          .status();
  EXPECT_TRUE(absl::StrContains(short_row.message(), "row 1 has 3 cells")) << short_row;
}

}  // namespace
}  // namespace qlab::experiments
