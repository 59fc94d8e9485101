// RenderBarChart / RenderLineChart (experiments/svg_chart.h): layout arithmetic and SVG text.
//
// A chart is laid out top to bottom as title, optional note, legend (wrapped to the width), plot,
// x labels (turned 40 degrees when they do not fit their slot). Coordinates are rounded to 0.1
// px in the output so that the text is short and identical across compilers' float printing.
#include "experiments/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace qlab::experiments {
namespace {

constexpr int kTitleHeight = 26;
constexpr int kLegendRowHeight = 18;
constexpr int kMarginLeft = 72;
constexpr int kMarginRight = 150;  // room for reference-line labels
constexpr double kCharWidth = 6.4;  // average width of an 11 px sans-serif character

std::string Num(double v) { return absl::StrFormat("%.1f", v); }

std::string FormatValue(const std::string& format, double v) {
  static const std::string kDefault = "%.2f";
  // The spec keeps a view of its text: it must outlive the spec (no temporary here).
  const absl::UntypedFormatSpec spec(format.empty() ? kDefault : format);
  std::string out;
  if (!absl::FormatUntyped(&out, spec, {absl::FormatArg(v)})) return absl::StrFormat("%g", v);
  return out;
}

struct Range {
  double lo;
  double hi;
};

// The data's extent (values +- errors, reference lines); nullopt when there is no value.
std::optional<Range> Extent(const std::vector<ChartSeries>& series,
                            const std::vector<ReferenceLine>& lines) {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -lo;
  for (const ChartSeries& s : series) {
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (!s.values[i] || !std::isfinite(*s.values[i])) continue;
      const double e = i < s.errors.size() ? std::abs(s.errors[i]) : 0.0;
      lo = std::min(lo, *s.values[i] - e);
      hi = std::max(hi, *s.values[i] + e);
    }
  }
  for (const ReferenceLine& l : lines) {
    lo = std::min(lo, l.value);
    hi = std::max(hi, l.value);
  }
  if (!std::isfinite(lo)) return std::nullopt;
  return Range{lo, hi};
}

// The axis range and its ticks. Bars of non-negative data start at 0 unless the data sit in a
// narrow band far from 0 (accuracies of 88-92 %), where a zero-based axis would hide every
// difference the chart exists to show.
std::vector<double> AxisTicks(std::optional<Range> extent, std::optional<double> y_min,
                              std::optional<double> y_max, bool bars) {
  Range r = extent.value_or(Range{0.0, 1.0});
  if (bars && r.lo >= 0.0 && r.hi > 0.0 && (r.hi - r.lo) > 0.4 * r.hi) r.lo = 0.0;
  double span = r.hi - r.lo;
  if (span <= 0.0) span = std::max(1.0, std::abs(r.hi) * 0.1);
  double lo = y_min.value_or(r.lo == 0.0 && bars ? 0.0 : r.lo - 0.12 * span);
  double hi = y_max.value_or(r.hi + 0.1 * span);
  if (bars && r.lo >= 0.0 && lo < 0.0) lo = 0.0;
  std::vector<double> ticks = NiceTicks(lo, hi);
  if (y_min) ticks.front() = *y_min;
  if (y_max) ticks.back() = *y_max;
  return ticks;
}

struct Frame {
  double left, top, width, height;
  double y_lo, y_hi;
  double Y(double v) const {
    const double t = (std::clamp(v, y_lo, y_hi) - y_lo) / (y_hi - y_lo);
    return top + height * (1.0 - t);
  }
};

