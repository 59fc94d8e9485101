// report.html: what a sweep (or a sensitivity analysis) found, as one self-contained page.
//
// The sweep writes a JSON record per run (experiments/ptq.h); this turns a list of them into a
// page a person would rather look at than read: a results table (best configuration per model
// highlighted) and inline SVG charts (experiments/svg_chart.h) --
//   - fake-quant top-1 by calibrator, one chart per model, bars per quantizer / granularity /
//     activation scheme, the FP32 accuracy as a dashed line, error bars = std over calibration
//     seeds when the sweep repeated them;
//   - FP32 / fake-quant / int8 top-1 per model and quantizer (best configuration of each);
//   - latency per engine and batch size against FP32 (the records' timing; int8 when lowering
//     has recorded it);
//   - per-layer SQNR float vs fake-quant along the network, per model.
// Runs that differ only in their calibration seed form one row ("group"): mean +- std of the
// fake-quant top-1 over the seeds (calibration variance). Nothing here reads files: the page is a
// pure function of the records, so two sweeps of the same config give the same page apart from
// the timing numbers.
#ifndef QLAB_EXPERIMENTS_REPORT_H_
#define QLAB_EXPERIMENTS_REPORT_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct ReportOptions {
  std::string title = "qlab PTQ sweep";
  std::string command;  // how the records were produced, shown under the title
  // Per record, a link (relative path) to its JSON file; empty or shorter: no links.
  std::vector<std::string> record_links;
};

// Mean and sample standard deviation (n - 1; 0 for a single value).
struct MeanStd {
  double mean = 0.0;
  double std = 0.0;
  int n = 0;
};
MeanStd ComputeMeanStd(const std::vector<double>& values);

// Runs that differ only in calib_seed, in order of first appearance.
struct RunGroup {
  std::string model, quantizer, calibrator, weight_granularity, activation_scheme;
  std::string overrides;  // layer_overrides as compact JSON ("{}" when none)
  std::vector<size_t> members;  // indices into the records
  std::vector<uint64_t> seeds;
  MeanStd fp32_top1;        // fractions (0.9173)
  MeanStd fake_quant_top1;
  MeanStd agreement;
  MeanStd int8_top1;        // n == 0 when the records carry no int8 accuracy
  // Mean SQNR (dB) per layer over the members, in graph order.
  std::vector<std::string> sqnr_layers;
  std::vector<double> sqnr_db;
};
std::vector<RunGroup> GroupRuns(const std::vector<nlohmann::json>& records);

// The whole page (<!DOCTYPE html> ... </html>), self-contained.
std::string RenderReport(const std::vector<nlohmann::json>& records,
                         const ReportOptions& options = {});

// A sensitivity record (experiments/sensitivity.h) as a page: the ranking table, the per-layer
// accuracy-drop / recovery bars, the SQNR line and the suggestion.
std::string RenderSensitivityReport(const nlohmann::json& sensitivity);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_REPORT_H_
