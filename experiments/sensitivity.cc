// AnalyzeSensitivity / RunSensitivity (experiments/sensitivity.h).
#include "experiments/sensitivity.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/progress.h"
#include "core/status_macros.h"

namespace qlab::experiments {
namespace {

nlohmann::json OptionalNumber(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

std::optional<double> SqnrOf(const nlohmann::json& record, const std::string& layer) {
  for (const nlohmann::json& e : record["results"]["per_layer_sqnr_db"]) {
    if (e["layer"] == layer && e["sqnr_db"].is_number()) return e["sqnr_db"].get<double>();
  }
  return std::nullopt;
}

double Top1(const nlohmann::json& record) {
  return record["results"]["fake_quant"]["top1"].get<double>();
}

}  // namespace

nlohmann::json AnalyzeSensitivity(double fp32_top1, double all_quantized_top1,
                                  const std::vector<LayerSensitivity>& layers,
                                  const SensitivityOptions& options) {
  const size_t n = layers.size();
  std::vector<double> drop(n), recovery(n), sqnr_alone(n);
  for (size_t i = 0; i < n; ++i) {
    drop[i] = 100.0 * (fp32_top1 - layers[i].only_this_quantized_top1);
    recovery[i] = 100.0 * (layers[i].all_but_this_top1 - all_quantized_top1);
    // A layer without an SQNR sorts last among equals.
    sqnr_alone[i] = layers[i].sqnr_db_alone.value_or(std::numeric_limits<double>::infinity());
  }
  std::vector<size_t> ranked(n);
  std::iota(ranked.begin(), ranked.end(), 0);
  std::stable_sort(ranked.begin(), ranked.end(), [&](size_t a, size_t b) {
    if (drop[a] != drop[b]) return drop[a] > drop[b];
    if (recovery[a] != recovery[b]) return recovery[a] > recovery[b];
    return sqnr_alone[a] < sqnr_alone[b];
  });
  std::vector<int> rank(n);
  for (size_t r = 0; r < n; ++r) rank[ranked[r]] = static_cast<int>(r) + 1;

  // The suggestion: largest recoveries first, above the threshold, until their sum closes the
  // gap to FP32 (recoveries of different layers overlap, so the sum is optimistic; the verify
  // run measures the real combination).
  const double gap = 100.0 * (fp32_top1 - all_quantized_top1);
  std::vector<size_t> by_recovery(n);
  std::iota(by_recovery.begin(), by_recovery.end(), 0);
  std::stable_sort(by_recovery.begin(), by_recovery.end(), [&](size_t a, size_t b) {
    if (recovery[a] != recovery[b]) return recovery[a] > recovery[b];
    return drop[a] > drop[b];
  });
  std::vector<std::string> keep;
  std::string reason;
  if (gap < options.min_gain_points) {
    reason = absl::StrFormat(
        "The fully quantized model is %+.2f points from FP32, within the %.2f-point noise "
        "threshold: nothing to recover, and the per-layer differences are noise.",
        -gap, options.min_gain_points);
  } else {
    double recovered = 0.0;
    for (const size_t i : by_recovery) {
      if (static_cast<int>(keep.size()) >= options.max_suggestions) break;
      if (recovered >= gap) break;
      if (recovery[i] < options.min_gain_points) break;
      keep.push_back(layers[i].layer);
      recovered += recovery[i];
    }
    reason = keep.empty()
                 ? absl::StrFormat("The %.2f-point gap to FP32 is spread over the layers: no "
                                   "single layer recovers %.2f points or more.",
                                   gap, options.min_gain_points)
                 : absl::StrFormat("Gap to FP32 %.2f points; the suggested layers recover %.2f "
                                   "points one at a time (threshold %.2f points, at most %d "
                                   "layers).",
                                   gap, recovered, options.min_gain_points,
                                   options.max_suggestions);
  }

  nlohmann::json out_layers = nlohmann::json::array();
  for (size_t i = 0; i < n; ++i) {
    out_layers.push_back({{"layer", layers[i].layer},
                          {"rank", rank[i]},
                          {"drop_alone_points", drop[i]},
                          {"recovery_points", recovery[i]},
                          {"sqnr_db_alone", OptionalNumber(layers[i].sqnr_db_alone)},
                          {"sqnr_db_all_quantized", OptionalNumber(layers[i].sqnr_db_all_quantized)},
                          {"only_this_quantized_top1", layers[i].only_this_quantized_top1},
                          {"all_but_this_top1", layers[i].all_but_this_top1}});
  }
  std::vector<std::string> ranking;
  for (const size_t i : ranked) ranking.push_back(layers[i].layer);
  return {{"layers", out_layers},
          {"ranking", ranking},
          {"suggestion", {{"keep_float", keep}, {"reason", reason}}}};
}

absl::StatusOr<nlohmann::json> RunSensitivity(const PtqConfig& base,
                                              const SensitivityRunOptions& options) {
  if (!base.layer_overrides.empty()) {
    return absl::InvalidArgumentError(
        "sensitivity: the base configuration must quantize every layer (layer_overrides empty)");
  }
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::fprintf(stderr, "sensitivity %s: every layer quantized\n", base.model.c_str());
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json full, RunPtq(base));
  const double fp32 = full["results"]["fp32"]["top1"].get<double>();
  const double all_q = Top1(full);

