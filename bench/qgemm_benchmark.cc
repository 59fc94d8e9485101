// Microbenchmarks of kernels/qgemm: the dispatched int8 GEMM (the VNNI micro-kernel on this
// machine) beside the portable Highway path forced onto the AVX3 target and beside the scalar
// triple loop (qgemm_ref.h), on the same data in one binary and one run, ending with the
// side-by-side speedup table of bench/ratio_reporter.h. Single-threaded; weights are packed once
// outside the timed loop (as an operator does at creation).
//
// Shapes: the im2col GEMMs of ResNet's 3x3 convolutions at batch 1, one per stage (M = output
// pixels, N = output channels, K = 3 * 3 * input channels). GOPS counts 2 * M * N * K.
//
//   bazel run //bench:qgemm_benchmark                                   # full run
//   bazel run //bench:qgemm_benchmark -- --benchmark_min_time=0.01     # smoke run
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "hwy/targets.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/qgemm_ref.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kSeed = 42;
constexpr int32_t kZeroPoint = 128;

struct GemmShape {
  int64_t m, n, k;
};
const GemmShape kResNetShapes[] = {
    {3136, 64, 576},   // conv2_x: 56x56 pixels, 64 -> 64 channels, 3x3
    {784, 128, 1152},  // conv3_x: 28x28, 128 -> 128
    {196, 256, 2304},  // conv4_x: 14x14, 256 -> 256
    {49, 512, 4608},   // conv5_x: 7x7, 512 -> 512
};

enum class Path { kDispatched, kPortableAvx3, kReference };

void QGemmBench(benchmark::State& state, Path path) {
  const size_t m = static_cast<size_t>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  const size_t k = static_cast<size_t>(state.range(2));
  std::mt19937 rng(kSeed);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  std::vector<uint8_t> a(m * k);
  for (uint8_t& v : a) v = static_cast<uint8_t>(u8(rng));
  std::vector<int8_t> b(k * n);
  for (int8_t& v : b) v = static_cast<int8_t>(s8(rng));
  std::vector<int32_t> c(m * n);
  const PackedWeights packed = PackWeights(b.data(), k, n, n);

  // Forcing the target uses Highway's test hook; it is undone below so that later benchmarks
  // dispatch normally again.
  if (path == Path::kPortableAvx3) hwy::SetSupportedTargetsForTest(HWY_AVX3);
  state.SetLabel(path == Path::kReference ? "scalar ref" : QGemmKernelsTargetName());
  benchmark::DoNotOptimize(c.data());
  for (auto _ : state) {
    if (path == Path::kReference) {
      QGemmU8S8S32Ref(a.data(), m, k, k, kZeroPoint, b.data(), n, n, c.data(), n);
    } else {
      QGemmU8S8S32(a.data(), m, k, kZeroPoint, packed, c.data(), n);
    }
    benchmark::ClobberMemory();
  }
  if (path == Path::kPortableAvx3) hwy::SetSupportedTargetsForTest(0);
  state.counters["GOPS"] = benchmark::Counter(
      2.0 * static_cast<double>(m * n * k) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}
void BM_QGemmU8S8S32(benchmark::State& s) { QGemmBench(s, Path::kDispatched); }
void BM_QGemmU8S8S32_Portable(benchmark::State& s) { QGemmBench(s, Path::kPortableAvx3); }
void BM_QGemmU8S8S32_Ref(benchmark::State& s) { QGemmBench(s, Path::kReference); }

void ResNetShapes(benchmark::internal::Benchmark* b) {
  for (const GemmShape& s : kResNetShapes) b->Args({s.m, s.n, s.k});
  b->ArgNames({"m", "n", "k"})->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_QGemmU8S8S32)->Apply(ResNetShapes);
BENCHMARK(BM_QGemmU8S8S32_Portable)->Apply(ResNetShapes);
BENCHMARK(BM_QGemmU8S8S32_Ref)->Apply(ResNetShapes);

}  // namespace
}  // namespace qlab::kernels

int main(int argc, char** argv) {
  qlab::bench::RatioReporter reporter;
  for (const auto& s : qlab::kernels::kResNetShapes) {
    const std::string args = "/m:" + std::to_string(s.m) + "/n:" + std::to_string(s.n) +
                             "/k:" + std::to_string(s.k);
    const std::string shape =
        std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
    // Informative (the targets are stated against oneDNN, not measured here yet).
    reporter.AddComparison("BM_QGemmU8S8S32_Ref" + args, "BM_QGemmU8S8S32" + args, 1.0,
                           "info: u8s8s32 GEMM dispatched vs scalar ref, " + shape);
    reporter.AddComparison("BM_QGemmU8S8S32_Portable" + args, "BM_QGemmU8S8S32" + args, 1.0,
                           "info: u8s8s32 GEMM dispatched vs portable AVX3 path, " + shape);
  }
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
