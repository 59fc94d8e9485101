// Microbenchmarks of kernels/quantize: every kernel beside its scalar reference (the `_Ref`
// twin) on the same data, in one binary and one run, ending with the speedup table.
//
// Sizes: 4 Ki, 64 Ki and 1 Mi elements per tensor (L1-, L2- and L3-resident on this machine),
// and the per-channel kernels on a ResNet activation (56x56x64, layer1) in NHWC and NCHW.
// Target (issue 2): the dispatched SIMD path at least 8x the scalar reference for per-tensor
// quantize and dequantize of 1 M elements.
//
//   bazel run //bench:quantize_benchmark                                   # full run
//   bazel run //bench:quantize_benchmark -- --benchmark_min_time=0.01     # smoke run
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "hwy/aligned_allocator.h"
#include "kernels/quantize/quantize.h"
#include "kernels/quantize/quantize_ref.h"

namespace qlab::kernels {
namespace {

constexpr uint32_t kSeed = 42;
constexpr float kScale = 0.02f;  // with N(0, 1) data: about +-2.5 sigma inside int8's range
constexpr int32_t kZeroPoint = 3;
const AffineParams kInt8Params{kScale, kZeroPoint, -128, 127};

template <typename T>
hwy::AlignedFreeUniquePtr<T[]> Buffer(size_t n) {
  auto p = hwy::AllocateAligned<T>(n);
  for (size_t i = 0; i < n; ++i) p[i] = T();
  return p;
}

hwy::AlignedFreeUniquePtr<float[]> NormalData(size_t n) {
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto p = hwy::AllocateAligned<float>(n);
  for (size_t i = 0; i < n; ++i) p[i] = normal(rng);
  return p;
}

// Runs `body` per iteration and reports bytes read + written per element.
template <class Body>
void Run(benchmark::State& state, size_t n, size_t bytes_per_element, Body body) {
  for (auto _ : state) {
    body();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n * bytes_per_element));
  state.SetLabel(QuantizeKernelsTargetName());
}

PerChannelAffineParams AsPerChannel(const AffineParams& p) {
  return {&p.scale, &p.zero_point, p.quant_min, p.quant_max};
}

void BM_QuantizeS8(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] { Quantize(x.get(), n, kInt8Params, y.get()); });
}
void BM_QuantizeS8_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] { QuantizeRef(x.get(), {1, 1, n}, AsPerChannel(kInt8Params), y.get()); });
}

void BM_QuantizeU8(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<uint8_t>(n);
  const AffineParams p{kScale, 128, 0, 255};
  Run(state, n, 5, [&] { Quantize(x.get(), n, p, y.get()); });
}
void BM_QuantizeU8_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<uint8_t>(n);
  const AffineParams p{kScale, 128, 0, 255};
  Run(state, n, 5, [&] { QuantizeRef(x.get(), {1, 1, n}, AsPerChannel(p), y.get()); });
}

hwy::AlignedFreeUniquePtr<int8_t[]> QuantizedData(size_t n) {
  const auto x = NormalData(n);
  auto q = Buffer<int8_t>(n);
  Quantize(x.get(), n, kInt8Params, q.get());
  return q;
}

void BM_DequantizeS8(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto q = QuantizedData(n);
  auto y = Buffer<float>(n);
  Run(state, n, 5, [&] { Dequantize(q.get(), n, kScale, kZeroPoint, y.get()); });
}
void BM_DequantizeS8_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto q = QuantizedData(n);
  auto y = Buffer<float>(n);
  Run(state, n, 5,
      [&] { DequantizeRef(q.get(), {1, 1, n}, &kScale, &kZeroPoint, y.get()); });
}

void BM_FakeQuantize(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<float>(n);
  auto mask = Buffer<uint8_t>(n);
  Run(state, n, 9, [&] { FakeQuantize(x.get(), n, kInt8Params, y.get(), mask.get()); });
}
void BM_FakeQuantize_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  auto y = Buffer<float>(n);
  auto mask = Buffer<uint8_t>(n);
  Run(state, n, 9, [&] {
    FakeQuantizeRef(x.get(), {1, 1, n}, AsPerChannel(kInt8Params), y.get(), mask.get());
  });
}

