// int8 convolution benchmarks: kernels/qconv's QConvU8S8_NHWC beside oneDNN 2.6 (Debian's
// libdnnl, the reference of the "int8 3x3 and 1x1 convs >= 0.8x oneDNN" target) on every
// distinct conv shape of ResNet18 and ResNet50 at 224x224, batch 1 (and one batch-8 row), with
// 1 and 2 threads, in one binary and one run. Each row reports GOPS (2 per multiply-accumulate)
// and the fraction of this machine's int8 peak for the instruction set the row's kernels ran
// ("peak"), measured first in the same process by throughput loops: VNNI (vpdpbusd zmm, 16
// independent accumulators per thread) and, on CPUs with AMX-INT8, AMX (tdpbusd on 6 independent
// accumulator tiles per thread). The ratio table at the end compares qlab with oneDNN shape by
// shape.
//
// Both sides do the same work: uint8 NHWC activations with zero point 128, int8 weights (packed /
// reordered once outside the timed loop, as an operator does at creation), int32 bias,
// per-channel fp32 requantization to uint8 NHWC with fused ReLU. oneDNN uses OpenMP
// (omp_set_num_threads), qlab a pthreadpool: the qlab rows are registered before the oneDNN rows
// so that one runtime's spinning workers do not share the cores with the other's.
//
//   bazel run //bench:qconv_benchmark -- --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true                        # table (medians)
//   bazel run //bench:qconv_benchmark -- --benchmark_min_time=0.01      # smoke run
//   bazel run //bench:qconv_benchmark -- --onednn_max_isa=avx512_core_vnni --qlab_amx=0
//                                                          # both sides without AMX (VNNI)
//
// --onednn_max_isa (this binary's own flag, consumed before Google Benchmark's): oneDNN picks the
// best ISA of the CPU, which on Xeons with AMX is its AMX int8 kernels (tile matrix multiply, far
// above any AVX-512 VNNI code: the label of each oneDNN row names the kernel). The target
// is stated for a VNNI-only machine (shared/docs/ANCHORS.md); avx512_core_vnni caps oneDNN at
// that ISA for a like-for-like comparison. oneDNN allows setting the cap once, before any
// primitive, hence a flag rather than rows of both kinds in one run.
// --qlab_amx=0 (also this binary's own): qlab's GEMMs take their AVX-512 VNNI path even on a CPU
// with AMX (SetAmxEnabledForTesting(false)); the qlab rows' labels say which kernels ran.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "bench/ratio_reporter.h"
#include "bench/resnet_conv_shapes.h"
#include "benchmark/benchmark.h"
#include "kernels/qconv/qconv.h"
#include "kernels/qgemm/amx_support.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace qlab::kernels {
namespace {

constexpr uint32_t kSeed = 42;
constexpr int32_t kInputZeroPoint = 128;
constexpr int32_t kOutputZeroPoint = 0;  // ReLU output: [0, max] maps to [0, 255]

using bench::kResNetConvShapes;
using ConvLayer = bench::ResNetConvShape;


// --- Peak: VNNI and AMX throughput ---------------------------------------------------------
// Measured once in main() before any benchmark; rows divide by the one of their kernels' ISA.
double g_peak_gops[3] = {0, 0, 0};      // VNNI, by thread count
double g_amx_peak_gops[3] = {0, 0, 0};  // AMX, by thread count (0 without AMX)

#if defined(__x86_64__)
// 16 independent chains of zmm vpdpbusd (64 multiply-accumulates each): enough to cover the
// instruction's latency on both of this core's VNNI pipes. Returns a value the caller consumes
// so that the loop is not removed.
__attribute__((target("avx512f,avx512vnni"), noinline)) int32_t VnniLoop(int64_t iterations) {
  constexpr int kChains = 16;
  __m512i acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-5);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  __m512i sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_epi32(sum, acc[j]);
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, sum);
  int32_t total = 0;
  for (int32_t lane : lanes) total += lane;  // wraps harmlessly: only consumed, never checked
  return total;
}
constexpr double kOpsPerIteration = 16 * 64 * 2;
#endif

