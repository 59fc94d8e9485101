#include "bench/ratio_reporter.h"

#include <cstdio>
#include <utility>

namespace qlab::bench {

void RatioReporter::AddComparison(std::string baseline, std::string candidate,
                                  double target_speedup, std::string description) {
  comparisons_.push_back(
      {std::move(baseline), std::move(candidate), target_speedup, std::move(description)});
}

void RatioReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& run : runs) {
    // Aggregates (mean/median of repetitions) carry their own names; the plain runs are the
    // ones a comparison names. With repetitions the last plain run wins unless a median exists.
    if (run.error_occurred || run.iterations == 0) continue;
    const std::string name = run.benchmark_name();
    const double seconds = run.real_accumulated_time / static_cast<double>(run.iterations);
    seconds_per_iteration_[name] = seconds;
    if (run.run_type == Run::RT_Aggregate && run.aggregate_name == "median") {
      seconds_per_iteration_[run.run_name.str()] = seconds;
    }
  }
  ConsoleReporter::ReportRuns(runs);
}

int RatioReporter::PrintRatios() const {
  int missed = 0;
  std::printf("\nSide-by-side ratios (same binary, same run; speedup = baseline / candidate)\n");
  std::printf("%-44s %12s %12s %9s %7s  %s\n", "comparison", "baseline", "candidate",
              "speedup", "target", "result");
  for (const Comparison& c : comparisons_) {
    const auto base = seconds_per_iteration_.find(c.baseline);
    const auto cand = seconds_per_iteration_.find(c.candidate);
    if (base == seconds_per_iteration_.end() || cand == seconds_per_iteration_.end()) {
      std::printf("%-44s %12s %12s %9s %6.1fx  not run (%s / %s)\n", c.description.c_str(), "-",
                  "-", "-", c.target_speedup, c.baseline.c_str(), c.candidate.c_str());
      continue;
    }
    const double speedup = base->second / cand->second;
    const bool met = speedup >= c.target_speedup;
    missed += met ? 0 : 1;
    std::printf("%-44s %10.1fus %10.1fus %8.2fx %6.1fx  %s\n", c.description.c_str(),
                base->second * 1e6, cand->second * 1e6, speedup, c.target_speedup,
                met ? "MET" : "MISSED");
  }
  return missed;
}

int RunBenchmarksWithRatios(int argc, char** argv, RatioReporter& reporter) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}

}  // namespace qlab::bench
