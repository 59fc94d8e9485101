// Accuracy regression tracking: reduced but real PTQ runs whose results are checked in as
// baselines (experiments/baselines/*.json) and compared on every test run.
//
// A case is a PtqConfig small enough for CI (ResNet20, a fixed calibration subset, the first
// 2,000 test images). Its summary keeps the numbers that matter: FP32, fake-quant and int8 top-1,
// the prediction agreement FP32 vs fake-quant and int8 vs fake-quant (the lowering's check), and
// the digests of the images used. The regression test fails with a
// readable diff when an accuracy moves by more than its tolerance or when agreement drops;
// baselines change only on purpose:
//
//   bazel run //experiments:update_baselines -- --reason="histogram observer: exact re-binning"
//
// which reruns every case and rewrites its baseline with the reason, the command and the commit.
#ifndef QLAB_EXPERIMENTS_REGRESSION_H_
#define QLAB_EXPERIMENTS_REGRESSION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/ptq.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct RegressionCase {
  std::string name;  // baseline file: experiments/baselines/<name>.json
  PtqConfig config;
};

std::vector<RegressionCase> RegressionCases();

// The tracked numbers of one PTQ record.
nlohmann::json RegressionSummary(const nlohmann::json& record);

// Allowed movement between a run and its baseline, in accuracy points (fractions x 100).
struct RegressionTolerance {
  // FP32 runs on float kernels whose summation order depends on the Highway target: a
  // near-tie can flip on another machine. 0.1 points = 2 of 2,000 images.
  double fp32_points = 0.1;
  // Fake-quant adds rounding boundaries that such differences can cross: 0.3 points = 6 images.
  double fake_quant_points = 0.3;
  // Prediction agreements (FP32 vs fake-quant, int8 vs fake-quant) may drop by at most this much;
  // int8 top-1 moves under fake_quant_points.
  double agreement_drop_points = 0.5;
};

// One line per violation ("fake_quant_top1: 91.20 % -> 90.60 % (-0.60 points, tolerance 0.30)");
// empty when the run is within tolerance. Different image digests are a violation too: the
// comparison would be meaningless.
std::vector<std::string> CompareToBaseline(const nlohmann::json& summary,
                                           const nlohmann::json& baseline,
                                           const RegressionTolerance& tolerance = {});

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_REGRESSION_H_
