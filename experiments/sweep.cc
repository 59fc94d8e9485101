// SweepConfigFromJson / ExpandGrid / RunSweep (experiments/sweep.h).
#include "experiments/sweep.h"

#include <chrono>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/progress.h"
#include "core/status_macros.h"
#include "experiments/record_io.h"
#include "experiments/report.h"

namespace qlab::experiments {
namespace {

absl::Status KeyError(const std::string& what, const std::string& key, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(what, ": \"", key, "\" ", why));
}

absl::StatusOr<std::vector<std::string>> StringList(const nlohmann::json& value,
                                                    const std::string& what,
                                                    const std::string& key) {
  if (!value.is_array() || value.empty()) {
    return KeyError(what, key, absl::StrCat("must be a non-empty list of strings, got ",
                                            value.dump()));
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const nlohmann::json& v : value) {
    if (!v.is_string()) {
      return KeyError(what, key, absl::StrCat("must hold strings, got ", v.dump()));
    }
    if (!seen.insert(v.get<std::string>()).second) {
      return KeyError(what, key, absl::StrCat("lists ", v.dump(), " twice"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// An integer in [min, max]. `max` is the range of the field it goes into (an int field must not
// silently wrap: 2^32 + 1 calibration repeats would otherwise become 1).
absl::StatusOr<int64_t> Integer(const nlohmann::json& value, const std::string& what,
                                const std::string& key, int64_t min,
                                int64_t max = std::numeric_limits<int>::max()) {
  // Non-negative integers beyond int64 are stored unsigned; get<int64_t> would wrap them.
  const bool fits = value.is_number_integer() &&
                    !(value.is_number_unsigned() &&
                      value.get<uint64_t>() > static_cast<uint64_t>(max)) &&
                    value.get<int64_t>() >= min && value.get<int64_t>() <= max;
  if (!fits) {
    return KeyError(what, key, absl::StrCat("must be an integer in [", min, ", ", max, "], got ",
                                            value.dump()));
  }
  return value.get<int64_t>();
}

absl::StatusOr<std::string> String(const nlohmann::json& value, const std::string& what,
                                   const std::string& key) {
  if (!value.is_string()) return KeyError(what, key, absl::StrCat("must be a string, got ", value.dump()));
  return value.get<std::string>();
}

// The grid's spelling of "the backend's own" for calibrators and activation schemes.
std::string Canonical(const std::string& v, const char* backend_word) {
  return v == backend_word ? "" : v;
}

std::string FileSafe(const std::string& s) {
  std::string out;
  for (const char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    out += ok ? c : '_';
  }
  return out;
}

std::string Fraction(const nlohmann::json& r, const char* a, const char* b = nullptr) {
  const nlohmann::json* v = r.contains("results") && r["results"].contains(a) ? &r["results"][a]
                                                                              : nullptr;
  if (v != nullptr && b != nullptr) v = v->is_object() && v->contains(b) ? &(*v)[b] : nullptr;
  return v != nullptr && v->is_number() ? absl::StrFormat("%.4f", v->get<double>()) : "";
}

}  // namespace

absl::StatusOr<SweepConfig> SweepConfigFromJson(const nlohmann::json& value,
                                                const std::string& name, const std::string& what) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON object"));
  }
  SweepConfig s;
  s.name = name;
  PtqConfig& c = s.common;
  for (const auto& [key, v] : value.items()) {
    if (key == "title") {
      QLAB_ASSIGN_OR_RETURN(s.title, String(v, what, key));
    } else if (key == "models") {
      QLAB_ASSIGN_OR_RETURN(s.models, StringList(v, what, key));
    } else if (key == "quantizers") {
      QLAB_ASSIGN_OR_RETURN(s.quantizers, StringList(v, what, key));
    } else if (key == "calibrators") {
      QLAB_ASSIGN_OR_RETURN(s.calibrators, StringList(v, what, key));
      for (std::string& cal : s.calibrators) cal = Canonical(cal, "default");
    } else if (key == "weight_granularities") {
      QLAB_ASSIGN_OR_RETURN(s.weight_granularities, StringList(v, what, key));
    } else if (key == "activation_schemes") {
      QLAB_ASSIGN_OR_RETURN(s.activation_schemes, StringList(v, what, key));
      for (std::string& a : s.activation_schemes) {
        if (a != "backend" && a != "affine" && a != "symmetric") {
          return KeyError(what, key, absl::StrCat("has \"", a,
                                                  "\": expected backend, affine or symmetric"));
        }
        a = Canonical(a, "backend");
      }
    } else if (key == "calib_images") {
      QLAB_ASSIGN_OR_RETURN(c.calib_images,
                            Integer(v, what, key, 1, std::numeric_limits<int64_t>::max()));
    } else if (key == "calib_seed") {
      QLAB_ASSIGN_OR_RETURN(const int64_t seed,
                            Integer(v, what, key, 0, std::numeric_limits<int64_t>::max()));
      c.calib_seed = static_cast<uint64_t>(seed);
    } else if (key == "calib_repeats") {
      QLAB_ASSIGN_OR_RETURN(const int64_t k, Integer(v, what, key, 1));
      s.calib_repeats = static_cast<int>(k);
    } else if (key == "eval_images") {
      QLAB_ASSIGN_OR_RETURN(c.eval_images,
                            Integer(v, what, key, 0, std::numeric_limits<int64_t>::max()));
    } else if (key == "batch_size") {
      QLAB_ASSIGN_OR_RETURN(const int64_t b, Integer(v, what, key, 1));
      c.batch_size = static_cast<int>(b);
    } else if (key == "timing_runs") {
      QLAB_ASSIGN_OR_RETURN(const int64_t t, Integer(v, what, key, 0));
      c.timing_runs = static_cast<int>(t);
    } else if (key == "threads") {
      QLAB_ASSIGN_OR_RETURN(const int64_t t, Integer(v, what, key, 1));
      c.threads = static_cast<int>(t);
    } else if (key == "sqnr_images") {
      QLAB_ASSIGN_OR_RETURN(c.sqnr_images,
                            Integer(v, what, key, 0, std::numeric_limits<int64_t>::max()));
    } else if (key == "engine") {
      QLAB_ASSIGN_OR_RETURN(c.engine, String(v, what, key));
    } else if (key == "data_root") {
      QLAB_ASSIGN_OR_RETURN(c.data_root, String(v, what, key));
    } else if (key == "layer_overrides") {
      QLAB_ASSIGN_OR_RETURN(c.layer_overrides,
                            LayerOverridesFromJson(v, absl::StrCat(what, ": layer_overrides")));
    } else {
      return KeyError(what, key,
                      "is not a sweep setting (known: title, models, quantizers, calibrators, "
                      "weight_granularities, activation_schemes, calib_images, calib_seed, "
                      "calib_repeats, eval_images, batch_size, timing_runs, threads, "
                      "sqnr_images, engine, data_root, layer_overrides)");
    }
  }
  if (s.models.empty()) return KeyError(what, "models", "is required");
  // The grid is expanded (and its records named) before anything runs: bound it first, with
  // early exits so that the product of hostile list lengths cannot overflow.
  int64_t runs = s.calib_repeats;
  for (const size_t axis : {s.models.size(), s.quantizers.size(), s.calibrators.size(),
                            s.weight_granularities.size(), s.activation_schemes.size()}) {
    if (runs > kMaxSweepRuns || static_cast<int64_t>(axis) > kMaxSweepRuns) {
      runs = kMaxSweepRuns + 1;
      break;
    }
    runs *= static_cast<int64_t>(axis);
  }
  if (runs > kMaxSweepRuns) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": the grid has more than ", kMaxSweepRuns,
        " runs (models x quantizers x calibrators x weight_granularities x activation_schemes x "
        "calib_repeats)"));
  }
  // Run names are file names with unsafe characters replaced: two grid points that differ only
  // there ("percentile:99.99" and "percentile_99.99") would share one record file.
  std::map<std::string, std::string> seen;  // run name -> the grid point's settings
  for (const PtqConfig& run : ExpandGrid(s)) {
    const std::string settings = run.ToJson().dump();
    const auto [it, inserted] = seen.emplace(RunName(run), settings);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": runs ", it->second, " and ",
                                                     settings, " would share the record name ",
                                                     it->first));
    }
  }
  return s;
}

