// Microbenchmarks of kernels/quantize: every dispatched SIMD kernel beside its scalar reference
// (the `_Ref` twin, from quantize_ref.h) on the same data, in one binary and one run, ending
// with the side-by-side speedup table of bench/ratio_reporter.h.
//
// Sizes: 4 Ki, 64 Ki and 1 Mi elements per tensor (L1-, L2- and L3-resident on the project
// machine), and the per-channel kernels on a ResNet-18 layer-1 activation (56x56x64) in NHWC and
// NCHW. Target (the issue): the dispatched SIMD path at least 8x the scalar reference for
// per-tensor quantize f32->s8 and dequantize s8->f32 of 1 M elements.
//
//   bazel run //bench:quantize_benchmark                                   # full run
//   bazel run //bench:quantize_benchmark -- --benchmark_min_time=0.01     # smoke run
#include <cstddef>
#include <cstdint>
#include <cstring>
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
// Activations ~ N(0, 1) with scale 0.02: x / scale spans +-127 at about 2.5 sigma, so most
// values land inside int8's range and about 1% saturate, as with a calibrated observer.
constexpr float kScale = 0.02f;
constexpr int32_t kZeroPoint = 3;
const AffineParams kS8Params{kScale, kZeroPoint, -128, 127};
const AffineParams kU8Params{kScale, 128, 0, 255};

constexpr int64_t kSizes[] = {4096, 65536, 1 << 20};

// 64-byte aligned (HWY_ALIGNMENT), zero-filled so that the first timed iteration does not pay
// for page faults on the output.
template <typename T>
hwy::AlignedFreeUniquePtr<T[]> Buffer(size_t n) {
  auto p = hwy::AllocateAligned<T>(n);
  for (size_t i = 0; i < n; ++i) p[i] = T();
  return p;
}

// The same seed everywhere: a kernel and its _Ref twin see identical inputs.
hwy::AlignedFreeUniquePtr<float[]> NormalData(size_t n, float stddev = 1.0f) {
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, stddev);
  auto p = hwy::AllocateAligned<float>(n);
  for (size_t i = 0; i < n; ++i) p[i] = normal(rng);
  return p;
}

PerChannelAffineParams AsPerChannel(const AffineParams& p) {
  return {&p.scale, &p.zero_point, p.quant_min, p.quant_max};
}

template <typename Q>
hwy::AlignedFreeUniquePtr<Q[]> QuantizedData(size_t n, const AffineParams& params) {
  const auto x = NormalData(n);
  auto q = Buffer<Q>(n);
  QuantizeRef(x.get(), ChannelDims{1, 1, n}, AsPerChannel(params), q.get());
  return q;
}

// Labels: the SIMD runs name the Highway target they were dispatched to (the first thing to
// check when a number looks off); the references run the baseline ISA whatever the CPU.
const char* SimdLabel() { return QuantizeKernelsTargetName(); }
constexpr const char kRefLabel[] = "scalar ref";

// Times `body` and reports items and bytes (read + written) per second. `output` is passed
// through DoNotOptimize once so that the compiler must assume it escapes; ClobberMemory after
// each call then forces the stores of the inlined reference loops to happen every iteration.
template <class Body>
void Run(benchmark::State& state, size_t n, size_t bytes_per_element, const void* output,
         const char* label, Body body) {
  benchmark::DoNotOptimize(output);
  for (auto _ : state) {
    body();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n * bytes_per_element));
  state.SetLabel(label);
}

size_t Size(const benchmark::State& state) { return static_cast<size_t>(state.range(0)); }

// --- Quantize f32 -> s8 / u8 (4 bytes read, 1 written per element) ---------------------------
template <typename Q>
void QuantizeBench(benchmark::State& state, const AffineParams& params, bool reference) {
  const size_t n = Size(state);
  const auto x = NormalData(n);
  auto y = Buffer<Q>(n);
  if (reference) {
    Run(state, n, 5, y.get(), kRefLabel, [&] {
      QuantizeRef(x.get(), ChannelDims{1, 1, n}, AsPerChannel(params), y.get());
    });
  } else {
    Run(state, n, 5, y.get(), SimdLabel(), [&] { Quantize(x.get(), n, params, y.get()); });
  }
}
void BM_QuantizeS8(benchmark::State& s) { QuantizeBench<int8_t>(s, kS8Params, false); }
void BM_QuantizeS8_Ref(benchmark::State& s) { QuantizeBench<int8_t>(s, kS8Params, true); }
void BM_QuantizeU8(benchmark::State& s) { QuantizeBench<uint8_t>(s, kU8Params, false); }
void BM_QuantizeU8_Ref(benchmark::State& s) { QuantizeBench<uint8_t>(s, kU8Params, true); }