// Title, note and the legend; returns the y where the plot may begin.
double Header(std::string& svg, const std::string& title, const std::string& note,
              const std::vector<ChartSeries>& series, int width, bool line_markers) {
  absl::StrAppend(&svg, "<text x=\"", kMarginLeft, "\" y=\"18\" class=\"ct\">",
                  HtmlEscape(title), "</text>\n");
  double y = kTitleHeight;
  if (!note.empty()) {
    absl::StrAppend(&svg, "<text x=\"", kMarginLeft, "\" y=\"", Num(y + 8),
                    "\" class=\"cn\">", HtmlEscape(note), "</text>\n");
    y += 16;
  }
  double x = kMarginLeft;
  y += 6;
  for (size_t i = 0; i < series.size(); ++i) {
    const double item = 22 + kCharWidth * static_cast<double>(series[i].name.size()) + 16;
    if (x + item > width - 10 && x > kMarginLeft) {
      x = kMarginLeft;
      y += kLegendRowHeight;
    }
    const std::string color = SeriesColor(static_cast<int>(i));
    if (line_markers) {
      absl::StrAppend(&svg, "<line x1=\"", Num(x), "\" y1=\"", Num(y + 5), "\" x2=\"",
                      Num(x + 16), "\" y2=\"", Num(y + 5), "\" stroke=\"", color,
                      "\" stroke-width=\"2.5\"/>");
    } else {
      absl::StrAppend(&svg, "<rect x=\"", Num(x), "\" y=\"", Num(y), "\" width=\"12\" height=\"10\" "
                      "fill=\"", color, "\"/>");
    }
    absl::StrAppend(&svg, "<text x=\"", Num(x + 20), "\" y=\"", Num(y + 9), "\" class=\"cl\">",
                    HtmlEscape(series[i].name), "</text>\n");
    x += item;
  }
  if (!series.empty()) y += kLegendRowHeight;
  return y + 6;
}

// Height the x labels need: straight when they fit their slot, turned otherwise.
double XLabelHeight(const std::vector<std::string>& labels, double slot, bool* turned) {
  size_t longest = 0;
  for (const std::string& l : labels) longest = std::max(longest, l.size());
  const double text = kCharWidth * static_cast<double>(longest);
  *turned = text > slot - 4;
  return *turned ? std::min(170.0, 0.66 * text + 18) : 22.0;
}

void XLabels(std::string& svg, const std::vector<std::string>& labels, const Frame& f,
             double slot, bool turned) {
  for (size_t i = 0; i < labels.size(); ++i) {
    const double x = f.left + slot * (static_cast<double>(i) + 0.5);
    const double y = f.top + f.height + 14;
    if (turned) {
      absl::StrAppend(&svg, "<text x=\"", Num(x), "\" y=\"", Num(y), "\" class=\"cl\" "
                      "text-anchor=\"end\" transform=\"rotate(-40 ", Num(x), " ", Num(y), ")\">",
                      HtmlEscape(labels[i]), "</text>\n");
    } else {
      absl::StrAppend(&svg, "<text x=\"", Num(x), "\" y=\"", Num(y), "\" class=\"cl\" "
                      "text-anchor=\"middle\">", HtmlEscape(labels[i]), "</text>\n");
    }
  }
}

void YAxis(std::string& svg, const Frame& f, const std::vector<double>& ticks,
           const std::string& y_label) {
  double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
  const int decimals = step >= 1.0 ? 0 : std::min(4, static_cast<int>(std::ceil(-std::log10(step))));
  for (const double t : ticks) {
    const double y = f.Y(t);
    absl::StrAppend(&svg, "<line x1=\"", Num(f.left), "\" y1=\"", Num(y), "\" x2=\"",
                    Num(f.left + f.width), "\" y2=\"", Num(y), "\" class=\"grid\"/>"
                    "<text x=\"", Num(f.left - 6), "\" y=\"", Num(y + 4), "\" class=\"cl\" "
                    "text-anchor=\"end\">", absl::StrFormat("%.*f", decimals, t), "</text>\n");
  }
  absl::StrAppend(&svg, "<line x1=\"", Num(f.left), "\" y1=\"", Num(f.top), "\" x2=\"",
                  Num(f.left), "\" y2=\"", Num(f.top + f.height), "\" class=\"axis\"/>"
                  "<line x1=\"", Num(f.left), "\" y1=\"", Num(f.top + f.height), "\" x2=\"",
                  Num(f.left + f.width), "\" y2=\"", Num(f.top + f.height), "\" class=\"axis\"/>\n");
  const double cy = f.top + f.height / 2;
  absl::StrAppend(&svg, "<text x=\"16\" y=\"", Num(cy), "\" class=\"cl\" text-anchor=\"middle\" "
                  "transform=\"rotate(-90 16 ", Num(cy), ")\">", HtmlEscape(y_label), "</text>\n");
}