std::vector<PtqConfig> ExpandGrid(const SweepConfig& sweep) {
  std::vector<PtqConfig> runs;
  for (const std::string& model : sweep.models) {
    for (const std::string& quantizer : sweep.quantizers) {
      for (const std::string& granularity : sweep.weight_granularities) {
        for (const std::string& scheme : sweep.activation_schemes) {
          for (const std::string& calibrator : sweep.calibrators) {
            for (int k = 0; k < sweep.calib_repeats; ++k) {
              PtqConfig c = sweep.common;
              c.model = model;
              c.quantizer = quantizer;
              c.weight_granularity = granularity;
              c.activation_scheme = scheme;
              c.calibrator = calibrator;
              c.calib_seed = sweep.common.calib_seed + static_cast<uint64_t>(k);
              runs.push_back(std::move(c));
            }
          }
        }
      }
    }
  }
  return runs;
}

std::string RunName(const PtqConfig& c) {
  return FileSafe(absl::StrCat(c.model, "-", c.quantizer, "-", c.weight_granularity, "-",
                               c.activation_scheme.empty() ? "backend" : c.activation_scheme, "-",
                               c.calibrator.empty() ? "default" : c.calibrator, "-seed",
                               c.calib_seed));
}

std::vector<std::string> SummaryHeader() {
  return {"run", "model", "quantizer", "calibrator", "weight_granularity", "activation_scheme",
          "calib_images", "calib_seed", "eval_images", "fp32_top1", "fake_quant_top1",
          "agreement", "min_layer_sqnr_db", "fp32_batch1_median_ms", "git_commit"};
}

