// RatioReporter: side-by-side ratios for Google Benchmark runs.
//
// qlab states its performance targets as ratios measured in one run (SIMD vs the scalar
// reference, qlab vs oneDNN, qlab vs PyTorch), never as absolute times: these machines are
// noisy, and a ratio of two measurements taken minutes apart on the same cores is the number
// that survives. This reporter prints the normal console output, records each benchmark's time
// per iteration, and at the end prints one table row per registered comparison:
//
//   qlab::bench::RatioReporter reporter;
//   reporter.AddComparison("BM_QuantizeS8_Ref/1048576", "BM_QuantizeS8/1048576",
//                          /*target_speedup=*/8.0, "quantize f32->s8, 1M elements");
//   return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
#ifndef QLAB_BENCH_RATIO_REPORTER_H_
#define QLAB_BENCH_RATIO_REPORTER_H_

#include <map>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"

namespace qlab::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // speedup = time(baseline) / time(candidate); MET when speedup >= target_speedup.
  void AddComparison(std::string baseline, std::string candidate, double target_speedup,
                     std::string description);

  void ReportRuns(const std::vector<Run>& runs) override;

  // Prints the comparison table; comparisons whose benchmarks did not run (filtered out) say so.
  // Returns the number of comparisons that ran and missed their target.
  int PrintRatios() const;

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

// benchmark::Initialize, run everything selected with `reporter`, print the ratio table.
// Exit status 0: a missed target is reported, not an error (timings are not tests).
int RunBenchmarksWithRatios(int argc, char** argv, RatioReporter& reporter);

}  // namespace qlab::bench

#endif  // QLAB_BENCH_RATIO_REPORTER_H_
