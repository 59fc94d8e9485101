// RatioReporter: see ratio_reporter.h.
#include "bench/ratio_reporter.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <string>
#include <utility>

namespace qlab::bench {
namespace {

// "123.45 us": one unit per value, so a table can mix nanosecond kernels and whole-model runs.
std::string FormatSeconds(double seconds) {
  const char* unit = "s";
  double value = seconds;
  if (seconds < 1e-6) {
    unit = "ns";
    value = seconds * 1e9;
  } else if (seconds < 1e-3) {
    unit = "us";
    value = seconds * 1e6;
  } else if (seconds < 1.0) {
    unit = "ms";
    value = seconds * 1e3;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.2f %s", value, unit);
  return buffer;
}

// Mirrors Google Benchmark's own --benchmark_color handling ("auto" by default: color only on a
// terminal), because the library applies that flag only to the reporter it creates itself.
bool ColorRequested(int argc, char** argv) {
  constexpr const char kFlag[] = "--benchmark_color=";
  std::string value = "auto";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kFlag, sizeof(kFlag) - 1) == 0) value = argv[i] + sizeof(kFlag) - 1;
  }
  if (value == "auto") {
    const char* term = std::getenv("TERM");
    return isatty(STDOUT_FILENO) != 0 && term != nullptr && std::strcmp(term, "dumb") != 0;
  }
  for (const char* falsy : {"", "0", "false", "False", "FALSE", "no", "No", "NO", "off", "n"}) {
    if (value == falsy) return false;
  }
  return true;
}

// The number the console prints in its "Time" column, in seconds. (For an aggregate the library
// stores the statistic such that the same conversion applies.)
double RealSecondsPerIteration(const benchmark::BenchmarkReporter::Run& run) {
  return run.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(run.time_unit);
}

}  // namespace

void RatioReporter::AddComparison(std::string baseline, std::string candidate,
                                  double target_speedup, std::string description) {
  comparisons_.push_back(
      {std::move(baseline), std::move(candidate), target_speedup, std::move(description)});
}

void RatioReporter::SetColor(bool color) {
  output_options_ = static_cast<OutputOptions>(color ? (output_options_ | OO_Color)
                                                     : (output_options_ & ~OO_Color));
}

void RatioReporter::ReportRuns(const std::vector<Run>& runs) {
  // One call carries one benchmark's repetitions followed by their aggregates. A comparison
  // names the plain run; with --benchmark_repetitions the median stands in for it (the mean
  // would let one preempted repetition move the ratio), hence the second pass.
  for (const Run& run : runs) {
    if (run.error_occurred || run.iterations <= 0 || run.run_type != Run::RT_Iteration) continue;
    seconds_per_iteration_[run.benchmark_name()] = RealSecondsPerIteration(run);
  }
  for (const Run& run : runs) {
    if (run.error_occurred || run.iterations <= 0 || run.run_type != Run::RT_Aggregate ||
        run.aggregate_name != "median") {
      continue;
    }
    seconds_per_iteration_[run.run_name.str()] = RealSecondsPerIteration(run);
  }
  ConsoleReporter::ReportRuns(runs);
}

double RatioReporter::SecondsPerIteration(const std::string& name) const {
  const auto it = seconds_per_iteration_.find(name);
  return it == seconds_per_iteration_.end() ? -1.0 : it->second;
}

int RatioReporter::PrintRatios() {
  std::ostream& out = GetOutputStream();
  size_t width = std::strlen("comparison");
  for (const Comparison& c : comparisons_) width = std::max(width, c.description.size());
  const int w = static_cast<int>(width);
  char line[1024];

  out << "\nSide-by-side ratios (real time per iteration, same binary and run; "
         "speedup = baseline / candidate)\n";
  std::snprintf(line, sizeof(line), "%-*s %12s %12s %9s %8s  %s\n", w, "comparison", "baseline",
                "candidate", "speedup", "target", "result");
  out << line << std::string(width + 60, '-') << "\n";
  int met = 0;
  int missed = 0;
  int not_run = 0;
  for (const Comparison& c : comparisons_) {
    const double base = SecondsPerIteration(c.baseline);
    const double cand = SecondsPerIteration(c.candidate);
    if (base <= 0.0 || cand <= 0.0) {
      ++not_run;
      std::snprintf(line, sizeof(line), "%-*s %12s %12s %9s %7.2fx  not run (%s vs %s)\n", w,
                    c.description.c_str(), "-", "-", "-", c.target_speedup, c.baseline.c_str(),
                    c.candidate.c_str());
      out << line;
      continue;
    }
    const double speedup = base / cand;
    const bool ok = speedup >= c.target_speedup;
    ++(ok ? met : missed);
    std::snprintf(line, sizeof(line), "%-*s %12s %12s %8.2fx %7.2fx  %s\n", w,
                  c.description.c_str(), FormatSeconds(base).c_str(), FormatSeconds(cand).c_str(),
                  speedup, c.target_speedup, ok ? "MET" : "MISSED");
    out << line;
  }
  std::snprintf(line, sizeof(line), "%d met, %d missed, %d not run\n", met, missed, not_run);
  out << line << std::flush;
  return missed;
}

int RunBenchmarksWithRatios(int argc, char** argv, RatioReporter& reporter) {
  // Read before Initialize, which removes the flags it consumes from argv.
  reporter.SetColor(ColorRequested(argc, argv));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}

}  // namespace qlab::bench
