// The sensitivity analysis on synthetic numbers: ranking by the drop a layer causes alone (ties
// by recovery, then SQNR), and the suggestion: the largest recoveries above the threshold, until
// the gap to FP32 is closed, at most max_suggestions.
#include "experiments/sensitivity.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qlab::experiments {
namespace {

LayerSensitivity L(std::string name, double only, double all_but, std::optional<double> sqnr) {
  LayerSensitivity s;
  s.layer = std::move(name);
  s.only_this_quantized_top1 = only;
  s.all_but_this_top1 = all_but;
  s.sqnr_db_alone = sqnr;
  return s;
}

std::vector<std::string> Names(const nlohmann::json& list) {
  std::vector<std::string> out;
  for (const nlohmann::json& n : list) out.push_back(n.get<std::string>());
  return out;
}

TEST(SensitivityTest, RanksByDropThenRecoveryThenSqnr) {
  // FP32 0.92, all quantized 0.90 (gap 2 points).
  const std::vector<LayerSensitivity> layers = {
      L("conv1", 0.915, 0.905, 30.0),   // drop 0.5, recovery 0.5
      L("l1", 0.920, 0.900, 40.0),      // drop 0, recovery 0
      L("l2", 0.905, 0.912, 25.0),      // drop 1.5, recovery 1.2
      L("l3", 0.915, 0.905, 20.0),      // drop 0.5, recovery 0.5, lower SQNR than conv1
      L("fc", 0.915, 0.908, 35.0),      // drop 0.5, recovery 0.8
  };
  const nlohmann::json r = AnalyzeSensitivity(0.92, 0.90, layers, {});
  EXPECT_EQ(Names(r["ranking"]), (std::vector<std::string>{"l2", "fc", "l3", "conv1", "l1"}));
  EXPECT_EQ(r["layers"][2]["rank"], 1);
  EXPECT_NEAR(r["layers"][2]["drop_alone_points"].get<double>(), 1.5, 1e-9);
  EXPECT_NEAR(r["layers"][2]["recovery_points"].get<double>(), 1.2, 1e-9);
  // Recoveries: l2 1.2, fc 0.8 -> 2.0 closes the 2-point gap; conv1/l3 are not needed.
  EXPECT_EQ(Names(r["suggestion"]["keep_float"]), (std::vector<std::string>{"l2", "fc"}));
}

TEST(SensitivityTest, SuggestionRespectsThresholdAndLimit) {
  const std::vector<LayerSensitivity> layers = {
      L("a", 0.80, 0.83, 20.0), L("b", 0.80, 0.83, 20.0), L("c", 0.80, 0.83, 20.0),
      L("d", 0.80, 0.83, 20.0), L("e", 0.80, 0.8005, 20.0)};
  SensitivityOptions options;
  options.max_suggestions = 2;
  const nlohmann::json r = AnalyzeSensitivity(0.92, 0.80, layers, options);
  EXPECT_EQ(Names(r["suggestion"]["keep_float"]), (std::vector<std::string>{"a", "b"}));
  options.max_suggestions = 10;
  options.min_gain_points = 5.0;  // nothing recovers 5 points
  const nlohmann::json none = AnalyzeSensitivity(0.92, 0.80, layers, options);
  EXPECT_TRUE(none["suggestion"]["keep_float"].empty());
  EXPECT_NE(none["suggestion"]["reason"].get<std::string>().find("spread"), std::string::npos);
}

TEST(SensitivityTest, NothingToRecover) {
  const nlohmann::json r =
      AnalyzeSensitivity(0.92, 0.9195, {L("a", 0.92, 0.921, 30.0)}, SensitivityOptions{});
  EXPECT_TRUE(r["suggestion"]["keep_float"].empty());
  EXPECT_NE(r["suggestion"]["reason"].get<std::string>().find("nothing to recover"),
            std::string::npos);
}

TEST(SensitivityTest, MissingSqnrSortsLastAmongEquals) {
  const nlohmann::json r = AnalyzeSensitivity(
      0.92, 0.90, {L("x", 0.91, 0.90, std::nullopt), L("y", 0.91, 0.90, 50.0)}, {});
  EXPECT_EQ(Names(r["ranking"]), (std::vector<std::string>{"y", "x"}));
  EXPECT_TRUE(r["layers"][0]["sqnr_db_alone"].is_null());
}

TEST(SensitivityTest, BaseWithOverridesIsRejected) {
  PtqConfig c;
  c.layer_overrides = {{"conv1", "float"}};
  EXPECT_EQ(RunSensitivity(c, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::experiments
