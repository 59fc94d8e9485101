// RenderTrainingReport: see training_report.h.
#include "experiments/training_report.h"

#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status_macros.h"
#include "experiments/record_io.h"
#include "experiments/svg_chart.h"

namespace qlab::experiments {
namespace {

struct LogRow {
  std::string step;
  std::optional<double> loss, train_accuracy, test_accuracy;
};

std::optional<double> Cell(absl::string_view text) {
  double v = 0;
  if (text.empty() || !absl::SimpleAtod(text, &v)) return std::nullopt;
  return v;
}

absl::StatusOr<std::vector<LogRow>> ParseLog(const std::string& csv) {
  std::vector<absl::string_view> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  if (lines.empty() || !absl::StartsWith(lines[0], "step,epoch,loss,lr,train_accuracy")) {
    return absl::InvalidArgumentError("training report: the log has no training-log header");
  }
  std::vector<LogRow> rows;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<absl::string_view> cells = absl::StrSplit(lines[i], ',');
    if (cells.size() != 7) {
      return absl::InvalidArgumentError(
          absl::StrCat("training report: log row ", i, " has ", cells.size(), " cells, not 7"));
    }
    rows.push_back({std::string(cells[0]), Cell(cells[2]), Cell(cells[4]), Cell(cells[5])});
  }
  return rows;
}

std::string Percent(const nlohmann::json& v) {
  return v.is_number() ? absl::StrFormat("%.2f %%", 100.0 * v.get<double>()) : "–";
}

}  // namespace

absl::StatusOr<std::string> RenderTrainingReport(const nlohmann::json& record,
                                                 const std::string& log_csv) {
  absl::StatusOr<std::vector<LogRow>> rows = ParseLog(log_csv);
  if (!rows.ok()) return rows.status();
  const bool qat = record["config"].contains("quant");
  const nlohmann::json& r = record["results"];
  std::string model = qat ? record["config"]["quant"]["model"].get<std::string>()
                          : record["config"]["model"].get<std::string>();
  std::string title = qat ? absl::StrFormat("QAT %s W%dA%d%s", model,
                                            record["config"]["quant"]["weight_bits"].get<int>(),
                                            record["config"]["quant"]["activation_bits"].get<int>(),
                                            record["config"]["lsq"].get<bool>() ? " LSQ" : "")
                          : absl::StrCat("FP32 training ", model);
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", HtmlEscape(title),
      "</title>\n<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;"
      "text-align:left}pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head>"
      "<body>\n<h1>",
      HtmlEscape(title), "</h1>\n<table>\n");
  auto row = [&](absl::string_view name, const std::string& value) {
    absl::StrAppend(&html, "<tr><th>", HtmlEscape(name), "</th><td>", HtmlEscape(value),
                    "</td></tr>\n");
  };
  if (qat) {
    row("FP32 top-1 (pretrained)", Percent(r["fp32"]["top1"]));
    row("PTQ baseline, fake-quant top-1", Percent(r["ptq_baseline_fake_quant_top1"]));
    row("after QAT, fake-quant top-1", Percent(r["fake_quant"]["top1"]));
    row("after QAT, int8 engine top-1", Percent(r["int8"].value("top1", nlohmann::json())));
  } else {
    row("test top-1", Percent(r["test_top1"]));
  }
  const nlohmann::json& t = record["training"];
  row("optimizer steps", std::to_string(t["steps"].get<int64_t>()));
  row("training images/s", absl::StrFormat("%.1f", t["images_per_second"].get<double>()));
  row("git commit", record["provenance"].value("git_commit", "unknown"));
  absl::StrAppend(&html, "</table>\n");

  LineChart loss;
  loss.title = "training loss (mean over each logged window)";
  loss.y_label = "cross-entropy";
  loss.value_format = "%.4f";
  LineChart accuracy;
  accuracy.title = "accuracy";
  accuracy.y_label = "top-1 %";
  ChartSeries loss_series{"train loss", {}, {}};
  ChartSeries train_series{"train top-1 (window)", {}, {}};
  ChartSeries test_series{"test top-1 (epoch end)", {}, {}};
  for (const LogRow& lr : *rows) {
    if (lr.test_accuracy.has_value()) {
      // Epoch-end rows: plotted on the accuracy chart only (their loss is the epoch mean).
      accuracy.x_labels.push_back(absl::StrCat("step ", lr.step));
      train_series.values.push_back(lr.train_accuracy ? std::optional(100 * *lr.train_accuracy)
                                                      : std::nullopt);
      test_series.values.push_back(100 * *lr.test_accuracy);
      continue;
    }
    loss.x_labels.push_back(lr.step);
    loss_series.values.push_back(lr.loss);
  }
  loss.series = {loss_series};
  accuracy.series = {train_series, test_series};
  if (!loss.x_labels.empty()) absl::StrAppend(&html, RenderLineChart(loss), "\n");
  if (!accuracy.x_labels.empty()) absl::StrAppend(&html, RenderLineChart(accuracy), "\n");
  absl::StrAppend(&html, "<h2>record</h2>\n<pre>", HtmlEscape(record.dump(2)),
                  "</pre>\n</body></html>\n");
  return html;
}

absl::Status WriteTrainingReport(const std::string& run_dir, const nlohmann::json& record) {
  std::ifstream in(absl::StrCat(run_dir, "/log.csv"));
  std::stringstream log;
  log << in.rdbuf();
  QLAB_ASSIGN_OR_RETURN(const std::string html, RenderTrainingReport(record, log.str()));
  return WriteTextFile(absl::StrCat(run_dir, "/report.html"), html, /*overwrite=*/false);
}

}  // namespace qlab::experiments