// int32 accumulators of the size a 3x3x64 conv produces.
hwy::AlignedFreeUniquePtr<int32_t[]> Accumulators(size_t n) {
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, 20000.0f);
  auto acc = hwy::AllocateAligned<int32_t>(n);
  for (size_t i = 0; i < n; ++i) acc[i] = static_cast<int32_t>(normal(rng));
  return acc;
}
constexpr float kRequantMultiplier = 0.0007f;
constexpr RequantizeOutput kRequantOutput{-5, -128, 127};
constexpr int32_t kFixedMultiplier = 1539316279;  // 0.0007 * 2^41, rounded
constexpr int32_t kFixedShift = 41;

void BM_Requantize(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto acc = Accumulators(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] {
    Requantize(acc.get(), {1, 1, n}, &kRequantMultiplier, kRequantOutput, y.get());
  });
}
void BM_Requantize_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto acc = Accumulators(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] {
    RequantizeRef(acc.get(), {1, 1, n}, &kRequantMultiplier, kRequantOutput, y.get());
  });
}

void BM_RequantizeFixedPoint(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto acc = Accumulators(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] {
    RequantizeFixedPoint(acc.get(), {1, 1, n}, &kFixedMultiplier, &kFixedShift, kRequantOutput,
                         y.get());
  });
}
void BM_RequantizeFixedPoint_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto acc = Accumulators(n);
  auto y = Buffer<int8_t>(n);
  Run(state, n, 5, [&] {
    RequantizeFixedPointRef(acc.get(), {1, 1, n}, &kFixedMultiplier, &kFixedShift,
                            kRequantOutput, y.get());
  });
}

void BM_MinMax(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  Run(state, n, 4, [&] { benchmark::DoNotOptimize(MinMax(x.get(), n)); });
}
void BM_MinMax_Ref(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const auto x = NormalData(n);
  Run(state, n, 4, [&] { benchmark::DoNotOptimize(MinMaxRef(x.get(), n)); });
}

// ResNet18 layer1 activation, 56x56x64, batch 1.
constexpr size_t kChannels = 64;
constexpr size_t kPixels = 56 * 56;
constexpr ChannelDims kNHWC{kPixels, kChannels, 1};
constexpr ChannelDims kNCHW{1, kChannels, kPixels};

struct ChannelParamArrays {
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
  PerChannelAffineParams params() const {
    return {scales.data(), zero_points.data(), -128, 127};
  }
};
ChannelParamArrays ChannelParamsFor(size_t channels) {
  ChannelParamArrays p;
  for (size_t c = 0; c < channels; ++c) {
    p.scales.push_back(kScale * (1.0f + 0.01f * static_cast<float>(c)));
    p.zero_points.push_back(static_cast<int32_t>(c % 7) - 3);
  }
  return p;
}

template <bool kReference>
void QuantizePerChannelBench(benchmark::State& state, const ChannelDims& dims) {
  const auto x = NormalData(dims.size());
  auto y = Buffer<int8_t>(dims.size());
  const ChannelParamArrays p = ChannelParamsFor(dims.channels);
  Run(state, dims.size(), 5, [&] {
    if constexpr (kReference) {
      QuantizeRef(x.get(), dims, p.params(), y.get());
    } else {
      QuantizePerChannel(x.get(), dims, p.params(), y.get());
    }
  });
}
void BM_QuantizePerChannelNHWC(benchmark::State& s) { QuantizePerChannelBench<false>(s, kNHWC); }
void BM_QuantizePerChannelNHWC_Ref(benchmark::State& s) {
  QuantizePerChannelBench<true>(s, kNHWC);
}
void BM_QuantizePerChannelNCHW(benchmark::State& s) { QuantizePerChannelBench<false>(s, kNCHW); }
void BM_QuantizePerChannelNCHW_Ref(benchmark::State& s) {
  QuantizePerChannelBench<true>(s, kNCHW);
}

