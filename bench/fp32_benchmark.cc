// FP32 convolution benchmarks: kernels/fp32's NHWC convolution beside oneDNN 2.6 (Debian's
// libdnnl, the reference implementation of the "fp32 convs >= 0.7x oneDNN" target) on
// every distinct conv shape of ResNet18 and ResNet50 at 224x224, batch 1 (and one batch-8 row:
// resnet_conv_shapes.h, the int8 benchmark's shapes), with 1 and 2 threads, in one binary and one
// run; each row reports GFLOPS and the fraction of this machine's fp32 peak, measured
// first in the same process by an FMA throughput loop (AVX-512, 12 independent accumulators per
// thread). The ratio table at the end compares qlab with oneDNN shape by shape, and the
// double-accumulation convolution (the fake-quant reference's, fp32_gemm_double.h) with the float
// one on the CIFAR ResNets' shapes.
//
// Both sides run bias + ReLU fused, NHWC activations, weights reordered/packed once outside the
// timed loop (as an operator does at creation). oneDNN uses OpenMP (omp_set_num_threads), qlab a
// pthreadpool: their benchmarks are registered in two groups (qlab first) so that one runtime's
// spinning workers do not share the cores with the other's.
//
// Whole models: torchvision ResNet18 and ResNet50 (models/resnet.h, seeded random weights) at
// 224x224, batch 1, through engine/'s Fp32Engine (NCHW input to logits, conversions included),
// 1 and 2 threads. The issue compares these with PyTorch 1.13 (12.2 / 28.8 ms here with 2
// threads, per ../shared/docs/ANCHORS.md); a script timing PyTorch in the same run is still to
// be written.
//
//   bazel run //bench:fp32_benchmark -- --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true                          (table; one line)
//   bazel run //bench:fp32_benchmark -- --benchmark_min_time=0.01      # smoke run
#include <omp.h>
#include <pthreadpool.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "bench/ratio_reporter.h"
#include "bench/resnet_conv_shapes.h"
#include "benchmark/benchmark.h"
#include "core/tensor.h"
#include "engine/fp32_engine.h"
#include "kernels/fp32/fp32_gemm.h"
#include "kernels/fp32/fp32_gemm_double.h"
#include "kernels/threadpool/pthreadpool_ptr.h"
#include "models/resnet.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace qlab::kernels {
namespace {

constexpr uint32_t kSeed = 42;

// One conv layer of ResNet18 (torchvision, 224x224 input), with the input size it sees.
using ConvLayer = bench::ResNetConvShape;
using bench::kResNetConvShapes;

// --- Peak: FMA throughput -------------------------------------------------------------------
// Measured once in main() before any benchmark; rows divide by it.
double g_peak_gflops[3] = {0, 0, 0};  // by thread count

#if defined(__x86_64__)
// 12 independent chains of zmm FMAs: with 2 FMA ports and 4-cycle latency, 8 chains already
// saturate the units; 12 leave margin for other latencies. Returns a value the caller consumes so
// that the loop is not removed.
__attribute__((target("avx512f"), noinline)) float FmaLoop(int64_t iterations) {
  constexpr int kChains = 12;
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(0.001f * static_cast<float>(j));
  const __m512 mul = _mm512_set1_ps(0.9999999f), add = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], mul, add);
  }
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
  // Stored and summed by hand: GCC 12's _mm512_reduce_add_ps trips -Wuninitialized in its header.
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}
constexpr double kFlopsPerIteration = 12 * 16 * 2;
#endif

using PoolPtr = kernels::PthreadpoolPtr;

double MeasurePeakGflops(int threads) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx512f")) return 0.0;
  const PoolPtr pool = kernels::MakePthreadpool(static_cast<size_t>(threads));
  constexpr int64_t kIterations = 50'000'000;
  struct Context {
    float sink;
  } context{0.0f};
  const auto run = [&] {
    pthreadpool_parallelize_1d(
        pool.get(),
        [](void* c, size_t) {
          static_cast<Context*>(c)->sink += FmaLoop(kIterations);  // race-free: result unused
        },
        &context, static_cast<size_t>(threads), 0);
  };
  run();  // warm-up: clocks ramp up, workers start
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    run();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, kFlopsPerIteration * kIterations * threads / seconds * 1e-9);
  }
  benchmark::DoNotOptimize(context.sink);
  return best;
#else
  (void)threads;
  return 0.0;
#endif
}

void ReportRates(benchmark::State& state, double flops, int threads) {
  state.counters["GFLOPS"] = benchmark::Counter(flops * static_cast<double>(state.iterations()) *
                                                    1e-9,
                                                benchmark::Counter::kIsRate);
  const double peak = g_peak_gflops[threads];
  if (peak > 0) {
    state.counters["peak_frac"] = benchmark::Counter(
        flops * static_cast<double>(state.iterations()) * 1e-9 / peak,
        benchmark::Counter::kIsRate);
  }
}

