// Per-layer sensitivity: which layers cost the accuracy, and which to keep in higher precision.
//
// AIMET's layer-wise analysis, on qlab's PTQ runner. For each quantized conv/linear layer L of a
// model (the layers the fully quantized run reports SQNR for), two more runs of RunPtq with
// per-layer overrides (PtqConfig::layer_overrides):
//   only L quantized    {"*": "float", L: "default"}  -> the accuracy drop L causes on its own
//                                                        and L's own SQNR (no upstream error)
//   all but L           {L: "float"}                  -> how much keeping L in float recovers
// Layers are ranked by the drop alone (ties: larger recovery, then lower SQNR alone), and the
// suggestion is the layers whose all-but-one run recovers most, above a noise threshold (a
// couple of test images' worth), stopping once their summed recoveries close the gap to FP32.
// The suggestion is then checked with one more run with exactly those layers in float.
//
// The analysis (AnalyzeSensitivity) is a pure function of the numbers, unit-tested on synthetic
// ones; RunSensitivity does the 2 x layers + 2 runs and returns one JSON record.
#ifndef QLAB_EXPERIMENTS_SENSITIVITY_H_
#define QLAB_EXPERIMENTS_SENSITIVITY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/ptq.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct LayerSensitivity {
  std::string layer;
  std::optional<double> sqnr_db_all_quantized;  // in the fully quantized model (accumulated)
  std::optional<double> sqnr_db_alone;          // with only this layer quantized
  double only_this_quantized_top1 = 0.0;        // fractions
  double all_but_this_top1 = 0.0;
};

struct SensitivityOptions {
  // A layer is suggested only if keeping it in float recovers at least this many points
  // (differences below a couple of test images are noise).
  double min_gain_points = 0.1;
  int max_suggestions = 3;
};

// {"layers": [{layer, rank, drop_alone_points, recovery_points, sqnr_db_alone,
//   sqnr_db_all_quantized, only_this_quantized_top1, all_but_this_top1}, ...] (graph order),
//  "ranking": [layer names, most sensitive first],
//  "suggestion": {"keep_float": [...], "reason": "..."}}
nlohmann::json AnalyzeSensitivity(double fp32_top1, double all_quantized_top1,
                                  const std::vector<LayerSensitivity>& layers,
                                  const SensitivityOptions& options);

struct SensitivityRunOptions {
  SensitivityOptions analysis;
  std::vector<std::string> layers;  // a subset to analyse; empty: every quantized layer
  bool verify = true;               // one more run with the suggested layers in float
  std::string command;              // recorded
};

// `base` is the fully quantized configuration (its layer_overrides must be empty). Returns the
// sensitivity record: the analysis above plus "config", "inputs", "provenance" of the base run,
// "fp32_top1", "all_quantized_top1", "suggestion.top1" (when verified), "runs" (each run's
// overrides and accuracies) and "timing".
absl::StatusOr<nlohmann::json> RunSensitivity(const PtqConfig& base,
                                              const SensitivityRunOptions& options);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_SENSITIVITY_H_