template <bool kReference>
void MinMaxPerChannelBench(benchmark::State& state, const ChannelDims& dims) {
  const auto x = NormalData(dims.size());
  std::vector<float> mins(dims.channels), maxs(dims.channels);
  Run(state, dims.size(), 4, [&] {
    if constexpr (kReference) {
      benchmark::DoNotOptimize(MinMaxPerChannelRef(x.get(), dims, mins.data(), maxs.data()));
    } else {
      benchmark::DoNotOptimize(MinMaxPerChannel(x.get(), dims, mins.data(), maxs.data()));
    }
  });
}
void BM_MinMaxPerChannelNHWC(benchmark::State& s) { MinMaxPerChannelBench<false>(s, kNHWC); }
void BM_MinMaxPerChannelNHWC_Ref(benchmark::State& s) { MinMaxPerChannelBench<true>(s, kNHWC); }

#define QLAB_PER_TENSOR_BENCHMARK(name)                        \
  BENCHMARK(name)->Arg(4096)->Arg(65536)->Arg(1 << 20);        \
  BENCHMARK(name##_Ref)->Arg(4096)->Arg(65536)->Arg(1 << 20)

QLAB_PER_TENSOR_BENCHMARK(BM_QuantizeS8);
QLAB_PER_TENSOR_BENCHMARK(BM_QuantizeU8);
QLAB_PER_TENSOR_BENCHMARK(BM_DequantizeS8);
QLAB_PER_TENSOR_BENCHMARK(BM_FakeQuantize);
QLAB_PER_TENSOR_BENCHMARK(BM_Requantize);
QLAB_PER_TENSOR_BENCHMARK(BM_RequantizeFixedPoint);
QLAB_PER_TENSOR_BENCHMARK(BM_MinMax);
BENCHMARK(BM_QuantizePerChannelNHWC);
BENCHMARK(BM_QuantizePerChannelNHWC_Ref);
BENCHMARK(BM_QuantizePerChannelNCHW);
BENCHMARK(BM_QuantizePerChannelNCHW_Ref);
BENCHMARK(BM_MinMaxPerChannelNHWC);
BENCHMARK(BM_MinMaxPerChannelNHWC_Ref);

}  // namespace
}  // namespace qlab::kernels

int main(int argc, char** argv) {
  qlab::bench::RatioReporter reporter;
  const auto compare = [&](const std::string& name, const std::string& arg, double target,
                           const std::string& description) {
    const std::string suffix = arg.empty() ? "" : "/" + arg;
    reporter.AddComparison(name + "_Ref" + suffix, name + suffix, target, description);
  };
  // The targets.
  compare("BM_QuantizeS8", "1048576", 8.0, "quantize f32->s8, 1M (target)");
  compare("BM_DequantizeS8", "1048576", 8.0, "dequantize s8->f32, 1M (target)");
  // Informative: no stated target, so 1x (the SIMD path must at least not lose).
  compare("BM_QuantizeU8", "1048576", 1.0, "quantize f32->u8, 1M");
  compare("BM_FakeQuantize", "1048576", 1.0, "fake-quantize + mask, 1M");
  compare("BM_Requantize", "1048576", 1.0, "requantize s32->s8 fp32, 1M");
  compare("BM_RequantizeFixedPoint", "1048576", 1.0, "requantize s32->s8 fixed, 1M");
  compare("BM_MinMax", "1048576", 1.0, "min/max, 1M");
  compare("BM_QuantizePerChannelNHWC", "", 1.0, "per-channel quantize 56x56x64 NHWC");
  compare("BM_QuantizePerChannelNCHW", "", 1.0, "per-channel quantize 64x56x56 NCHW");
  compare("BM_MinMaxPerChannelNHWC", "", 1.0, "per-channel min/max 56x56x64 NHWC");
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
