// report.html from synthetic records: the table has one row per configuration (seeds merged into
// mean +- std), there is one SVG per plot, text from records is escaped, and the same records
// give the same bytes. Also the chart helpers' tick arithmetic and the sensitivity page.
#include "experiments/report.h"

#include <string>
#include <vector>

#include "experiments/svg_chart.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {
namespace {

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

nlohmann::json Record(const std::string& model, const std::string& quantizer,
                      const std::string& calibrator, uint64_t seed, double fq) {
  nlohmann::json r;
  r["config"] = {{"model", model},           {"quantizer", quantizer},
                 {"calibrator", calibrator}, {"weight_granularity", "per_channel"},
                 {"activation_scheme", "affine"}, {"layer_overrides", nlohmann::json::object()},
                 {"calib_seed", seed},       {"calib_images", 64},
                 {"eval_images", 200}};
  r["inputs"] = {{"eval_images", 200}, {"calibration_images", 64}};
  r["provenance"] = {{"git_commit", "0123456789abcdef0123456789abcdef01234567"},
                     {"git_dirty", false}, {"cpu_model", "Test CPU"}, {"cpu_cores", 2},
                     {"highway_target", "AVX3_DL"}, {"build_mode", "opt"}};
  r["results"] = {{"fp32", {{"top1", 0.92}}},
                  {"fake_quant", {{"top1", fq}}},
                  {"prediction_agreement_fp32_fake_quant", 0.99},
                  {"int8", "not yet"},
                  {"per_layer_sqnr_db",
                   {{{"layer", "conv1"}, {"op", "conv2d"}, {"sqnr_db", 35.0}},
                    {{"layer", "layer1.0.conv1"}, {"op", "conv2d"}, {"sqnr_db", 28.5}},
                    {{"layer", "linear"}, {"op", "linear"}, {"sqnr_db", nullptr}}}}};
  r["timing"] = {{"calibration_seconds", 1.0},
                 {"fp32_fast_batch1", {{"batch", 1}, {"median_ms", 0.8}, {"p90_ms", 0.9}}},
                 {"fp32_fast_batch32", {{"batch", 32}, {"median_ms", 9.0}, {"p90_ms", 9.5}}}};
  return r;
}

std::vector<nlohmann::json> Records() {
  return {Record("resnet20", "xnnpack", "minmax", 0, 0.910),
          Record("resnet20", "xnnpack", "minmax", 1, 0.914),
          Record("resnet20", "x86", "minmax", 0, 0.905),
          Record("resnet20", "xnnpack", "entropy<script>", 0, 0.915),
          Record("resnet20", "x86", "entropy<script>", 0, 0.900)};
}

TEST(ReportTest, GroupsMergeSeeds) {
  const std::vector<RunGroup> groups = GroupRuns(Records());
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].members, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(groups[0].seeds, (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ(groups[0].fake_quant_top1.n, 2);
  EXPECT_NEAR(groups[0].fake_quant_top1.mean, 0.912, 1e-12);
  // Sample std of {0.910, 0.914}: |a - b| / sqrt(2).
  EXPECT_NEAR(groups[0].fake_quant_top1.std, 0.004 / std::sqrt(2.0), 1e-12);
  EXPECT_EQ(groups[0].sqnr_layers, (std::vector<std::string>{"conv1", "layer1.0.conv1", "linear"}));
  EXPECT_DOUBLE_EQ(groups[0].sqnr_db[1], 28.5);
  EXPECT_FALSE(std::isfinite(groups[0].sqnr_db[2]));  // null: identical outputs
}

TEST(ReportTest, TableRowsPlotsAndEscaping) {
  ReportOptions options;
  options.title = "sweep <test> & co";
  options.record_links = {"a.json", "b.json", "c.json", "d.json", "e.json"};
  const std::string html = RenderReport(Records(), options);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // One header row plus one row per configuration (the two seeds of xnnpack/minmax are one).
  EXPECT_EQ(Count(html, "<tr"), 1 + 4);
  EXPECT_NE(html.find("91.20 \u00b1 0.28"), std::string::npos) << "mean +- std over seeds";
  EXPECT_NE(html.find("href=\"a.json\""), std::string::npos);
  // One model: accuracy by calibrator, FP32/fake-quant/int8, latency, per-layer SQNR.
  EXPECT_EQ(Count(html, "<svg"), 4);
  EXPECT_EQ(Count(html, "</svg>"), 4);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("entropy&lt;script&gt;"), std::string::npos);
  EXPECT_NE(html.find("sweep &lt;test&gt; &amp; co"), std::string::npos);
  // Self-contained: no external resources.
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("http://", html.find("<body")), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html, RenderReport(Records(), options)) << "the page is a pure function";
}