// --- Dequantize s8 / u8 -> f32 (1 byte read, 4 written) ---------------------------------------
template <typename Q>
void DequantizeBench(benchmark::State& state, const AffineParams& params, bool reference) {
  const size_t n = Size(state);
  const auto q = QuantizedData<Q>(n, params);
  auto y = Buffer<float>(n);
  if (reference) {
    Run(state, n, 5, y.get(), kRefLabel, [&] {
      DequantizeRef(q.get(), ChannelDims{1, 1, n}, &params.scale, &params.zero_point, y.get());
    });
  } else {
    Run(state, n, 5, y.get(), SimdLabel(),
        [&] { Dequantize(q.get(), n, params.scale, params.zero_point, y.get()); });
  }
}
void BM_DequantizeS8(benchmark::State& s) { DequantizeBench<int8_t>(s, kS8Params, false); }
void BM_DequantizeS8_Ref(benchmark::State& s) { DequantizeBench<int8_t>(s, kS8Params, true); }
void BM_DequantizeU8(benchmark::State& s) { DequantizeBench<uint8_t>(s, kU8Params, false); }
void BM_DequantizeU8_Ref(benchmark::State& s) { DequantizeBench<uint8_t>(s, kU8Params, true); }

// --- Fake-quantize with the straight-through mask (4 read; 4 + 1 written) ---------------------
void FakeQuantizeBench(benchmark::State& state, bool reference) {
  const size_t n = Size(state);
  const auto x = NormalData(n);
  auto y = Buffer<float>(n);
  auto mask = Buffer<uint8_t>(n);
  benchmark::DoNotOptimize(mask.get());
  if (reference) {
    Run(state, n, 9, y.get(), kRefLabel, [&] {
      FakeQuantizeRef(x.get(), ChannelDims{1, 1, n}, AsPerChannel(kS8Params), y.get(), mask.get());
    });
  } else {
    Run(state, n, 9, y.get(), SimdLabel(),
        [&] { FakeQuantize(x.get(), n, kS8Params, y.get(), mask.get()); });
  }
}
void BM_FakeQuantize(benchmark::State& s) { FakeQuantizeBench(s, false); }
void BM_FakeQuantize_Ref(benchmark::State& s) { FakeQuantizeBench(s, true); }

// --- Requantize s32 -> s8 (4 read, 1 written) -------------------------------------------------
// Accumulators ~ N(0, 60000) with a real multiplier of 0.0007: the output spans int8's range at
// about 3 sigma, like the output stage of a calibrated 3x3x64 convolution.
constexpr float kAccStddev = 60000.0f;
constexpr float kRequantMultiplier = 0.0007f;
constexpr int32_t kFixedMultiplier = 1539316279;  // round(0.0007 * 2^41), in [2^30, 2^31)
constexpr int32_t kFixedShift = 41;
constexpr RequantizeOutput kRequantOutput{-5, -128, 127};

hwy::AlignedFreeUniquePtr<int32_t[]> Accumulators(size_t n) {
  const auto normal = NormalData(n, kAccStddev);
  auto acc = hwy::AllocateAligned<int32_t>(n);
  for (size_t i = 0; i < n; ++i) acc[i] = static_cast<int32_t>(normal[i]);
  return acc;
}

