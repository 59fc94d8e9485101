// Sweeps: a grid of PTQ runs from one JSON config, recorded and reported.
//
// A sweep config (experiments/configs/*.json) lists the grid and the settings common to every
// run:
//
//   {
//     "title": "CIFAR-10 ResNets: calibrators x quantizers",   // optional, the report's title
//     "models": ["resnet20", "resnet56"],
//     "quantizers": ["xnnpack", "x86", "tensorrt"],
//     "calibrators": ["minmax", "histogram", "percentile:99.99", "entropy", "mse"],
//     "weight_granularities": ["per_channel", "per_tensor"],
//     "activation_schemes": ["backend"],          // "backend" | "affine" | "symmetric"
//     "calib_images": 512, "calib_seed": 0, "calib_repeats": 1,
//     "eval_images": 0, "batch_size": 100, "timing_runs": 20, "threads": 2,
//     "sqnr_images": 32, "engine": "fast",
//     "layer_overrides": {"conv1": "float"}       // optional, applied to every run
//   }
//
// Only "models" is required; missing axes take the PtqConfig defaults (the backend's calibrator
// is "default"). With calib_repeats = K each configuration runs with seeds calib_seed ..
// calib_seed + K - 1 (calibration variance: the report shows mean +- std). RunSweep runs every
// combination in a fixed order (model, quantizer, weight granularity, activation scheme,
// calibrator, seed) through RunPtq, writes each record as <out>/<run name>.json, then
// <out>/summary.csv and <out>/report.html. It never replaces a file: an existing record is an
// error before anything runs, unless `resume` is set, in which case it is read back instead of
// rerun (an interrupted sweep continues where it stopped).
#ifndef QLAB_EXPERIMENTS_SWEEP_H_
#define QLAB_EXPERIMENTS_SWEEP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/ptq.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct SweepConfig {
  std::string name;  // the config file's stem: the default output folder's prefix
  std::string title;  // the report's title ("title" key); empty: "PTQ sweep <name>"
  std::vector<std::string> models;
  std::vector<std::string> quantizers = {"xnnpack"};
  std::vector<std::string> calibrators = {""};  // "" = the backend's default
  std::vector<std::string> weight_granularities = {"per_channel"};
  std::vector<std::string> activation_schemes = {""};  // "" = the backend's own
  int calib_repeats = 1;
  PtqConfig common;  // every other setting, shared by all runs
};

// Largest grid a sweep config may describe (a typo in calib_repeats must not become an
// allocation of billions of runs).
inline constexpr int64_t kMaxSweepRuns = 10000;

// InvalidArgument naming `what` and the key: unknown keys (a typo would silently sweep the
// default), wrong types, integers outside their field's range, empty lists, calib_repeats < 1,
// grids of more than kMaxSweepRuns runs, two runs that would share a record name.
absl::StatusOr<SweepConfig> SweepConfigFromJson(const nlohmann::json& value,
                                                const std::string& name, const std::string& what);

// Every run of the grid, in the documented order.
std::vector<PtqConfig> ExpandGrid(const SweepConfig& sweep);

// "resnet20-xnnpack-per_channel-affine-percentile_99.99-seed0": every grid axis, with
// characters that do not belong in a file name replaced by '_'. Unique within a grid.
std::string RunName(const PtqConfig& config);

struct SweepOptions {
  std::string command;  // shown in the report
  bool resume = false;
};

struct SweepOutput {
  std::vector<nlohmann::json> records;  // in grid order
  std::vector<std::string> record_files;  // <out>/<run name>.json
  std::string summary_csv;
  std::string report_html;
};

absl::StatusOr<SweepOutput> RunSweep(const SweepConfig& sweep, const std::string& out_dir,
                                     const SweepOptions& options = {});

// summary.csv's header and one row per record (no timing columns but the FP32 batch-1
// latency, so that the file of two identical sweeps differs only there).
std::vector<std::string> SummaryHeader();
std::vector<std::string> SummaryRow(const nlohmann::json& record, const std::string& run_name);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_SWEEP_H_