  std::vector<std::string> layers;
  for (const nlohmann::json& e : full["results"]["per_layer_sqnr_db"]) {
    layers.push_back(e["layer"].get<std::string>());
  }
  if (layers.empty()) {
    return absl::FailedPreconditionError(
        "sensitivity: the base run reports no quantized layers (sqnr_images must be > 0)");
  }
  if (!options.layers.empty()) {
    for (const std::string& l : options.layers) {
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) {
        return absl::InvalidArgumentError(absl::StrCat("sensitivity: layer \"", l,
                                                       "\" is not a quantized layer of ",
                                                       base.model, " (",
                                                       absl::StrJoin(layers, ", "), ")"));
      }
    }
    layers = options.layers;
  }

  nlohmann::json runs = nlohmann::json::array();
  runs.push_back({{"layer_overrides", nlohmann::json::object()}, {"fake_quant_top1", all_q}});
  std::vector<LayerSensitivity> results;
  const size_t total = 2 * layers.size();
  size_t done = 0;
  for (const std::string& layer : layers) {
    LayerSensitivity s;
    s.layer = layer;
    s.sqnr_db_all_quantized = SqnrOf(full, layer);
    for (const bool alone : {true, false}) {
      PtqConfig c = base;
      c.timing_runs = 0;  // latency does not change with the overrides that matter here
      c.layer_overrides = alone ? std::map<std::string, std::string>{{"*", "float"},
                                                                     {layer, "default"}}
                                : std::map<std::string, std::string>{{layer, "float"}};
      ++done;
      std::fprintf(stderr, "sensitivity %s [%zu/%zu] %s %s  elapsed %s%s\n", base.model.c_str(),
                   done, total, alone ? "only" : "all but", layer.c_str(),
                   FormatDuration(elapsed()).c_str(),
                   done > 1 ? absl::StrCat("  ETA ", FormatDuration(elapsed() / (done - 1) *
                                                                    (total - done + 1)))
                                  .c_str()
                            : "");
      absl::StatusOr<nlohmann::json> r = RunPtq(c);
      if (!r.ok()) {
        return absl::Status(r.status().code(), absl::StrCat("sensitivity run ",
                                                            alone ? "only " : "all but ", layer,
                                                            ": ", r.status().message()));
      }
      if (alone) {
        s.only_this_quantized_top1 = Top1(*r);
        s.sqnr_db_alone = SqnrOf(*r, layer);
      } else {
        s.all_but_this_top1 = Top1(*r);
      }
      runs.push_back({{"layer_overrides", c.layer_overrides}, {"fake_quant_top1", Top1(*r)}});
    }
    results.push_back(std::move(s));
  }

  nlohmann::json record = AnalyzeSensitivity(fp32, all_q, results, options.analysis);
  if (options.verify && !record["suggestion"]["keep_float"].empty()) {
    PtqConfig c = base;
    c.timing_runs = 0;
    for (const nlohmann::json& l : record["suggestion"]["keep_float"]) {
      c.layer_overrides[l.get<std::string>()] = "float";
    }
    std::fprintf(stderr, "sensitivity %s: verify the suggestion\n", base.model.c_str());
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json verified, RunPtq(c));
    record["suggestion"]["top1"] = Top1(verified);
    runs.push_back({{"layer_overrides", c.layer_overrides}, {"fake_quant_top1", Top1(verified)}});
  }
  record["command"] = options.command;
  record["config"] = full["config"];
  record["inputs"] = full["inputs"];
  record["provenance"] = full["provenance"];
  record["fp32_top1"] = fp32;
  record["all_quantized_top1"] = all_q;
  record["min_gain_points"] = options.analysis.min_gain_points;
  record["runs"] = runs;
  record["timing"] = {{"total_seconds", elapsed()}, {"base_run", full["timing"]}};
  return record;
}

}  // namespace qlab::experiments
