// A small but real sweep end to end: two configurations (ResNet20 from the shared checkpoint,
// xnnpack and tensorrt, min-max calibration on 64 images, 200 test images) through RunSweep. The
// records, summary.csv and report.html exist; the same sweep run twice gives identical records
// apart from their timing sections, and identical summaries apart from the latency column; a
// second sweep into the same folder is refused (nothing is overwritten); config errors name the
// key.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "experiments/ptq.h"
#include "experiments/record_io.h"
#include "experiments/sweep.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {
namespace {

std::string Scratch() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

SweepConfig SmallSweep() {
  const nlohmann::json config = nlohmann::json::parse(R"({
    "models": ["resnet20"],
    "quantizers": ["xnnpack", "tensorrt"],
    "calibrators": ["minmax"],
    "calib_images": 64,
    "eval_images": 200,
    "batch_size": 50,
    "timing_runs": 2,
    "sqnr_images": 8
  })");
  absl::StatusOr<SweepConfig> sweep = SweepConfigFromJson(config, "small", "test config");
  EXPECT_TRUE(sweep.ok()) << sweep.status();
  sweep->common.show_progress = false;
  // Tests may not write into the workspace: the training archive is extracted into scratch.
  sweep->common.cache_dir = Scratch() + "/cache";
  return *sweep;
}

// summary.csv without its latency column (the only timing value in it).
std::string WithoutLatency(const std::string& csv) {
  const std::vector<std::string> header = SummaryHeader();
  const size_t column = static_cast<size_t>(
      std::find(header.begin(), header.end(), "fp32_batch1_median_ms") - header.begin());
  std::string out;
  for (const absl::string_view line : absl::StrSplit(csv, '\n')) {
    std::vector<std::string> fields = absl::StrSplit(line, ',');
    if (fields.size() > column) fields.erase(fields.begin() + static_cast<long>(column));
    out += absl::StrJoin(fields, ",") + "\n";
  }
  return out;
}

TEST(SweepEndToEndTest, RecordsSummaryReportAndDeterminism) {
  const SweepConfig sweep = SmallSweep();
  ASSERT_EQ(ExpandGrid(sweep).size(), 2u);
  const absl::StatusOr<SweepOutput> first = RunSweep(sweep, Scratch() + "/first");
  ASSERT_TRUE(first.ok()) << first.status();
  const absl::StatusOr<SweepOutput> second = RunSweep(sweep, Scratch() + "/second");
  ASSERT_TRUE(second.ok()) << second.status();

  ASSERT_EQ(first->records.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(FileExists(first->record_files[i])) << first->record_files[i];
    const absl::StatusOr<nlohmann::json> on_disk = ReadJsonFile(first->record_files[i]);
    ASSERT_TRUE(on_disk.ok()) << on_disk.status();
    EXPECT_EQ(*on_disk, first->records[i]);
    EXPECT_EQ(DeterministicPart(first->records[i]).dump(2),
              DeterministicPart(second->records[i]).dump(2));
    // Per-layer SQNR: ResNet20 has 19 convs and one linear, all quantized by default.
    EXPECT_EQ(first->records[i]["results"]["per_layer_sqnr_db"].size(), 20u);
  }
  EXPECT_EQ(first->records[0]["config"]["quantizer"], "xnnpack");
  EXPECT_EQ(first->records[1]["config"]["activation_scheme"], "symmetric");  // tensorrt's own

  const std::string summary = ReadText(first->summary_csv);
  EXPECT_EQ(std::count(summary.begin(), summary.end(), '\n'), 3);  // header + 2 rows
  EXPECT_EQ(WithoutLatency(summary), WithoutLatency(ReadText(second->summary_csv)));

  const std::string report = ReadText(first->report_html);
  EXPECT_NE(report.find("</html>"), std::string::npos);
  EXPECT_NE(report.find("resnet20-xnnpack-per_channel-backend-minmax-seed0.json"),
            std::string::npos);
  // Accuracy by calibrator, FP32/fake-quant, latency, SQNR: one model, four plots.
  size_t svgs = 0;
  for (size_t at = report.find("<svg"); at != std::string::npos; at = report.find("<svg", at + 1)) {
    ++svgs;
  }
  EXPECT_EQ(svgs, 4u);

  // Nothing is overwritten: the same folder again is refused before anything runs.
  const absl::StatusOr<SweepOutput> again = RunSweep(sweep, Scratch() + "/first");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  // --resume reads the records back instead of rerunning them.
  SweepOptions resume;
  resume.resume = true;
  const absl::StatusOr<SweepOutput> resumed = RunSweep(sweep, Scratch() + "/first", resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->records, first->records);
}

TEST(SweepEndToEndTest, ConfigErrorsNameTheKey) {
  const auto error = [](const char* text) {
    return std::string(
        SweepConfigFromJson(nlohmann::json::parse(text), "x", "cfg.json").status().message());
  };
  EXPECT_NE(error(R"({"models": ["resnet20"], "calibrator": ["minmax"]})").find("\"calibrator\""),
            std::string::npos);
  EXPECT_NE(error(R"({"models": []})").find("\"models\""), std::string::npos);
  EXPECT_NE(error(R"({"quantizers": ["x86"]})").find("\"models\" is required"), std::string::npos);
  EXPECT_NE(error(R"({"models": ["resnet20"], "calib_repeats": 0})").find("calib_repeats"),
            std::string::npos);
  EXPECT_NE(error(R"({"models": ["resnet20"], "activation_schemes": ["asym"]})").find("asym"),
            std::string::npos);
  EXPECT_NE(error(R"({"models": ["resnet20"], "layer_overrides": {"conv1": 3}})").find("conv1"),
            std::string::npos);
}

TEST(SweepEndToEndTest, GridOrderAndNames) {
  SweepConfig s;
  s.name = "g";
  s.models = {"resnet20"};
  s.quantizers = {"x86"};
  s.calibrators = {"", "percentile:99.99"};
  s.calib_repeats = 2;
  const std::vector<PtqConfig> runs = ExpandGrid(s);
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(RunName(runs[0]), "resnet20-x86-per_channel-backend-default-seed0");
  EXPECT_EQ(RunName(runs[1]), "resnet20-x86-per_channel-backend-default-seed1");
  EXPECT_EQ(RunName(runs[3]), "resnet20-x86-per_channel-backend-percentile_99.99-seed1");
}

}  // namespace
}  // namespace qlab::experiments
