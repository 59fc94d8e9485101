// RenderReport / RenderSensitivityReport (experiments/report.h): records -> groups -> table and
// charts -> one HTML page.
//
// Records are read defensively (a missing field shows as "-" instead of failing the report): a
// sweep that ran for an hour should still get its page when one record is odd.
#include "experiments/report.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "experiments/svg_chart.h"

namespace qlab::experiments {
namespace {

// record[path...] or nullptr when any step is missing.
const nlohmann::json* Find(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* at = &j;
  for (const char* key : path) {
    if (!at->is_object()) return nullptr;
    const auto it = at->find(key);
    if (it == at->end()) return nullptr;
    at = &*it;
  }
  return at;
}

std::optional<double> Number(const nlohmann::json& j, std::initializer_list<const char*> path) {
  const nlohmann::json* v = Find(j, path);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

std::string Text(const nlohmann::json& j, std::initializer_list<const char*> path,
                 const std::string& missing = "-") {
  const nlohmann::json* v = Find(j, path);
  if (v == nullptr) return missing;
  if (v->is_string()) return v->get<std::string>();
  return v->dump();
}

std::string Percent(double fraction, int decimals = 2) {
  return absl::StrFormat("%.*f", decimals, 100.0 * fraction);
}

// "91.23 ± 0.08" (points) or "91.23" for one value.
std::string PercentMeanStd(const MeanStd& m) {
  if (m.n == 0) return "-";
  if (m.n == 1) return Percent(m.mean);
  return absl::StrCat(Percent(m.mean), " \u00b1 ", Percent(m.std));
}

// The name under which the report shows a group's variant within its model: what differs
// between bars of the same calibrator.
std::string VariantName(const RunGroup& g) {
  std::string name = absl::StrCat(g.quantizer, " ", g.weight_granularity == "per_tensor"
                                                        ? "per-tensor w"
                                                        : "per-channel w",
                                  ", ", g.activation_scheme, " act");
  if (g.overrides != "{}") absl::StrAppend(&name, ", overrides");
  return name;
}

template <typename T>
std::vector<T> Unique(const std::vector<T>& in) {
  std::vector<T> out;
  for (const T& v : in) {
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

// Timing entries {"batch", "median_ms", ...} of one record, keyed "<engine>" -> batch -> ms.
// "fp32_fast_batch32" is engine "fp32_fast", batch 32; an int8 engine's keys (lowering) read
// the same way.
std::map<std::string, std::map<int64_t, double>> Latencies(const nlohmann::json& record) {
  std::map<std::string, std::map<int64_t, double>> out;
  const nlohmann::json* timing = Find(record, {"timing"});
  if (timing == nullptr || !timing->is_object()) return out;
  for (const auto& [key, value] : timing->items()) {
    if (!value.is_object() || !value.contains("median_ms") || !value.contains("batch")) continue;
    const size_t at = key.rfind("_batch");
    if (at == std::string::npos) continue;
    if (!value["median_ms"].is_number() || !value["batch"].is_number()) continue;
    out[key.substr(0, at)][value["batch"].get<int64_t>()] = value["median_ms"].get<double>();
  }
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0.0;
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

const char* kStyle = R"css(
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px;
       color: #222; max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta, p.how { color: #555; font-size: 13px; margin: 4px 0; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; font-size: 12px; }
table { border-collapse: collapse; font-size: 12.5px; margin-top: 8px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.best td { background: #e6f4e6; font-weight: 600; }
tr:hover td { background: #f0f6ff; }
svg.chart { display: block; margin: 14px 0 6px 0; }
svg .ct { font-size: 14px; font-weight: 600; fill: #222; }
svg .cn { font-size: 11px; fill: #a05a00; font-style: italic; }
svg .cl { font-size: 11px; fill: #333; }
svg .cv { font-size: 9.5px; fill: #333; }
svg .cr { font-size: 11px; fill: #c0392b; }
svg .grid { stroke: #eee; }
svg .axis { stroke: #888; }
svg .ref { stroke: #c0392b; stroke-width: 1.5; stroke-dasharray: 6 4; }
svg .err { stroke: #222; stroke-width: 1.2; fill: none; }
.note { background: #fff8e1; border-left: 4px solid #f0c000; padding: 6px 10px; font-size: 13px; }
)css";

std::string PageStart(const std::string& title) {
  return absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<title>", HtmlEscape(title), "</title>\n<style>", kStyle,
                      "</style>\n</head>\n<body>\n<h1>", HtmlEscape(title), "</h1>\n");
}

// Commit(s), machine, build, images: where the numbers come from.
std::string MetaLine(const std::vector<nlohmann::json>& records, size_t runs) {
  std::vector<std::string> commits, machines, modes;
  std::vector<std::string> eval, calib;
  bool dirty = false;
  for (const nlohmann::json& r : records) {
    commits.push_back(Text(r, {"provenance", "git_commit"}).substr(0, 12));
    machines.push_back(absl::StrCat(Text(r, {"provenance", "cpu_model"}), ", ",
                                    Text(r, {"provenance", "cpu_cores"}), " cores, Highway ",
                                    Text(r, {"provenance", "highway_target"})));
    modes.push_back(Text(r, {"provenance", "build_mode"}));
    eval.push_back(Text(r, {"inputs", "eval_images"}));
    calib.push_back(Text(r, {"inputs", "calibration_images"}));
    const nlohmann::json* d = Find(r, {"provenance", "git_dirty"});
    dirty = dirty || (d != nullptr && d->is_boolean() && d->get<bool>());
  }
  return absl::StrCat("<p class=\"meta\">", runs, " runs &middot; commit ",
                      HtmlEscape(absl::StrJoin(Unique(commits), ", ")),
                      dirty ? " (uncommitted changes)" : "", " &middot; ",
                      HtmlEscape(absl::StrJoin(Unique(machines), "; ")), " &middot; build ",
                      HtmlEscape(absl::StrJoin(Unique(modes), ", ")), " &middot; ",
                      HtmlEscape(absl::StrJoin(Unique(calib), "/")), " calibration images, ",
                      HtmlEscape(absl::StrJoin(Unique(eval), "/")), " test images</p>\n");
}

// --- The sweep page's sections ---------------------------------------------------------------

std::string ResultsTable(const std::vector<nlohmann::json>& records,
                         const std::vector<RunGroup>& groups, const ReportOptions& options) {
  // Best group per model: highest mean fake-quant top-1 (first in config order on ties).
  std::map<std::string, size_t> best;
  for (size_t i = 0; i < groups.size(); ++i) {
    const auto it = best.find(groups[i].model);
    if (it == best.end() || groups[i].fake_quant_top1.mean > groups[it->second].fake_quant_top1.mean) {
      best[groups[i].model] = i;
    }
  }
  bool any_int8 = false;
  bool any_repeats = false;
  for (const RunGroup& g : groups) {
    any_int8 = any_int8 || g.int8_top1.n > 0;
    any_repeats = any_repeats || g.members.size() > 1;
  }
  std::string html =
      "<table>\n<tr><th class=\"l\">model</th><th class=\"l\">quantizer</th>"
      "<th class=\"l\">calibrator</th><th class=\"l\">weights</th><th class=\"l\">activations</th>"
      "<th class=\"l\">overrides</th><th>seeds</th><th>FP32 top-1 %</th>"
      "<th>fake-quant top-1 %</th><th>&Delta; points</th><th>agreement %</th>";
  if (any_int8) html += "<th>int8 top-1 %</th>";
  html += "<th>worst-layer SQNR dB</th><th>FP32 ms (b1 / b32)</th><th class=\"l\">records</th></tr>\n";
  for (size_t i = 0; i < groups.size(); ++i) {
    const RunGroup& g = groups[i];
    const bool is_best = best[g.model] == i;
    std::string worst = "-";
    if (!g.sqnr_db.empty()) {
      const auto it = std::min_element(g.sqnr_db.begin(), g.sqnr_db.end());
      worst = absl::StrFormat("%.1f (%s)", *it,
                              HtmlEscape(g.sqnr_layers[static_cast<size_t>(it - g.sqnr_db.begin())]));
    }
    std::vector<double> b1, b32;
    std::vector<std::string> links;
    for (const size_t m : g.members) {
      const auto lat = Latencies(records[m]);
      for (const auto& [engine, by_batch] : lat) {
        if (engine.rfind("fp32", 0) != 0) continue;
        if (by_batch.count(1)) b1.push_back(by_batch.at(1));
        if (by_batch.count(32)) b32.push_back(by_batch.at(32));
      }
      if (m < options.record_links.size() && !options.record_links[m].empty()) {
        links.push_back(absl::StrCat("<a href=\"", HtmlEscape(options.record_links[m]), "\">",
                                     links.size() + 1, "</a>"));
      }
    }
    const std::string latency =
        b1.empty() && b32.empty()
            ? "-"
            : absl::StrCat(b1.empty() ? "-" : absl::StrFormat("%.2f", Median(b1)), " / ",
                           b32.empty() ? "-" : absl::StrFormat("%.2f", Median(b32)));
    std::vector<std::string> seeds;
    for (const uint64_t s : g.seeds) seeds.push_back(std::to_string(s));
    absl::StrAppend(
        &html, is_best ? "<tr class=\"best\">" : "<tr>", "<td class=\"l\">", HtmlEscape(g.model),
        "</td><td class=\"l\">", HtmlEscape(g.quantizer), "</td><td class=\"l\">",
        HtmlEscape(g.calibrator), "</td><td class=\"l\">", HtmlEscape(g.weight_granularity),
        "</td><td class=\"l\">", HtmlEscape(g.activation_scheme), "</td><td class=\"l\">",
        HtmlEscape(g.overrides == "{}" ? "" : g.overrides), "</td><td>",
        HtmlEscape(absl::StrJoin(seeds, ",")), "</td><td>", PercentMeanStd(g.fp32_top1),
        "</td><td>", PercentMeanStd(g.fake_quant_top1), "</td><td>",
        absl::StrFormat("%+.2f", 100.0 * (g.fake_quant_top1.mean - g.fp32_top1.mean)),
        "</td><td>", PercentMeanStd(g.agreement), "</td>");
    if (any_int8) absl::StrAppend(&html, "<td>", PercentMeanStd(g.int8_top1), "</td>");
    absl::StrAppend(&html, "<td>", worst, "</td><td>", latency, "</td><td class=\"l\">",
                    absl::StrJoin(links, " "), "</td></tr>\n");
  }
  html += "</table>\n";
  html += absl::StrCat(
      "<p class=\"how\">One row per configuration; ",
      any_repeats ? "with several calibration seeds, accuracies are mean &plusmn; sample std "
                    "over the seeds (calibration variance). "
                  : "",
      "Green: the best fake-quant top-1 per model. Agreement: images whose top-1 prediction "
      "equals FP32's. Worst-layer SQNR: the lowest per-layer SQNR float vs fake-quant and its "
      "layer. Latency: median of the FP32 engine's timed runs over the rows' records.</p>\n");
  return html;
}

std::string AccuracyByCalibrator(const std::vector<RunGroup>& groups) {
  std::string html;
  for (const std::string& model : Unique([&] {
         std::vector<std::string> m;
         for (const RunGroup& g : groups) m.push_back(g.model);
         return m;
       }())) {
    std::vector<std::string> calibrators, variants;
    std::vector<double> fp32;
    for (const RunGroup& g : groups) {
      if (g.model != model) continue;
      calibrators.push_back(g.calibrator);
      variants.push_back(VariantName(g));
      fp32.push_back(g.fp32_top1.mean);
    }
    calibrators = Unique(calibrators);
    variants = Unique(variants);
    BarChart chart;
    chart.title = absl::StrCat(model, ": fake-quant top-1 by calibrator");
    chart.y_label = "top-1 %";
    chart.groups = calibrators;
    for (const std::string& v : variants) {
      ChartSeries s{v, std::vector<std::optional<double>>(calibrators.size()),
                    std::vector<double>(calibrators.size(), 0.0)};
      for (const RunGroup& g : groups) {
        if (g.model != model || VariantName(g) != v) continue;
        const size_t c = static_cast<size_t>(
            std::find(calibrators.begin(), calibrators.end(), g.calibrator) - calibrators.begin());
        s.values[c] = 100.0 * g.fake_quant_top1.mean;
        s.errors[c] = 100.0 * g.fake_quant_top1.std;
      }
      chart.series.push_back(std::move(s));
    }
    const double fp32_mean = ComputeMeanStd(fp32).mean;
    chart.reference_lines = {{absl::StrCat("FP32 ", Percent(fp32_mean)), 100.0 * fp32_mean}};
    html += RenderBarChart(chart);
  }
  return html;
}

// Per model and quantizer: FP32, the best fake-quant configuration and (when recorded) int8.
std::string AccuracyByEngine(const std::vector<RunGroup>& groups) {
  std::vector<std::string> keys;
  for (const RunGroup& g : groups) keys.push_back(absl::StrCat(g.model, " ", g.quantizer));
  keys = Unique(keys);
  BarChart chart;
  chart.title = "FP32 / fake-quant / int8 top-1 (best configuration per model and quantizer)";
  chart.y_label = "top-1 %";
  ChartSeries fp32{"FP32", {}, {}}, fq{"fake-quant (best)", {}, {}}, int8{"int8 (best)", {}, {}};
  bool any_int8 = false;
  for (const std::string& key : keys) {
    const RunGroup* best = nullptr;
    const RunGroup* best_int8 = nullptr;
    for (const RunGroup& g : groups) {
      if (absl::StrCat(g.model, " ", g.quantizer) != key) continue;
      if (best == nullptr || g.fake_quant_top1.mean > best->fake_quant_top1.mean) best = &g;
      if (g.int8_top1.n > 0 && (best_int8 == nullptr || g.int8_top1.mean > best_int8->int8_top1.mean)) {
        best_int8 = &g;
      }
    }
    chart.groups.push_back(absl::StrCat(key, " (", best->calibrator, ", ",
                                        best->weight_granularity == "per_tensor" ? "per-tensor"
                                                                                 : "per-channel",
                                        ")"));
    fp32.values.push_back(100.0 * best->fp32_top1.mean);
    fp32.errors.push_back(0.0);
    fq.values.push_back(100.0 * best->fake_quant_top1.mean);
    fq.errors.push_back(100.0 * best->fake_quant_top1.std);
    if (best_int8 != nullptr) {
      any_int8 = true;
      int8.values.push_back(100.0 * best_int8->int8_top1.mean);
      int8.errors.push_back(100.0 * best_int8->int8_top1.std);
    } else {
      int8.values.push_back(std::nullopt);
      int8.errors.push_back(0.0);
    }
  }
  chart.series = {fp32, fq};
  if (any_int8) chart.series.push_back(int8);
  std::string html = RenderBarChart(chart);
  if (!any_int8) {
    html += "<p class=\"how\">No int8 bars: the records carry no int8 accuracy yet (lowering to "
            "the integer kernels, issue 7). They appear here once records have "
            "<code>results.int8.top1</code>.</p>\n";
  }
  return html;
}

std::string LatencyChart(const std::vector<nlohmann::json>& records) {
  // model -> engine -> batch -> medians over records.
  std::map<std::string, std::map<std::string, std::map<int64_t, std::vector<double>>>> all;
  std::vector<std::string> models, engines;
  for (const nlohmann::json& r : records) {
    const std::string model = Text(r, {"config", "model"});
    for (const auto& [engine, by_batch] : Latencies(r)) {
      models.push_back(model);
      engines.push_back(engine);
      for (const auto& [batch, ms] : by_batch) all[model][engine][batch].push_back(ms);
    }
  }
  if (all.empty()) {
    return "<p class=\"how\">No latency: the records were made with timing_runs = 0.</p>\n";
  }
  models = Unique(models);
  engines = Unique(engines);
  // FP32 first: it is the reference the others are compared with.
  std::stable_partition(engines.begin(), engines.end(),
                        [](const std::string& e) { return e.rfind("fp32", 0) == 0; });
  BarChart chart;
  chart.title = "Latency per image batch (median of the records' timed runs; lower is better)";
  chart.y_label = "ms per batch";
  std::vector<std::pair<std::string, int64_t>> slots;
  for (const std::string& model : models) {
    std::set<int64_t> batches;
    for (const auto& [engine, by_batch] : all[model]) {
      for (const auto& [batch, v] : by_batch) batches.insert(batch);
    }
    for (const int64_t b : batches) {
      slots.push_back({model, b});
      chart.groups.push_back(absl::StrCat(model, " batch ", b));
    }
  }
  for (const std::string& engine : engines) {
    ChartSeries s{engine, {}, {}};
    for (const auto& [model, batch] : slots) {
      const auto& per_engine = all[model];
      const auto e = per_engine.find(engine);
      if (e == per_engine.end() || !e->second.count(batch)) {
        s.values.push_back(std::nullopt);
      } else {
        s.values.push_back(Median(e->second.at(batch)));
      }
      s.errors.push_back(0.0);
    }
    chart.series.push_back(std::move(s));
  }
  std::string html = RenderBarChart(chart);
  if (engines.size() == 1) {
    html += absl::StrCat("<p class=\"how\">Only <code>", HtmlEscape(engines[0]),
                         "</code> was timed: int8 latency bars appear beside it once lowering "
                         "records int8 timings (issue 7).</p>\n");
  } else {
    std::string ratios = "<p class=\"how\">Speed-up against FP32: ";
    std::vector<std::string> parts;
    for (const auto& [model, batch] : slots) {
      const auto& per_engine = all[model];
      const auto fp = per_engine.find(engines[0]);
      if (fp == per_engine.end() || !fp->second.count(batch)) continue;
      const double base = Median(fp->second.at(batch));
      for (size_t e = 1; e < engines.size(); ++e) {
        const auto it = per_engine.find(engines[e]);
        if (it == per_engine.end() || !it->second.count(batch)) continue;
        parts.push_back(absl::StrFormat("%s batch %d %s %.2fx", HtmlEscape(model), batch,
                                        HtmlEscape(engines[e]), base / Median(it->second.at(batch))));
      }
    }
    html += ratios + absl::StrJoin(parts, "; ") + ".</p>\n";
  }
  return html;
}

std::string SqnrCharts(const std::vector<RunGroup>& groups) {
  std::string html;
  std::vector<std::string> models;
  for (const RunGroup& g : groups) models.push_back(g.model);
  for (const std::string& model : Unique(models)) {
    // One line per variant (quantizer x granularity x scheme), with its best calibrator: the
    // configurations one would choose, compared layer by layer.
    std::map<std::string, const RunGroup*> best;
    std::vector<std::string> order;
    for (const RunGroup& g : groups) {
      if (g.model != model || g.sqnr_db.empty()) continue;
      const std::string v = VariantName(g);
      if (!best.count(v)) order.push_back(v);
      if (!best.count(v) || g.fake_quant_top1.mean > best[v]->fake_quant_top1.mean) best[v] = &g;
    }
    if (order.empty()) continue;
    LineChart chart;
    chart.title = absl::StrCat(model, ": per-layer SQNR float vs fake-quant (higher is better)");
    chart.y_label = "SQNR dB";
    // The x axis: every layer any line has, in graph order of the first line that has it.
    for (const std::string& v : order) {
      for (const std::string& layer : best[v]->sqnr_layers) chart.x_labels.push_back(layer);
    }
    chart.x_labels = Unique(chart.x_labels);
    for (const std::string& v : order) {
      const RunGroup& g = *best[v];
      ChartSeries s{absl::StrCat(v, " (", g.calibrator, ")"),
                    std::vector<std::optional<double>>(chart.x_labels.size()), {}};
      for (size_t i = 0; i < g.sqnr_layers.size(); ++i) {
        const size_t x = static_cast<size_t>(
            std::find(chart.x_labels.begin(), chart.x_labels.end(), g.sqnr_layers[i]) -
            chart.x_labels.begin());
        if (std::isfinite(g.sqnr_db[i])) s.values[x] = g.sqnr_db[i];
      }
      chart.series.push_back(std::move(s));
    }
    html += RenderLineChart(chart);
  }
  if (html.empty()) html = "<p class=\"how\">No per-layer SQNR in these records.</p>\n";
  return html;
}

}  // namespace

MeanStd ComputeMeanStd(const std::vector<double>& values) {
  MeanStd m;
  m.n = static_cast<int>(values.size());
  if (values.empty()) return m;
  double sum = 0.0;
  for (const double v : values) sum += v;
  m.mean = sum / static_cast<double>(values.size());
  if (values.size() > 1) {
    double sq = 0.0;
    for (const double v : values) sq += (v - m.mean) * (v - m.mean);
    m.std = std::sqrt(sq / static_cast<double>(values.size() - 1));
  }
  return m;
}

std::vector<RunGroup> GroupRuns(const std::vector<nlohmann::json>& records) {
  std::vector<RunGroup> groups;
  std::vector<std::string> keys;
  for (size_t i = 0; i < records.size(); ++i) {
    const nlohmann::json& r = records[i];
    RunGroup g;
    g.model = Text(r, {"config", "model"});
    g.quantizer = Text(r, {"config", "quantizer"});
    g.calibrator = Text(r, {"config", "calibrator"});
    g.weight_granularity = Text(r, {"config", "weight_granularity"});
    g.activation_scheme = Text(r, {"config", "activation_scheme"});
    const nlohmann::json* overrides = Find(r, {"config", "layer_overrides"});
    g.overrides = overrides == nullptr ? "{}" : overrides->dump();
    // Everything but the seed decides the group, image counts and weights included.
    nlohmann::json key_config = Find(r, {"config"}) ? r["config"] : nlohmann::json::object();
    if (key_config.is_object()) key_config.erase("calib_seed");
    const std::string key = key_config.dump();
    size_t at = static_cast<size_t>(std::find(keys.begin(), keys.end(), key) - keys.begin());
    if (at == keys.size()) {
      keys.push_back(key);
      groups.push_back(std::move(g));
    }
    groups[at].members.push_back(i);
  }
  for (RunGroup& g : groups) {
    std::vector<double> fp32, fq, agree, int8;
    std::vector<std::string> layers;
    std::map<std::string, std::vector<double>> sqnr;
    for (const size_t m : g.members) {
      const nlohmann::json& r = records[m];
      if (const auto s = Number(r, {"config", "calib_seed"})) g.seeds.push_back(static_cast<uint64_t>(*s));
      if (const auto v = Number(r, {"results", "fp32", "top1"})) fp32.push_back(*v);
      if (const auto v = Number(r, {"results", "fake_quant", "top1"})) fq.push_back(*v);
      if (const auto v = Number(r, {"results", "prediction_agreement_fp32_fake_quant"})) {
        agree.push_back(*v);
      }
      if (const auto v = Number(r, {"results", "int8", "top1"})) int8.push_back(*v);
      const nlohmann::json* per_layer = Find(r, {"results", "per_layer_sqnr_db"});
      if (per_layer == nullptr || !per_layer->is_array()) continue;
      for (const nlohmann::json& entry : *per_layer) {
        if (!entry.is_object() || !entry.contains("layer") || !entry["layer"].is_string()) continue;
        const std::string layer = entry["layer"].get<std::string>();
        layers.push_back(layer);
        // null = identical outputs (infinite SQNR): kept out of the mean, shown as a gap.
        if (entry.contains("sqnr_db") && entry["sqnr_db"].is_number()) {
          sqnr[layer].push_back(entry["sqnr_db"].get<double>());
        }
      }
    }
    g.fp32_top1 = ComputeMeanStd(fp32);
    g.fake_quant_top1 = ComputeMeanStd(fq);
    g.agreement = ComputeMeanStd(agree);
    g.int8_top1 = ComputeMeanStd(int8);
    for (const std::string& layer : Unique(layers)) {
      g.sqnr_layers.push_back(layer);
      const auto it = sqnr.find(layer);
      g.sqnr_db.push_back(it == sqnr.end() ? std::numeric_limits<double>::infinity()
                                           : ComputeMeanStd(it->second).mean);
    }
  }
  return groups;
}

std::string RenderReport(const std::vector<nlohmann::json>& records, const ReportOptions& options) {
  const std::vector<RunGroup> groups = GroupRuns(records);
  std::string html = PageStart(options.title);
  if (!options.command.empty()) {
    absl::StrAppend(&html, "<p class=\"meta\">Produced by <code>", HtmlEscape(options.command),
                    "</code></p>\n");
  }
  html += MetaLine(records, records.size());
  if (records.empty()) {
    html += "<p class=\"note\">No records.</p>\n</body>\n</html>\n";
    return html;
  }
  html += "<h2>Results</h2>\n";
  html += ResultsTable(records, groups, options);
  html += "<h2>Accuracy by calibrator</h2>\n"
          "<p class=\"how\">Fake-quant top-1 per calibrator (x) and quantizer / weight "
          "granularity / activation scheme (bars); dashed red: FP32. Error bars: sample std over "
          "calibration seeds, when the sweep repeated them.</p>\n";
  html += AccuracyByCalibrator(groups);
  html += "<h2>FP32 / fake-quant / int8</h2>\n";
  html += AccuracyByEngine(groups);
  html += "<h2>Latency</h2>\n";
  html += LatencyChart(records);
  html += "<h2>Per-layer quantization error (SQNR)</h2>\n"
          "<p class=\"how\">10&middot;log10(&Sigma;x&sup2; / &Sigma;(x&minus;x<sub>q</sub>)&sup2;) "
          "of each quantized conv/linear output, float model vs fake-quant model, on the first "
          "test images. The error accumulates through the network, so the line usually falls "
          "with depth; a dip marks a layer that adds much error of its own. Each 6 dB is about "
          "one bit.</p>\n";
  html += SqnrCharts(groups);
  html += "</body>\n</html>\n";
  return html;
}

std::string RenderSensitivityReport(const nlohmann::json& s) {
  const std::string model = Text(s, {"config", "model"});
  std::string html = PageStart(absl::StrCat("Per-layer sensitivity: ", model, " ",
                                            Text(s, {"config", "quantizer"}), " / ",
                                            Text(s, {"config", "calibrator"})));
  if (const nlohmann::json* command = Find(s, {"command"}); command && command->is_string()) {
    absl::StrAppend(&html, "<p class=\"meta\">Produced by <code>",
                    HtmlEscape(command->get<std::string>()), "</code></p>\n");
  }
  const nlohmann::json* runs = Find(s, {"runs"});
  html += MetaLine({s}, runs != nullptr && runs->is_array() ? runs->size() : 1);
  const double fp32 = Number(s, {"fp32_top1"}).value_or(0.0);
  const double all_q = Number(s, {"all_quantized_top1"}).value_or(0.0);
  std::vector<std::string> keep;
  if (const nlohmann::json* k = Find(s, {"suggestion", "keep_float"}); k && k->is_array()) {
    for (const nlohmann::json& name : *k) {
      if (name.is_string()) keep.push_back(name.get<std::string>());
    }
  }
  absl::StrAppend(&html, "<p class=\"note\">FP32 ", Percent(fp32), " %, every layer quantized ",
                  Percent(all_q), " % (", absl::StrFormat("%+.2f", 100.0 * (all_q - fp32)),
                  " points). ");
  if (!keep.empty()) {
    absl::StrAppend(&html, "Suggested to keep in higher precision: <b>",
                    HtmlEscape(absl::StrJoin(keep, ", ")), "</b>");
    if (const auto t = Number(s, {"suggestion", "top1"})) {
      absl::StrAppend(&html, " &rarr; ", Percent(*t), " % measured with them in float (",
                      absl::StrFormat("%+.2f", 100.0 * (*t - fp32)), " points vs FP32)");
    }
    html += ". ";
  }
  absl::StrAppend(&html, HtmlEscape(Text(s, {"suggestion", "reason"}, "")), "</p>\n");

  const nlohmann::json* layers = Find(s, {"layers"});
  if (layers == nullptr || !layers->is_array()) return html + "</body>\n</html>\n";
  BarChart bars;
  bars.title = "Accuracy effect per layer (points)";
  bars.y_label = "top-1 points";
  bars.value_format = "%.2f";
  ChartSeries drop{"drop vs FP32 when only this layer is quantized", {}, {}};
  ChartSeries recovery{"gain vs all-quantized when only this layer stays float", {}, {}};
  LineChart line;
  line.title = "Per-layer SQNR (dB): the layer alone quantized, and within the fully quantized model";
  line.y_label = "SQNR dB";
  ChartSeries alone{"only this layer quantized", {}, {}};
  ChartSeries within{"all layers quantized (accumulated)", {}, {}};
  for (const nlohmann::json& l : *layers) {
    bars.groups.push_back(Text(l, {"layer"}));
    line.x_labels.push_back(Text(l, {"layer"}));
    drop.values.push_back(Number(l, {"drop_alone_points"}));
    recovery.values.push_back(Number(l, {"recovery_points"}));
    alone.values.push_back(Number(l, {"sqnr_db_alone"}));
    within.values.push_back(Number(l, {"sqnr_db_all_quantized"}));
  }
  bars.series = {drop, recovery};
  line.series = {alone, within};
  html += "<h2>Layers</h2>\n" + RenderBarChart(bars) + RenderLineChart(line);

  html += "<h2>Ranking</h2>\n<table>\n<tr><th>rank</th><th class=\"l\">layer</th>"
          "<th>only-this-quantized top-1 %</th><th>drop points</th>"
          "<th>all-but-this top-1 %</th><th>gain points</th><th>SQNR alone dB</th>"
          "<th>SQNR in full model dB</th></tr>\n";
  std::vector<const nlohmann::json*> ranked;
  for (const nlohmann::json& l : *layers) ranked.push_back(&l);
  std::stable_sort(ranked.begin(), ranked.end(), [](const nlohmann::json* a, const nlohmann::json* b) {
    return Number(*a, {"rank"}).value_or(1e9) < Number(*b, {"rank"}).value_or(1e9);
  });
  for (const nlohmann::json* l : ranked) {
    const std::string name = Text(*l, {"layer"});
    const bool kept = std::find(keep.begin(), keep.end(), name) != keep.end();
    const auto f2 = [](std::optional<double> v, double scale) {
      return v ? absl::StrFormat("%.2f", *v * scale) : std::string("-");
    };
    absl::StrAppend(&html, kept ? "<tr class=\"best\">" : "<tr>", "<td>",
                    Text(*l, {"rank"}), "</td><td class=\"l\">", HtmlEscape(name), "</td><td>",
                    f2(Number(*l, {"only_this_quantized_top1"}), 100.0), "</td><td>",
                    f2(Number(*l, {"drop_alone_points"}), 1.0), "</td><td>",
                    f2(Number(*l, {"all_but_this_top1"}), 100.0), "</td><td>",
                    f2(Number(*l, {"recovery_points"}), 1.0), "</td><td>",
                    f2(Number(*l, {"sqnr_db_alone"}), 1.0), "</td><td>",
                    f2(Number(*l, {"sqnr_db_all_quantized"}), 1.0), "</td></tr>\n");
  }
  html += "</table>\n<p class=\"how\">Ranked by the accuracy drop when only the layer is "
          "quantized (ties: larger gain when only it stays float, then lower SQNR alone). Green: "
          "the suggested float layers (largest gains above the noise threshold).</p>\n";
  html += "</body>\n</html>\n";
  return html;
}

}  // namespace qlab::experiments
