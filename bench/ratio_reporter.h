// RatioReporter: side-by-side ratios for Google Benchmark runs.
//
// qlab states its performance targets as ratios measured in one run (SIMD vs the scalar
// reference, qlab vs oneDNN, qlab vs PyTorch), never as absolute times: these machines are
// noisy, and a ratio of two measurements taken seconds apart in the same process on the same
// cores is the number that survives. This reporter prints the normal console output unchanged,
// records each benchmark's real time per iteration by name, and after all runs prints one table
// row per registered comparison:
//
//   qlab::bench::RatioReporter reporter;
//   reporter.AddComparison("BM_QuantizeS8_Ref/1048576", "BM_QuantizeS8/1048576",
//                          /*target_speedup=*/8.0, "quantize f32->s8, 1M elements");
//   return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
//
// Nothing here knows about quantization: baseline and candidate are any two benchmark names.
#ifndef QLAB_BENCH_RATIO_REPORTER_H_
#define QLAB_BENCH_RATIO_REPORTER_H_

#include <map>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

namespace qlab::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // speedup = time(baseline) / time(candidate); MET when speedup >= target_speedup. Names are
  // the full run names the console prints (e.g. "BM_Foo/4096", "BM_Bar/real_time").
  void AddComparison(std::string baseline, std::string candidate, double target_speedup,
                     std::string description);

  // A reporter passed to RunSpecifiedBenchmarks does not see --benchmark_color (the library
  // applies it only to the display reporter it creates itself), so the caller decides.
  void SetColor(bool color);

  void ReportRuns(const std::vector<Run>& runs) override;

  // Prints the comparison table to the reporter's output stream. Comparisons whose benchmarks
  // did not run (e.g. filtered out) are listed as "not run". Returns the number of comparisons
  // that ran and missed their target.
  int PrintRatios();

  // Real time per iteration of a benchmark that ran, in seconds; negative if it did not run.
  double SecondsPerIteration(const std::string& name) const;

 private:
  struct Comparison {
    std::string baseline;
    std::string candidate;
    double target_speedup;
    std::string description;
  };
  std::vector<Comparison> comparisons_;
  std::map<std::string, double> seconds_per_iteration_;  // by run name
};

// benchmark::Initialize, run every selected benchmark through `reporter`, print the ratio table.
// Returns 0 even when a target is missed: timings are measurements, not tests, and a smoke run
// in CI must not fail on a loaded machine. Returns 1 only for unrecognized arguments.
int RunBenchmarksWithRatios(int argc, char** argv, RatioReporter& reporter);

}  // namespace qlab::bench

#endif  // QLAB_BENCH_RATIO_REPORTER_H_