#if defined(__x86_64__)
// 6 independent accumulator tiles (tmm0-5) of tdpbusd on one A (tmm6) and one B (tmm7) tile,
// each instruction 16 x 16 x 64 multiply-accumulates: enough chains to cover its latency. The
// tiles are loaded from memory once; the caller must have AMX permission (AmxAvailable()).
struct alignas(64) PeakTileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
__attribute__((target("amx-tile,amx-int8"), noinline)) int32_t AmxLoop(int64_t iterations) {
  PeakTileConfig config = {};
  config.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = 16;
    config.colsb[t] = 64;
  }
  _tile_loadconfig(&config);
  alignas(64) int8_t operand[16 * 64];
  for (size_t i = 0; i < sizeof(operand); ++i) operand[i] = static_cast<int8_t>(i % 7);
  __asm__ volatile("" ::: "memory");  // the tile loads' asm does not name the memory it reads
  _tile_loadd(6, operand, 64);
  _tile_loadd(7, operand, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  for (int64_t i = 0; i < iterations; ++i) {
    _tile_dpbusd(0, 6, 7);
    _tile_dpbusd(1, 6, 7);
    _tile_dpbusd(2, 6, 7);
    _tile_dpbusd(3, 6, 7);
    _tile_dpbusd(4, 6, 7);
    _tile_dpbusd(5, 6, 7);
  }
  alignas(64) int32_t sums[16 * 16];
  _tile_stored(0, sums, 64);
  _tile_release();
  return sums[0];
}
constexpr double kAmxOpsPerIteration = 6 * 16 * 16 * 64 * 2;
#endif

// Best of 3 timed runs (after a warm-up) of loop(iterations) on every thread of a pool; the
// loop does ops_per_iteration operations per iteration.
template <class Loop>
double MeasureLoopGops(int threads, Loop loop, int64_t iterations, double ops_per_iteration) {
  ThreadPool pool(static_cast<size_t>(threads));
  std::vector<int32_t> sinks(static_cast<size_t>(threads));
  const auto run = [&] {
    pool.ParallelFor(static_cast<size_t>(threads),
                     [&](size_t t) { sinks[t] = loop(iterations); });
  };
  run();  // warm-up: clocks ramp up, workers start
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    run();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, ops_per_iteration * static_cast<double>(iterations) * threads /
                              seconds * 1e-9);
  }
  benchmark::DoNotOptimize(sinks.data());
  return best;
}

double MeasureAmxPeakGops(int threads) {
#if defined(__x86_64__)
  if (!AmxAvailable()) return 0.0;
  return MeasureLoopGops(threads, AmxLoop, 2'000'000, kAmxOpsPerIteration);
#else
  (void)threads;
  return 0.0;
#endif
}

double MeasurePeakGops(int threads) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx512vnni")) return 0.0;
  return MeasureLoopGops(threads, VnniLoop, 20'000'000, kOpsPerIteration);
#else
  (void)threads;
  return 0.0;
#endif
}

