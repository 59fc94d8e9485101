// Regression cases, summaries and the baseline comparison (experiments/regression.h).
#include "experiments/regression.h"

#include <cmath>

#include "absl/strings/str_format.h"

namespace qlab::experiments {

std::vector<RegressionCase> RegressionCases() {
  std::vector<RegressionCase> cases;
  for (const char* quantizer : {"xnnpack", "x86", "tensorrt"}) {
    RegressionCase c;
    c.name = absl::StrFormat("resnet20_%s", quantizer);
    c.config.model = "resnet20";
    c.config.quantizer = quantizer;
    c.config.calib_images = 256;
    c.config.calib_seed = 0;
    c.config.eval_images = 2000;
    c.config.batch_size = 100;
    c.config.timing_runs = 0;
    c.config.show_progress = false;
    cases.push_back(c);
  }
  return cases;
}

nlohmann::json RegressionSummary(const nlohmann::json& record) {
  const nlohmann::json& r = record["results"];
  return nlohmann::json{
      {"config", record["config"]},
      {"fp32_top1", r["fp32"]["top1"]},
      {"fake_quant_top1", r["fake_quant"]["top1"]},
      {"agreement_fp32_fake_quant", r["prediction_agreement_fp32_fake_quant"]},
      {"int8_top1", r["int8"].value("top1", -1.0)},
      {"agreement_int8_fake_quant", r["int8"].value("prediction_agreement_int8_fake_quant", -1.0)},
      {"weights_sha256", record["inputs"]["weights_sha256"]},
      {"calibration_image_list_sha256", record["inputs"]["calibration_image_list_sha256"]},
      {"eval_image_list_sha256", record["inputs"]["eval_image_list_sha256"]},
  };
}

std::vector<std::string> CompareToBaseline(const nlohmann::json& summary,
                                           const nlohmann::json& baseline,
                                           const RegressionTolerance& tolerance) {
  std::vector<std::string> violations;
  for (const char* digest :
       {"weights_sha256", "calibration_image_list_sha256", "eval_image_list_sha256"}) {
    if (summary.value(digest, "") != baseline.value(digest, "")) {
      violations.push_back(absl::StrFormat("%s: %s -> %s (not the inputs the baseline used)",
                                           digest, baseline.value(digest, "?"),
                                           summary.value(digest, "?")));
    }
  }
  const auto compare = [&](const char* key, double allowed_drop, double allowed_rise) {
    if (!summary.contains(key) || !baseline.contains(key)) {
      violations.push_back(absl::StrFormat("%s: missing", key));
      return;
    }
    const double now = 100.0 * summary[key].get<double>();
    const double then = 100.0 * baseline[key].get<double>();
    const double delta = now - then;
    // A tiny epsilon: the values are ratios of integers printed through JSON doubles.
    if (delta < -allowed_drop - 1e-9 || delta > allowed_rise + 1e-9) {
      violations.push_back(
          absl::StrFormat("%s: %.2f %% -> %.2f %% (%+.2f points, tolerance -%.2f/+%.2f)", key, then,
                          now, delta, allowed_drop, allowed_rise));
    }
  };
  // Accuracy moving up beyond the tolerance is flagged too: it means the numbers changed, and
  // the baseline should be updated on purpose, with a reason.
  compare("fp32_top1", tolerance.fp32_points, tolerance.fp32_points);
  compare("fake_quant_top1", tolerance.fake_quant_points, tolerance.fake_quant_points);
  compare("agreement_fp32_fake_quant", tolerance.agreement_drop_points, 100.0);
  compare("int8_top1", tolerance.fake_quant_points, tolerance.fake_quant_points);
  compare("agreement_int8_fake_quant", tolerance.agreement_drop_points, 100.0);
  return violations;
}

}  // namespace qlab::experiments