std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

// The 3x3 convolutions of the CIFAR-10 ResNets (ResNet20 .. 56), batch 1: the shapes the
// fake-quant reference runs with double accumulation (fp32_gemm_double.h) in every PTQ record.
const ConvLayer kCifarResNetConvs[] = {
    {"cifar_stem_3x3_3-16_32", 3, 16, 32, 3, 1, false},
    {"cifar_layer1_3x3_16-16_32", 16, 16, 32, 3, 1, false},
    {"cifar_layer2_3x3_32-32_16", 32, 32, 16, 3, 1, false},
    {"cifar_layer3_3x3_64-64_8", 64, 64, 8, 3, 1, false},
};

// --- qlab ------------------------------------------------------------------------------------
// `double_accumulation`: Fp32Conv2dNhwcDoubleAccumulation instead of Fp32Conv2dNhwc.
void QlabConv(benchmark::State& state, const ConvLayer& layer, int threads,
              bool double_accumulation) {
  std::mt19937 rng(kSeed);
  const int64_t out = layer.OutSize();
  const std::vector<float> input =
      RandomFloats(layer.batch * layer.size * layer.size * layer.in_c, rng);
  const std::vector<float> weight =
      RandomFloats(layer.out_c * layer.in_c * layer.kernel * layer.kernel, rng);
  const std::vector<float> bias = RandomFloats(layer.out_c, rng);
  AlignedFloats output(layer.batch * out * out * layer.out_c);
  const Fp32PackedWeights packed = PackFp32ConvWeights(
      weight.data(), layer.out_c, layer.in_c, layer.kernel, layer.kernel, bias.data());
  Fp32ConvGeometry g;
  g.batch = layer.batch;
  g.in_h = g.in_w = layer.size;
  g.in_channels = layer.in_c;
  g.kernel_h = g.kernel_w = layer.kernel;
  g.stride_h = g.stride_w = layer.stride;
  g.pad_h = g.pad_w = layer.kernel / 2;
  g.out_h = g.out_w = out;
  Fp32Epilogue epilogue;
  epilogue.relu = true;
  const PoolPtr pool = kernels::MakePthreadpool(static_cast<size_t>(threads));
  state.SetLabel(double_accumulation ? Fp32GemmDoubleTargetName() : Fp32GemmTargetName());
  for (auto _ : state) {
    if (double_accumulation) {
      Fp32Conv2dNhwcDoubleAccumulation(g, input.data(), packed, epilogue, output.data(),
                                       pool.get());
    } else {
      Fp32Conv2dNhwc(g, input.data(), packed, epilogue, output.data(), pool.get());
    }
    benchmark::ClobberMemory();
  }
  ReportRates(state, layer.Ops(), threads);
}

// --- oneDNN ----------------------------------------------------------------------------------
void OnednnConv(benchmark::State& state, const ConvLayer& layer, int threads) {
  using dnnl::memory;
  omp_set_num_threads(threads);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const int64_t out = layer.OutSize(), pad = layer.kernel / 2;
  const memory::dims src_dims = {layer.batch, layer.in_c, layer.size, layer.size};
  const memory::dims weight_dims = {layer.out_c, layer.in_c, layer.kernel, layer.kernel};
  const memory::dims bias_dims = {layer.out_c};
  const memory::dims dst_dims = {layer.batch, layer.out_c, out, out};
  const memory::desc src_md(src_dims, memory::data_type::f32, memory::format_tag::nhwc);
  const memory::desc dst_md(dst_dims, memory::data_type::f32, memory::format_tag::nhwc);
  const memory::desc bias_md(bias_dims, memory::data_type::f32, memory::format_tag::a);
  // Let oneDNN choose its blocked weight layout; the OIHW weights are reordered once below.
  const memory::desc weight_any(weight_dims, memory::data_type::f32, memory::format_tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md,
      weight_any, bias_md, dst_md, {layer.stride, layer.stride}, {pad, pad}, {pad, pad});
  dnnl::post_ops ops;
  ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  const dnnl::convolution_forward::primitive_desc pd(desc, attr, engine);

  std::mt19937 rng(kSeed);
  std::vector<float> input = RandomFloats(layer.batch * layer.size * layer.size * layer.in_c, rng);
  std::vector<float> weight =
      RandomFloats(layer.out_c * layer.in_c * layer.kernel * layer.kernel, rng);
  std::vector<float> bias = RandomFloats(layer.out_c, rng);
  memory src(src_md, engine, input.data()), bias_mem(bias_md, engine, bias.data());
  memory dst(dst_md, engine);
  memory weight_oihw({weight_dims, memory::data_type::f32, memory::format_tag::oihw}, engine,
                     weight.data());
  memory weight_mem(pd.weights_desc(), engine);
  dnnl::reorder(weight_oihw, weight_mem).execute(stream, weight_oihw, weight_mem);
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
  ReportRates(state, layer.Ops(), threads);
}