void RequantizeBench(benchmark::State& state, bool fixed_point, bool reference) {
  const size_t n = Size(state);
  const ChannelDims dims{1, 1, n};
  const auto acc = Accumulators(n);
  auto y = Buffer<int8_t>(n);
  const char* label = reference ? kRefLabel : SimdLabel();
  if (fixed_point) {
    Run(state, n, 5, y.get(), label, [&] {
      if (reference) {
        RequantizeFixedPointRef(acc.get(), dims, &kFixedMultiplier, &kFixedShift, kRequantOutput,
                                y.get());
      } else {
        RequantizeFixedPoint(acc.get(), dims, &kFixedMultiplier, &kFixedShift, kRequantOutput,
                             y.get());
      }
    });
  } else {
    Run(state, n, 5, y.get(), label, [&] {
      if (reference) {
        RequantizeRef(acc.get(), dims, &kRequantMultiplier, kRequantOutput, y.get());
      } else {
        Requantize(acc.get(), dims, &kRequantMultiplier, kRequantOutput, y.get());
      }
    });
  }
}
void BM_Requantize(benchmark::State& s) { RequantizeBench(s, false, false); }
void BM_Requantize_Ref(benchmark::State& s) { RequantizeBench(s, false, true); }
void BM_RequantizeFixedPoint(benchmark::State& s) { RequantizeBench(s, true, false); }
void BM_RequantizeFixedPoint_Ref(benchmark::State& s) { RequantizeBench(s, true, true); }

// --- Min/max (4 read) -------------------------------------------------------------------------
void MinMaxBench(benchmark::State& state, bool reference) {
  const size_t n = Size(state);
  const auto x = NormalData(n);
  MinMaxResult result{};
  Run(state, n, 4, &result, reference ? kRefLabel : SimdLabel(), [&] {
    result = reference ? MinMaxRef(x.get(), n) : MinMax(x.get(), n);
    benchmark::DoNotOptimize(result);
  });
}
void BM_MinMax(benchmark::State& s) { MinMaxBench(s, false); }
void BM_MinMax_Ref(benchmark::State& s) { MinMaxBench(s, true); }

// --- Per-channel, ResNet-18 layer-1 activation 56x56x64, batch 1 ------------------------------
constexpr size_t kChannels = 64;
constexpr size_t kPixels = 56 * 56;
constexpr ChannelDims kNHWC{kPixels, kChannels, 1};  // channel innermost: parameter vectors
constexpr ChannelDims kNCHW{1, kChannels, kPixels};  // channel outer: broadcast parameters

struct ChannelParamArrays {
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
  PerChannelAffineParams params() const { return {scales.data(), zero_points.data(), -128, 127}; }
};
// Scales within +-30% of kScale and small zero points, as a per-channel observer produces.
ChannelParamArrays ChannelParamsFor(size_t channels) {
  ChannelParamArrays p;
  for (size_t c = 0; c < channels; ++c) {
    p.scales.push_back(kScale *
                       (0.7f + 0.6f * static_cast<float>(c) / static_cast<float>(channels)));
    p.zero_points.push_back(static_cast<int32_t>(c % 7) - 3);
  }
  return p;
}

void QuantizePerChannelBench(benchmark::State& state, const ChannelDims& dims, bool reference) {
  const size_t n = dims.size();
  const auto x = NormalData(n);
  auto y = Buffer<int8_t>(n);
  const ChannelParamArrays p = ChannelParamsFor(dims.channels);
  if (reference) {
    Run(state, n, 5, y.get(), kRefLabel, [&] { QuantizeRef(x.get(), dims, p.params(), y.get()); });
  } else {
    Run(state, n, 5, y.get(), SimdLabel(),
        [&] { QuantizePerChannel(x.get(), dims, p.params(), y.get()); });
  }
}
void BM_QuantizePerChannelNHWC(benchmark::State& s) { QuantizePerChannelBench(s, kNHWC, false); }
void BM_QuantizePerChannelNHWC_Ref(benchmark::State& s) { QuantizePerChannelBench(s, kNHWC, true); }
void BM_QuantizePerChannelNCHW(benchmark::State& s) { QuantizePerChannelBench(s, kNCHW, false); }
void BM_QuantizePerChannelNCHW_Ref(benchmark::State& s) { QuantizePerChannelBench(s, kNCHW, true); }

