// Inline SVG charts for experiment reports: grouped bars (with error bars and reference lines)
// and lines over categories, as self-contained <svg> elements with no scripts, fonts or files.
//
// Reports (experiments/report.h) are read in a browser long after the run, on machines without
// Python or plotting libraries, so the charts are plain SVG text written here. Every mark carries
// a <title> (the browser's tooltip) with its exact value; colours come from one fixed palette in
// series order, so the same series has the same colour in every chart of a report. Output is a
// pure function of the input: the same chart gives the same bytes.
//
//   BarChart c;
//   c.title = "resnet20: fake-quant top-1 by calibrator";
//   c.groups = {"minmax", "histogram"};
//   c.series = {{"xnnpack", {91.2, 91.5}, {}}, {"x86", {91.0, std::nullopt}, {}}};
//   c.reference_lines = {{"FP32 91.73", 91.73}};
//   std::string svg = RenderBarChart(c);
#ifndef QLAB_EXPERIMENTS_SVG_CHART_H_
#define QLAB_EXPERIMENTS_SVG_CHART_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace qlab::experiments {

// One named sequence of values, one per group (bars) or x position (lines); a missing value
// draws nothing. `errors`, when not empty, has one half-width per value (0: no error bar).
struct ChartSeries {
  std::string name;
  std::vector<std::optional<double>> values;
  std::vector<double> errors;
};

// A horizontal line across the plot (e.g. the FP32 accuracy), dashed, labelled at its right end.
struct ReferenceLine {
  std::string label;
  double value = 0.0;
};

struct BarChart {
  std::string title;
  std::string y_label;
  std::vector<std::string> groups;  // x categories; each holds one bar per series
  std::vector<ChartSeries> series;
  std::vector<ReferenceLine> reference_lines;
  // The y range; unset: from the data (and reference lines), padded to round ticks. When the
  // range does not start at 0 the chart says so under its title (bars then show differences,
  // not proportions).
  std::optional<double> y_min;
  std::optional<double> y_max;
  // printf format of the value printed on each bar and in tooltips ("" prints none on bars).
  std::string value_format = "%.2f";
  int width = 1200;
  int height = 380;
};

struct LineChart {
  std::string title;
  std::string y_label;
  std::vector<std::string> x_labels;  // categories along x (e.g. layer names, in graph order)
  std::vector<ChartSeries> series;
  std::optional<double> y_min;
  std::optional<double> y_max;
  std::string value_format = "%.1f";
  int width = 1200;
  int height = 420;
};

std::string RenderBarChart(const BarChart& chart);
std::string RenderLineChart(const LineChart& chart);

// Text safe inside HTML/SVG element content and attribute values (& < > " ').
std::string HtmlEscape(absl::string_view text);

// The palette colour of series `index` ("#4e79a7", ...), cycling.
std::string SeriesColor(int index);

// Tick values covering [lo, hi] with a 1/2/5 x 10^k step, about `target` of them; the first tick
// <= lo and the last >= hi.
std::vector<double> NiceTicks(double lo, double hi, int target = 6);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_SVG_CHART_H_