std::vector<std::string> SummaryRow(const nlohmann::json& r, const std::string& run_name) {
  const nlohmann::json& c = r["config"];
  std::string min_sqnr;
  if (r["results"].contains("per_layer_sqnr_db")) {
    double lo = 0.0;
    bool any = false;
    for (const nlohmann::json& e : r["results"]["per_layer_sqnr_db"]) {
      if (!e["sqnr_db"].is_number()) continue;
      lo = any ? std::min(lo, e["sqnr_db"].get<double>()) : e["sqnr_db"].get<double>();
      any = true;
    }
    if (any) min_sqnr = absl::StrFormat("%.2f", lo);
  }
  std::string latency;
  for (const auto& [key, value] : r["timing"].items()) {
    if (key.rfind("fp32_", 0) == 0 && value.is_object() && value.value("batch", 0) == 1) {
      latency = absl::StrFormat("%.3f", value["median_ms"].get<double>());
    }
  }
  return {run_name,
          c.value("model", ""),
          c.value("quantizer", ""),
          c.value("calibrator", ""),
          c.value("weight_granularity", ""),
          c.value("activation_scheme", ""),
          std::to_string(c.value("calib_images", int64_t{0})),
          std::to_string(c.value("calib_seed", uint64_t{0})),
          std::to_string(r["inputs"].value("eval_images", int64_t{0})),
          Fraction(r, "fp32", "top1"),
          Fraction(r, "fake_quant", "top1"),
          Fraction(r, "prediction_agreement_fp32_fake_quant"),
          min_sqnr,
          latency,
          r["provenance"].value("git_commit", "")};
}