void MinMaxPerChannelBench(benchmark::State& state, const ChannelDims& dims, bool reference) {
  const size_t n = dims.size();
  const auto x = NormalData(n);
  std::vector<float> mins(dims.channels);
  std::vector<float> maxs(dims.channels);
  Run(state, n, 4, mins.data(), reference ? kRefLabel : SimdLabel(), [&] {
    const size_t nans = reference ? MinMaxPerChannelRef(x.get(), dims, mins.data(), maxs.data())
                                  : MinMaxPerChannel(x.get(), dims, mins.data(), maxs.data());
    benchmark::DoNotOptimize(nans);
    benchmark::DoNotOptimize(maxs.data());
  });
}
void BM_MinMaxPerChannelNHWC(benchmark::State& s) { MinMaxPerChannelBench(s, kNHWC, false); }
void BM_MinMaxPerChannelNHWC_Ref(benchmark::State& s) { MinMaxPerChannelBench(s, kNHWC, true); }

// The ceiling for any kernel whose 1 M-element float output (4 MB) leaves L2: filling the same
// buffer with memset (glibc's `rep stosb`, which skips the read-for-ownership ordinary stores
// pay). "dequantize ref / memset" is then the largest speedup memory bandwidth allows on this
// machine, measured in the same run as the dequantize rows.
void BM_StoreRoofline(benchmark::State& state) {
  const size_t n = Size(state);
  auto y = Buffer<float>(n);
  Run(state, n, 4, y.get(), "memset", [&] { std::memset(y.get(), 0x3f, n * sizeof(float)); });
}
BENCHMARK(BM_StoreRoofline)->Arg(1 << 20);

// Each SIMD benchmark is registered right before its _Ref twin so the two run back to back
// under the same machine conditions.
void PerTensorSizes(benchmark::internal::Benchmark* b) {
  for (const int64_t n : kSizes) b->Arg(n);
}
#define QLAB_PER_TENSOR_BENCHMARK(name)   \
  BENCHMARK(name)->Apply(PerTensorSizes); \
  BENCHMARK(name##_Ref)->Apply(PerTensorSizes)

QLAB_PER_TENSOR_BENCHMARK(BM_QuantizeS8);
QLAB_PER_TENSOR_BENCHMARK(BM_QuantizeU8);
QLAB_PER_TENSOR_BENCHMARK(BM_DequantizeS8);
QLAB_PER_TENSOR_BENCHMARK(BM_DequantizeU8);
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
  // baseline = the _Ref twin, candidate = the dispatched SIMD kernel.
  const auto compare = [&](const std::string& name, const std::string& arg, double target,
                           const std::string& description) {
    const std::string suffix = arg.empty() ? "" : "/" + arg;
    reporter.AddComparison(name + "_Ref" + suffix, name + suffix, target, description);
  };
  // The targets.
  compare("BM_QuantizeS8", "1048576", 8.0, "TARGET quantize f32->s8, 1M");
  compare("BM_DequantizeS8", "1048576", 8.0, "TARGET dequantize s8->f32, 1M");
  // What the 8x above can reach at most here: the reference's time over the store roofline.
  reporter.AddComparison("BM_DequantizeS8_Ref/1048576", "BM_StoreRoofline/1048576", 1.0,
                         "ceiling: dequantize ref / 4 MB memset");
  // Informative, no stated target: 1x only says the SIMD path must not lose to the scalar loop.
  // The 64K rows show the same kernels with the data in L2, i.e. without memory-bandwidth limits.
  compare("BM_QuantizeS8", "65536", 1.0, "info: quantize f32->s8, 64K");
  compare("BM_DequantizeS8", "65536", 1.0, "info: dequantize s8->f32, 64K");
  compare("BM_QuantizeU8", "1048576", 1.0, "info: quantize f32->u8, 1M");
  compare("BM_DequantizeU8", "1048576", 1.0, "info: dequantize u8->f32, 1M");
  compare("BM_FakeQuantize", "1048576", 1.0, "info: fake-quantize + mask, 1M");
  compare("BM_Requantize", "1048576", 1.0, "info: requantize s32->s8 fp32, 1M");
  compare("BM_RequantizeFixedPoint", "1048576", 1.0, "info: requantize s32->s8 fixed, 1M");
  compare("BM_MinMax", "1048576", 1.0, "info: min/max, 1M");
  compare("BM_QuantizePerChannelNHWC", "", 1.0, "info: per-channel quantize 56x56x64 NHWC");
  compare("BM_QuantizePerChannelNCHW", "", 1.0, "info: per-channel quantize 64x56x56 NCHW");
  compare("BM_MinMaxPerChannelNHWC", "", 1.0, "info: per-channel min/max 56x56x64 NHWC");
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
