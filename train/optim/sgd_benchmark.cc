// Sgd::Step throughput on whole-model parameter counts, 1 and 2 threads.
//
// The update is memory-bound: per element it reads the parameter, gradient and momentum buffer
// and writes the parameter and buffer (20 bytes), so the figure to read is bytes_per_second
// against the machine's memory bandwidth. Parameter counts are those of the models qlab trains:
// ResNet20 (0.27 M, fits in L2/L3) and ResNet18 (11.7 M, streams from DRAM).
#include <pthreadpool.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "train/optim/sgd.h"

namespace qlab::train {
namespace {

void BM_SgdStep(benchmark::State& state) {
  const size_t elements = static_cast<size_t>(state.range(0));
  const size_t threads = static_cast<size_t>(state.range(1));
  // One large tensor and many small ones, roughly a ResNet's shape: ~90% in 64 equal layers.
  const size_t layers = 64;
  std::vector<std::vector<float>> values, grads;
  for (size_t i = 0; i < layers; ++i) {
    values.emplace_back(elements / layers, 0.01f * static_cast<float>(i));
    grads.emplace_back(elements / layers, 0.001f);
  }
  Sgd sgd{SgdOptions()};
  for (size_t i = 0; i < layers; ++i) {
    if (!sgd.AddParameter(absl::StrCat("layer", i), values[i].data(), grads[i].data(),
                          values[i].size(), i % 2 == 0)
             .ok()) {
      state.SkipWithError("AddParameter failed");
      return;
    }
  }
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  sgd.Step(pool);  // allocates the momentum buffers
  for (auto _ : state) {
    sgd.Step(pool);
    benchmark::DoNotOptimize(values[0].data());
  }
  if (pool != nullptr) pthreadpool_destroy(pool);
  const int64_t updated = static_cast<int64_t>(layers * (elements / layers));
  state.SetItemsProcessed(state.iterations() * updated);
  state.SetBytesProcessed(state.iterations() * updated * 20);
}

BENCHMARK(BM_SgdStep)
    ->ArgNames({"elements", "threads"})
    ->Args({270'000, 1})  // ResNet20
    ->Args({270'000, 2})
    ->Args({11'700'000, 1})  // ResNet18
    ->Args({11'700'000, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace qlab::train

BENCHMARK_MAIN();