absl::StatusOr<SweepOutput> RunSweep(const SweepConfig& sweep, const std::string& out_dir,
                                     const SweepOptions& options) {
  const std::vector<PtqConfig> runs = ExpandGrid(sweep);
  SweepOutput out;
  out.summary_csv = absl::StrCat(out_dir, "/summary.csv");
  out.report_html = absl::StrCat(out_dir, "/report.html");
  // Refuse before running anything, not an hour in.
  for (const std::string& file : {out.summary_csv, out.report_html}) {
    if (!options.resume && FileExists(file)) {
      return absl::AlreadyExistsError(absl::StrCat(
          file, " exists: choose another --out (or --resume an interrupted sweep)"));
    }
  }
  std::vector<std::string> names;
  for (const PtqConfig& c : runs) {
    names.push_back(RunName(c));
    out.record_files.push_back(absl::StrCat(out_dir, "/", names.back(), ".json"));
    if (!options.resume && FileExists(out.record_files.back())) {
      return absl::AlreadyExistsError(absl::StrCat(
          out.record_files.back(), " exists: choose another --out (or --resume)"));
    }
  }
  QLAB_RETURN_IF_ERROR(WriteJsonFile(absl::StrCat(out_dir, "/sweep_config.json"),
                                     nlohmann::json{{"name", sweep.name},
                                                    {"title", sweep.title},
                                                    {"command", options.command},
                                                    {"models", sweep.models},
                                                    {"quantizers", sweep.quantizers},
                                                    {"calibrators", sweep.calibrators},
                                                    {"weight_granularities",
                                                     sweep.weight_granularities},
                                                    {"activation_schemes", sweep.activation_schemes},
                                                    {"calib_repeats", sweep.calib_repeats},
                                                    {"common", sweep.common.ToJson()},
                                                    {"runs", names}},
                                     /*overwrite=*/options.resume));

  const auto start = std::chrono::steady_clock::now();
  int fresh = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (options.resume && FileExists(out.record_files[i])) {
      QLAB_ASSIGN_OR_RETURN(nlohmann::json record, ReadJsonFile(out.record_files[i]));
      out.records.push_back(std::move(record));
      std::fprintf(stderr, "sweep %s [%zu/%zu] %s: kept the existing record\n", sweep.name.c_str(),
                   i + 1, runs.size(), names[i].c_str());
      continue;
    }
    // The sweep's own progress line: which run, and how long the rest will take at the pace of
    // the runs so far (RunPtq prints its calibration and evaluation lines below it).
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const size_t left = runs.size() - i;
    std::fprintf(stderr, "sweep %s [%zu/%zu] %s  elapsed %s%s\n", sweep.name.c_str(), i + 1,
                 runs.size(), names[i].c_str(), FormatDuration(elapsed).c_str(),
                 fresh > 0 ? absl::StrCat("  ETA ", FormatDuration(elapsed / fresh * left)).c_str()
                           : "");
    absl::StatusOr<nlohmann::json> record = RunPtq(runs[i]);
    if (!record.ok()) {
      return absl::Status(record.status().code(),
                          absl::StrCat("run ", names[i], ": ", record.status().message()));
    }
    QLAB_RETURN_IF_ERROR(WriteJsonFile(out.record_files[i], *record, /*overwrite=*/false));
    const nlohmann::json& r = (*record)["results"];
    std::fprintf(stderr, "  -> fp32 %.2f %%  fake-quant %.2f %%  (%+.2f)\n",
                 100 * r["fp32"]["top1"].get<double>(), 100 * r["fake_quant"]["top1"].get<double>(),
                 100 * r["fake_quant_vs_fp32_top1_delta"].get<double>());
    out.records.push_back(*std::move(record));
    ++fresh;
  }

  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i < runs.size(); ++i) rows.push_back(SummaryRow(out.records[i], names[i]));
  QLAB_RETURN_IF_ERROR(
      WriteTextFile(out.summary_csv, CsvText(SummaryHeader(), rows), options.resume));
  ReportOptions report;
  report.title = sweep.title.empty() ? absl::StrCat("PTQ sweep ", sweep.name) : sweep.title;
  report.command = options.command;
  for (const std::string& n : names) report.record_links.push_back(absl::StrCat(n, ".json"));
  QLAB_RETURN_IF_ERROR(
      WriteTextFile(out.report_html, RenderReport(out.records, report), options.resume));
  return out;
}

}  // namespace qlab::experiments