// amx: whether the row's kernels ran AMX tiles (then "peak" is the AMX peak, else VNNI's).
void ReportRates(benchmark::State& state, double ops, int threads, bool amx) {
  const double gops = ops * 1e-9;
  state.counters["GOPS"] =
      benchmark::Counter(gops * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  // Fraction of the measured peak at this thread count: GOPS / peak, as a rate too.
  const double peak = amx ? g_amx_peak_gops[threads] : g_peak_gops[threads];
  if (peak > 0) {
    state.counters["peak"] =
        benchmark::Counter(gops / peak * static_cast<double>(state.iterations()),
                           benchmark::Counter::kIsRate);
  }
}

struct LayerData {
  std::vector<uint8_t> input;
  std::vector<int8_t> weights_ohwi;
  std::vector<int32_t> bias;
  std::vector<float> multipliers;
};

LayerData MakeData(const ConvLayer& layer) {
  std::mt19937 rng(kSeed);
  std::uniform_int_distribution<int> u8(0, 255), s8(-127, 127), bias(-5000, 5000);
  LayerData d;
  d.input.resize(static_cast<size_t>(layer.batch * layer.size * layer.size * layer.in_c));
  for (uint8_t& v : d.input) v = static_cast<uint8_t>(u8(rng));
  d.weights_ohwi.resize(
      static_cast<size_t>(layer.out_c * layer.kernel * layer.kernel * layer.in_c));
  for (int8_t& v : d.weights_ohwi) v = static_cast<int8_t>(s8(rng));
  d.bias.resize(static_cast<size_t>(layer.out_c));
  for (int32_t& v : d.bias) v = bias(rng);
  std::uniform_real_distribution<float> mult(0.5e-4f, 2e-4f);
  d.multipliers.resize(static_cast<size_t>(layer.out_c));
  for (float& v : d.multipliers) v = mult(rng);
  return d;
}

// --- qlab ------------------------------------------------------------------------------------
void QlabConv(benchmark::State& state, const ConvLayer& layer, int threads) {
  const LayerData d = MakeData(layer);
  QConvShape shape;
  shape.batch = static_cast<size_t>(layer.batch);
  shape.input_height = shape.input_width = static_cast<size_t>(layer.size);
  shape.input_channels = static_cast<size_t>(layer.in_c);
  shape.output_channels = static_cast<size_t>(layer.out_c);
  shape.kernel_height = shape.kernel_width = static_cast<size_t>(layer.kernel);
  shape.stride_height = shape.stride_width = static_cast<size_t>(layer.stride);
  shape.padding_top = shape.padding_left = shape.padding_bottom = shape.padding_right =
      static_cast<size_t>(layer.kernel / 2);
  QConvOutput out;
  out.type = QOutputType::kU8;
  out.multipliers = d.multipliers;
  out.zero_point = kOutputZeroPoint;
  out.min = kOutputZeroPoint;  // fused ReLU
  out.max = 255;
  auto conv = QConvU8S8_NHWC::Create(shape, kInputZeroPoint, d.weights_ohwi.data(),
                                     d.bias.data(), out);
  if (!conv.ok()) {
    state.SkipWithError(conv.status().ToString().c_str());
    return;
  }
  ThreadPool pool(static_cast<size_t>(threads));
  std::vector<uint8_t> output(
      static_cast<size_t>(layer.batch * layer.OutSize() * layer.OutSize() * layer.out_c));
  state.SetLabel(QGemmKernelsName());
  for (auto _ : state) {
    conv->Run(d.input.data(), output.data(), &pool);
    benchmark::ClobberMemory();
  }
  ReportRates(state, layer.Ops(), threads, QGemmUsesAmx());
}

// --- oneDNN ----------------------------------------------------------------------------------
void OnednnConv(benchmark::State& state, const ConvLayer& layer, int threads) {
  using dnnl::memory;
  omp_set_num_threads(threads);
  const LayerData d = MakeData(layer);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const int64_t out = layer.OutSize(), pad = layer.kernel / 2;
  const memory::dims src_dims = {layer.batch, layer.in_c, layer.size, layer.size};
  const memory::dims weight_dims = {layer.out_c, layer.in_c, layer.kernel, layer.kernel};
  const memory::dims bias_dims = {layer.out_c};
  const memory::dims dst_dims = {layer.batch, layer.out_c, out, out};
  const memory::desc src_md(src_dims, memory::data_type::u8, memory::format_tag::nhwc);
  const memory::desc dst_md(dst_dims, memory::data_type::u8, memory::format_tag::nhwc);
  const memory::desc bias_md(bias_dims, memory::data_type::s32, memory::format_tag::a);
  // oneDNN chooses its blocked weight layout; the OHWI weights are reordered once below.
  const memory::desc weight_any(weight_dims, memory::data_type::s8, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md,
      weight_any, bias_md, dst_md, {layer.stride, layer.stride}, {pad, pad}, {pad, pad});
  dnnl::primitive_attr attr;
  attr.set_output_scales(/*mask=*/1 << 1, d.multipliers);  // per output channel
  attr.set_zero_points(DNNL_ARG_SRC, /*mask=*/0, {kInputZeroPoint});
  dnnl::post_ops ops;
  ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  attr.set_post_ops(ops);
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);

  memory src(src_md, engine, const_cast<uint8_t*>(d.input.data()));
  memory bias_mem(bias_md, engine, const_cast<int32_t*>(d.bias.data()));
  memory dst(dst_md, engine);
  // OHWI is oneDNN's "ohwi" tag for dims {O, I, H, W}.
  memory weight_ohwi({weight_dims, memory::data_type::s8, memory::format_tag::ohwi}, engine,
                     const_cast<int8_t*>(d.weights_ohwi.data()));
  memory weight_mem(pd.weights_desc(), engine);
  dnnl::reorder(weight_ohwi, weight_mem).execute(stream, weight_ohwi, weight_mem);
  stream.wait();
  dnnl::convolution_forward conv(pd);
  state.SetLabel(pd.impl_info_str());
  for (auto _ : state) {
    conv.execute(stream, {{DNNL_ARG_SRC, src},
                          {DNNL_ARG_WEIGHTS, weight_mem},
                          {DNNL_ARG_BIAS, bias_mem},
                          {DNNL_ARG_DST, dst}});
    stream.wait();
  }
  ReportRates(state, layer.Ops(), threads,
              std::string(pd.impl_info_str()).find("amx") != std::string::npos);
}