// --- Whole models through the engine ---------------------------------------------------------
void ModelLatency(benchmark::State& state, const char* model, int threads) {
  ResNetOptions options;
  options.seed = kSeed;
  absl::StatusOr<ResNetSpec> spec = ModelByName(model);
  absl::StatusOr<Graph> graph = spec.ok() ? BuildResNet(*spec, options)
                                          : absl::StatusOr<Graph>(spec.status());
  if (!graph.ok()) return state.SkipWithError(std::string(graph.status().message()).c_str());
  absl::StatusOr<Fp32Engine> engine = Fp32Engine::Create(*graph, threads);
  if (!engine.ok()) return state.SkipWithError(std::string(engine.status().message()).c_str());
  Tensor input = Tensor::Create(DType::kFloat32, {1, 3, 224, 224}, Layout::kNCHW).value();
  std::mt19937 rng(kSeed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (int64_t i = 0; i < input.numel(); ++i) input.data<float>()[i] = dist(rng);
  if (!engine->Run(input).ok()) return state.SkipWithError("engine run failed");  // plans buffers
  for (auto _ : state) {
    absl::StatusOr<Tensor> logits = engine->Run(input);
    benchmark::DoNotOptimize(logits);
  }
  state.SetLabel(std::to_string(engine->num_steps()) + " steps");
}

void PeakBenchmark(benchmark::State& state, int threads) {
  for (auto _ : state) benchmark::DoNotOptimize(g_peak_gflops[threads]);
  state.counters["GFLOPS"] = g_peak_gflops[threads];
  state.SetLabel("measured at start-up, FMA zmm loop");
}

std::string RowName(const char* system, const ConvLayer& layer, int threads) {
  return std::string(system) + "/" + layer.name + "/threads:" + std::to_string(threads);
}

void RegisterAll(bench::RatioReporter& reporter) {
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark(("fma_peak/threads:" + std::to_string(threads)).c_str(),
                                 PeakBenchmark, threads)
        ->Iterations(1);
  }
  for (const char* system : {"qlab", "onednn"}) {
    for (const ConvLayer& layer : kResNetConvShapes) {
      for (int threads : {1, 2}) {
        if (std::string(system) == "qlab") {
          benchmark::RegisterBenchmark(RowName(system, layer, threads).c_str(), QlabConv, layer,
                                       threads, false)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        } else {
          benchmark::RegisterBenchmark(RowName(system, layer, threads).c_str(), OnednnConv, layer,
                                       threads)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
  for (const char* system : {"qlab", "qlab_double"}) {
    for (const ConvLayer& layer : kCifarResNetConvs) {
      for (int threads : {1, 2}) {
        benchmark::RegisterBenchmark(RowName(system, layer, threads).c_str(), QlabConv, layer,
                                     threads, std::string(system) == "qlab_double")
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (const char* model : {"resnet18", "resnet50"}) {
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(
          ("model/" + std::string(model) + "_224/threads:" + std::to_string(threads)).c_str(),
          ModelLatency, model, threads)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (const ConvLayer& layer : kResNetConvShapes) {
    for (int threads : {1, 2}) {
      // The target: qlab's fp32 convs at >= 0.7x oneDNN's speed.
      reporter.AddComparison(RowName("onednn", layer, threads) + "/real_time",
                             RowName("qlab", layer, threads) + "/real_time", 0.7,
                             std::string("fp32 conv ") + layer.name + ", " +
                                 std::to_string(threads) + " thread(s), qlab vs oneDNN");
    }
  }
  for (const ConvLayer& layer : kCifarResNetConvs) {
    for (int threads : {1, 2}) {
      // The fake-quant reference's cost: double accumulation within 4x of the float kernel, so
      // that a PTQ record's fake-quant evaluation stays a fraction of its run.
      reporter.AddComparison(RowName("qlab", layer, threads) + "/real_time",
                             RowName("qlab_double", layer, threads) + "/real_time", 0.25,
                             std::string("fp32 conv ") + layer.name + ", " +
                                 std::to_string(threads) +
                                 " thread(s), double vs float accumulation");
    }
  }
}

}  // namespace
}  // namespace qlab::kernels

int main(int argc, char** argv) {
  using namespace qlab::kernels;
  g_peak_gflops[1] = MeasurePeakGflops(1);
  g_peak_gflops[2] = MeasurePeakGflops(2);
  qlab::bench::RatioReporter reporter;
  RegisterAll(reporter);
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