std::string Open(int width, double height, const std::string& title) {
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"", width,
                      "\" height=\"", Num(height), "\" viewBox=\"0 0 ", width, " ", Num(height),
                      "\" role=\"img\" aria-label=\"", HtmlEscape(title), "\">\n");
}

std::string AxisNote(const std::vector<double>& ticks, bool bars) {
  // Only when 0 is outside the axis: with 0 inside, bars grow from it and lengths are honest.
  if (!bars || ticks.empty() || (ticks.front() <= 0.0 && ticks.back() >= 0.0)) return "";
  return absl::StrCat("y axis starts at ", absl::StrFormat("%g", ticks.front()),
                      ", not 0: bar heights show differences");
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string SeriesColor(int index) {
  // Tableau 10: distinguishable, also in greyscale print, and colour-blind tolerable.
  static const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                         "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
  return kPalette[static_cast<size_t>(index) % (sizeof(kPalette) / sizeof(kPalette[0]))];
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1.0;
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  const double first = std::floor(lo / step + 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0; i < 1000; ++i) {
    // Multiply instead of accumulating, and round to the step, so that 0.1-steps do not drift
    // (0.30000000000000004).
    const double t = std::round((first + step * i) / step) * step;
    ticks.push_back(t);
    if (t >= hi - 1e-9 * step) break;
  }
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string RenderBarChart(const BarChart& chart) {
  const std::optional<Range> extent = Extent(chart.series, chart.reference_lines);
  const std::vector<double> ticks = AxisTicks(extent, chart.y_min, chart.y_max, /*bars=*/true);
  std::string body;
  const double plot_top = Header(body, chart.title, AxisNote(ticks, true), chart.series,
                                 chart.width, /*line_markers=*/false);
  const double plot_width = chart.width - kMarginLeft - kMarginRight;
  const double slot = plot_width / std::max<size_t>(1, chart.groups.size());
  bool turned = false;
  const double label_height = XLabelHeight(chart.groups, slot, &turned);
  const double plot_height = std::max(120.0, chart.height - plot_top - label_height - 8);
  const Frame f{kMarginLeft, plot_top + 10, plot_width, plot_height, ticks.front(), ticks.back()};
  YAxis(body, f, ticks, chart.y_label);

  const size_t n_series = std::max<size_t>(1, chart.series.size());
  const double bar = std::min(60.0, 0.82 * slot / static_cast<double>(n_series));
  const double base = f.Y(std::max(ticks.front(), 0.0));
  for (size_t g = 0; g < chart.groups.size(); ++g) {
    const double group_left = f.left + slot * static_cast<double>(g) +
                              (slot - bar * static_cast<double>(n_series)) / 2;
    for (size_t s = 0; s < chart.series.size(); ++s) {
      const ChartSeries& series = chart.series[s];
      if (g >= series.values.size() || !series.values[g] || !std::isfinite(*series.values[g])) {
        continue;
      }
      const double v = *series.values[g];
      const double x = group_left + bar * static_cast<double>(s);
      const double y = f.Y(v);
      const double top = std::min(y, base);
      const double error = g < series.errors.size() ? std::abs(series.errors[g]) : 0.0;
      std::string tooltip = absl::StrCat(chart.groups[g], " / ", series.name, ": ",
                                         FormatValue(chart.value_format, v));
      if (error > 0) absl::StrAppend(&tooltip, " \u00b1 ", FormatValue(chart.value_format, error));
      absl::StrAppend(&body, "<rect x=\"", Num(x + 0.5), "\" y=\"", Num(top), "\" width=\"",
                      Num(std::max(1.0, bar - 1.0)), "\" height=\"",
                      Num(std::max(0.5, std::abs(base - y))), "\" fill=\"",
                      SeriesColor(static_cast<int>(s)), "\"><title>", HtmlEscape(tooltip),
                      "</title></rect>\n");
      double label_y = top - 3;
      if (error > 0) {
        const double cx = x + bar / 2;
        const double y1 = f.Y(v + error);
        const double y2 = f.Y(v - error);
        absl::StrAppend(&body, "<path d=\"M", Num(cx), " ", Num(y1), "V", Num(y2), "M",
                        Num(cx - 3), " ", Num(y1), "h6M", Num(cx - 3), " ", Num(y2),
                        "h6\" class=\"err\"/>\n");
        label_y = std::min(label_y, y1 - 3);
      }
      if (!chart.value_format.empty() && bar >= 9) {
        const std::string text = FormatValue(chart.value_format, v);
        const double cx = x + bar / 2;
        if (bar >= kCharWidth * 0.85 * static_cast<double>(text.size()) + 2) {
          absl::StrAppend(&body, "<text x=\"", Num(cx), "\" y=\"", Num(label_y),
                          "\" class=\"cv\" text-anchor=\"middle\">", text, "</text>\n");
        } else {
          absl::StrAppend(&body, "<text x=\"", Num(cx + 3), "\" y=\"", Num(label_y),
                          "\" class=\"cv\" transform=\"rotate(-90 ", Num(cx + 3), " ",
                          Num(label_y), ")\">", text, "</text>\n");
        }
      }
    }
  }
  for (const ReferenceLine& line : chart.reference_lines) {
    const double y = f.Y(line.value);
    absl::StrAppend(&body, "<line x1=\"", Num(f.left), "\" y1=\"", Num(y), "\" x2=\"",
                    Num(f.left + f.width), "\" y2=\"", Num(y), "\" class=\"ref\"><title>",
                    HtmlEscape(line.label), "</title></line><text x=\"",
                    Num(f.left + f.width + 6), "\" y=\"", Num(y + 4), "\" class=\"cr\">",
                    HtmlEscape(line.label), "</text>\n");
  }
  XLabels(body, chart.groups, f, slot, turned);
  const double height = f.top + f.height + label_height + 8;
  return absl::StrCat(Open(chart.width, height, chart.title), body, "</svg>\n");
}

std::string RenderLineChart(const LineChart& chart) {
  const std::optional<Range> extent = Extent(chart.series, {});
  const std::vector<double> ticks = AxisTicks(extent, chart.y_min, chart.y_max, /*bars=*/false);
  std::string body;
  const double plot_top =
      Header(body, chart.title, "", chart.series, chart.width, /*line_markers=*/true);
  const double plot_width = chart.width - kMarginLeft - kMarginRight;
  const double slot = plot_width / std::max<size_t>(1, chart.x_labels.size());
  bool turned = false;
  const double label_height = XLabelHeight(chart.x_labels, slot, &turned);
  const double plot_height = std::max(140.0, chart.height - plot_top - label_height - 8);
  const Frame f{kMarginLeft, plot_top + 10, plot_width, plot_height, ticks.front(), ticks.back()};
  YAxis(body, f, ticks, chart.y_label);
  for (size_t s = 0; s < chart.series.size(); ++s) {
    const ChartSeries& series = chart.series[s];
    const std::string color = SeriesColor(static_cast<int>(s));
    std::string path;
    bool pen_down = false;
    std::string dots;
    for (size_t i = 0; i < series.values.size() && i < chart.x_labels.size(); ++i) {
      if (!series.values[i] || !std::isfinite(*series.values[i])) {
        pen_down = false;  // a gap, not a line through a missing value
        continue;
      }
      const double x = f.left + slot * (static_cast<double>(i) + 0.5);
      const double y = f.Y(*series.values[i]);
      absl::StrAppend(&path, pen_down ? "L" : "M", Num(x), " ", Num(y));
      pen_down = true;
      absl::StrAppend(&dots, "<circle cx=\"", Num(x), "\" cy=\"", Num(y), "\" r=\"3\" fill=\"",
                      color, "\"><title>",
                      HtmlEscape(absl::StrCat(chart.x_labels[i], " / ", series.name, ": ",
                                              FormatValue(chart.value_format, *series.values[i]))),
                      "</title></circle>");
    }
    if (!path.empty()) {
      absl::StrAppend(&body, "<path d=\"", path, "\" fill=\"none\" stroke=\"", color,
                      "\" stroke-width=\"2\"/>\n");
    }
    absl::StrAppend(&body, dots, "\n");
  }
  XLabels(body, chart.x_labels, f, slot, turned);
  const double height = f.top + f.height + label_height + 8;
  return absl::StrCat(Open(chart.width, height, chart.title), body, "</svg>\n");
}

}  // namespace qlab::experiments