void PeakBenchmark(benchmark::State& state, const double* peaks, int threads,
                   const char* label) {
  for (auto _ : state) benchmark::DoNotOptimize(peaks[threads]);
  state.counters["GOPS"] = peaks[threads];
  state.SetLabel(label);
}

std::string RowName(const char* system, const ConvLayer& layer, int threads) {
  return std::string(system) + "/" + layer.name + "/threads:" + std::to_string(threads);
}

void RegisterAll(bench::RatioReporter& reporter) {
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark(("vnni_peak/threads:" + std::to_string(threads)).c_str(),
                                 PeakBenchmark, g_peak_gops, threads,
                                 "measured at start-up, vpdpbusd zmm loop")
        ->Iterations(1);
    benchmark::RegisterBenchmark(("amx_peak/threads:" + std::to_string(threads)).c_str(),
                                 PeakBenchmark, g_amx_peak_gops, threads,
                                 "measured at start-up, tdpbusd loop (0: no AMX)")
        ->Iterations(1);
  }
  for (const char* system : {"qlab", "onednn"}) {
    for (const ConvLayer& layer : kResNetConvShapes) {
      for (int threads : {1, 2}) {
        const auto fn = std::string(system) == "qlab" ? QlabConv : OnednnConv;
        benchmark::RegisterBenchmark(RowName(system, layer, threads).c_str(), fn, layer, threads)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const ConvLayer& layer : kResNetConvShapes) {
    for (int threads : {1, 2}) {
      // The target: ResNet18's 3x3 and 1x1 int8 convs at 2 threads >= 0.8x oneDNN.
      const bool target = layer.target && threads == 2;
      reporter.AddComparison(RowName("onednn", layer, threads) + "/real_time",
                             RowName("qlab", layer, threads) + "/real_time", target ? 0.8 : 0.0,
                             std::string(target ? "TARGET " : "info: ") + layer.name + ", " +
                                 std::to_string(threads) + "T");
    }
  }
}

}  // namespace
}  // namespace qlab::kernels

int main(int argc, char** argv) {
  using namespace qlab::kernels;
  const std::string kIsaFlag = "--onednn_max_isa=";
  const std::string kAmxFlag = "--qlab_amx=";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(kAmxFlag, 0) == 0) {
      const std::string value = arg.substr(kAmxFlag.size());
      if (value != "0" && value != "1") {
        std::fprintf(stderr, "--qlab_amx: want 0 or 1, got %s\n", value.c_str());
        return 1;
      }
      SetAmxEnabledForTesting(value == "1");
      continue;
    }
    if (arg.rfind(kIsaFlag, 0) != 0) {
      argv[kept++] = argv[i];
      continue;
    }
    const std::string isa = arg.substr(kIsaFlag.size());
    if (isa == "avx512_core_vnni") {
      dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx512_core_vnni);
    } else if (isa != "all") {
      std::fprintf(stderr, "--onednn_max_isa: want all or avx512_core_vnni, got %s\n",
                   isa.c_str());
      return 1;
    }
  }
  argc = kept;
  g_peak_gops[1] = MeasurePeakGops(1);
  g_peak_gops[2] = MeasurePeakGops(2);
  g_amx_peak_gops[1] = MeasureAmxPeakGops(1);
  g_amx_peak_gops[2] = MeasureAmxPeakGops(2);
  qlab::bench::RatioReporter reporter;
  RegisterAll(reporter);
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