TEST(ReportTest, TwoModelsTwoCalibratorChartsAndSqnrCharts) {
  std::vector<nlohmann::json> records = Records();
  records.push_back(Record("resnet56", "xnnpack", "minmax", 0, 0.93));
  const std::string html = RenderReport(records);
  EXPECT_EQ(Count(html, "<svg"), 2 + 1 + 1 + 2);
}

TEST(ReportTest, EmptyRecordsStillAPage) {
  const std::string html = RenderReport({});
  EXPECT_NE(html.find("No records"), std::string::npos);
  EXPECT_EQ(Count(html, "<svg"), 0);
}

TEST(ReportTest, MalformedRecordDoesNotCrash) {
  std::vector<nlohmann::json> records = Records();
  records.push_back(nlohmann::json{{"config", "oops"}, {"results", 3}});
  const std::string html = RenderReport(records);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

TEST(SvgChartTest, NiceTicksCoverTheRange) {
  EXPECT_EQ(NiceTicks(0.0, 1.0), (std::vector<double>{0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0}));
  const std::vector<double> t = NiceTicks(88.3, 92.1);
  EXPECT_LE(t.front(), 88.3);
  EXPECT_GE(t.back(), 92.1);
  EXPECT_GE(t.size(), 3u);
  EXPECT_LE(t.size(), 10u);
}

TEST(SvgChartTest, BarsHaveTooltipsAndErrorBars) {
  BarChart c;
  c.title = "t";
  c.groups = {"a", "b"};
  c.series = {{"s1", {1.0, 2.0}, {0.1, 0.0}}, {"s2", {std::nullopt, 3.0}, {}}};
  c.reference_lines = {{"ref", 2.5}};
  const std::string svg = RenderBarChart(c);
  EXPECT_EQ(Count(svg, "<rect x="), 3 + 2);  // three bars and two legend swatches
  EXPECT_EQ(Count(svg, "class=\"err\""), 1);
  EXPECT_EQ(Count(svg, "class=\"ref\""), 1);
  EXPECT_NE(svg.find("<title>a / s1: 1.00 \u00b1 0.10</title>"), std::string::npos) << svg;
}

TEST(SvgChartTest, HtmlEscape) {
  EXPECT_EQ(HtmlEscape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

TEST(ReportTest, SensitivityPage) {
  nlohmann::json s;
  s["config"] = {{"model", "resnet20"}, {"quantizer", "xnnpack"}, {"calibrator", "minmax"}};
  s["fp32_top1"] = 0.92;
  s["all_quantized_top1"] = 0.90;
  s["layers"] = {{{"layer", "conv1"}, {"rank", 1}, {"drop_alone_points", 1.5},
                  {"recovery_points", 1.2}, {"sqnr_db_alone", 20.0}},
                 {{"layer", "linear"}, {"rank", 2}, {"drop_alone_points", 0.1},
                  {"recovery_points", 0.0}, {"sqnr_db_alone", 40.0}}};
  s["suggestion"] = {{"keep_float", {"conv1"}}, {"top1", 0.915}, {"reason", "r"}};
  const std::string html = RenderSensitivityReport(s);
  EXPECT_EQ(Count(html, "<svg"), 2);
  EXPECT_EQ(Count(html, "<tr"), 1 + 2);
  EXPECT_NE(html.find("<b>conv1</b>"), std::string::npos);
}

}  // namespace
}  // namespace qlab::experiments
