// Calibration speed, side by side in one run (issue 4):
//   1. qlab's `histogram` observer against PyTorch 1.13's HistogramObserver on the same 1 M and
//      16 M element tensors: a fresh observer fed batch 1 (N(0, 1)) then batch 2 (N(0, 1.5), a
//      wider range, so PyTorch's re-binning runs) and asked for qparams (quint8 affine, PyTorch's
//      default). PyTorch runs in a child process (bench/torch_histogram_timing.py, one thread,
//      median of its repetitions) before the benchmarks; its time is reported as a manual-time
//      benchmark, and the label says whether both computed the same scale and zero point.
//      qlab splits each batch's two passes (range, bins) over both cores (its label says how
//      many threads); PyTorch is held to one thread. Target: >= 20x.
//      Steady state: the same two batches the other way round (wide batch first), so the second
//      lies inside the observed range: qlab bins it in one pass (Histogram::AddIfInsideRange),
//      PyTorch runs its usual histc + combine.
//   2. Per-channel histograms (`per_channel_histogram`, no PyTorch counterpart timed here):
//      ResNet-like weights [256, 2304] on axis 0, activations [32, 64, 32, 32] NCHW on axis 1
//      (runs of 1024 values binned in place) and the same values NHWC [32, 32, 32, 64] on axis 3
//      (transposed by blocks first), 2 batches + qparams, against the per-tensor observer on the
//      same number of elements.
//   3. min-max observing (the `minmax` observer's Observe) against a plain memcpy of the same
//      tensor, the machine's copy bandwidth measured in the same run. memcpy moves twice the
//      bytes (read + write), so observing reaches >= 50% of the copy bandwidth exactly when its
//      time is <= memcpy's: target speedup >= 1.0.
//
//   bazel run //bench:calibration_benchmark                                # full run
//   bazel run //bench:calibration_benchmark -- --benchmark_min_time=0.01  # smoke run
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/command_output.h"
#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "calibration/histogram.h"
#include "calibration/registry.h"
#include "core/tensor.h"
#include "kernels/histogram/histogram.h"
#include "kernels/histogram/histogram_ref.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration {
namespace {

constexpr uint32_t kSeed = 42;
constexpr int64_t kSizes[] = {int64_t{1} << 20, int64_t{1} << 24};
const QuantTarget kQUInt8{DType::kUInt8, 0, 255, QScheme::kPerTensorAffine};

Tensor Normal(int64_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  Tensor t = Tensor::Create(DType::kFloat32, {n}).value();
  float* x = t.data<float>();
  for (int64_t i = 0; i < n; ++i) x[i] = normal(rng);
  return t;
}

struct Batches {
  Tensor first;
  Tensor second;
};
const Batches& BatchesOf(int64_t n) {
  static auto* cache = new std::map<int64_t, Batches>();
  auto it = cache->find(n);
  if (it == cache->end()) {
    it = cache->emplace(n, Batches{Normal(n, 1.0f, kSeed), Normal(n, 1.5f, kSeed + 1)}).first;
  }
  return it->second;
}

QuantParams QlabHistogramQParams(const Batches& b, bool steady = false) {
  auto observer = CreateObserver("histogram").value();
  QLAB_CHECK(observer->Observe(steady ? b.second : b.first).ok());
  QLAB_CHECK(observer->Observe(steady ? b.first : b.second).ok());
  return observer->ComputeQParams(kQUInt8).value();
}

// The Highway target and how many threads qlab's batch passes may use here (calibration/
// histogram.h: batches of kParallelMinElements and more are split over up to kMaxWorkers
// threads; PyTorch runs on one).
std::string QlabHistogramLabel() {
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  const int workers = std::clamp(hardware, 1, kMaxWorkers);
  return std::string(kernels::HistogramKernelTargetName()) + ", " + std::to_string(workers) +
         (workers == 1 ? " thread" : " threads");
}

void BM_QlabHistogram(benchmark::State& state) {
  const Batches& b = BatchesOf(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(QlabHistogramQParams(b));
  state.SetItemsProcessed(state.iterations() * 2 * state.range(0));
  state.SetLabel(QlabHistogramLabel());
}
BENCHMARK(BM_QlabHistogram)->Arg(kSizes[0])->Arg(kSizes[1])->Unit(benchmark::kMillisecond);

void BM_QlabHistogramSteady(benchmark::State& state) {
  const Batches& b = BatchesOf(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(QlabHistogramQParams(b, /*steady=*/true));
  state.SetItemsProcessed(state.iterations() * 2 * state.range(0));
  state.SetLabel(QlabHistogramLabel());
}
BENCHMARK(BM_QlabHistogramSteady)->Arg(kSizes[0])->Arg(kSizes[1])->Unit(benchmark::kMillisecond);

// --- per-channel histograms -------------------------------------------------------------------
// A tensor of `shape` whose channel c along `axis` holds N(0, 0.5 + c / 64) values, the same
// values whichever layout (the NHWC tensor is the NCHW one permuted).
Tensor ChannelScaled(const Shape& shape, int axis, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t = Tensor::Create(DType::kFloat32, shape).value();
  size_t inner = 1;
  for (size_t a = static_cast<size_t>(axis) + 1; a < shape.size(); ++a) {
    inner *= static_cast<size_t>(shape[a]);
  }
  const size_t channels = static_cast<size_t>(shape[static_cast<size_t>(axis)]);
  float* x = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const size_t c = (static_cast<size_t>(i) / inner) % channels;
    x[i] = (0.5f + static_cast<float>(c) / 64.0f) * normal(rng);
  }
  return t;
}

struct PerChannelCase {
  const char* name;
  Shape shape;
  int axis;
};
const PerChannelCase kPerChannelCases[] = {
    {"weights [256, 2304] axis 0", {256, 2304}, 0},
    {"NCHW [32, 64, 32, 32] axis 1", {32, 64, 32, 32}, 1},
    {"NHWC [32, 32, 32, 64] axis 3", {32, 32, 32, 64}, 3},
};

void BM_PerChannelHistogram(benchmark::State& state) {
  const PerChannelCase& c = kPerChannelCases[state.range(0)];
  const Tensor first = ChannelScaled(c.shape, c.axis, kSeed);
  const Tensor second = ChannelScaled(c.shape, c.axis, kSeed + 1);
  ObserverOptions options;
  options.channel_axis = c.axis;
  const QuantTarget target{DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric};
  for (auto _ : state) {
    auto observer = CreateObserver("per_channel_histogram", options).value();
    QLAB_CHECK(observer->Observe(first).ok());
    QLAB_CHECK(observer->Observe(second).ok());
    benchmark::DoNotOptimize(observer->ComputeQParams(target).value());
  }
  state.SetItemsProcessed(state.iterations() * 2 * first.numel());
  state.SetLabel(c.name);
}
BENCHMARK(BM_PerChannelHistogram)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);

// The per-tensor observer on as many elements (the binning work without the per-channel split;
// the L2 search runs once instead of once per channel).
void BM_PerTensorHistogramSameSize(benchmark::State& state) {
  const PerChannelCase& c = kPerChannelCases[state.range(0)];
  const Tensor first = ChannelScaled(c.shape, c.axis, kSeed);
  const Tensor second = ChannelScaled(c.shape, c.axis, kSeed + 1);
  for (auto _ : state) {
    auto observer = CreateObserver("histogram").value();
    QLAB_CHECK(observer->Observe(first).ok());
    QLAB_CHECK(observer->Observe(second).ok());
    benchmark::DoNotOptimize(observer->ComputeQParams(kQUInt8).value());
  }
  state.SetItemsProcessed(state.iterations() * 2 * first.numel());
  state.SetLabel(c.name);
}
BENCHMARK(BM_PerTensorHistogramSameSize)->DenseRange(0, 2)->Unit(benchmark::kMillisecond);

// The accumulation kernel alone, beside its scalar reference.
void BM_HistogramKernel(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  std::vector<int64_t> counts(2048, 0);
  const kernels::HistogramBinning binning{-5.0f, 5.0f, 2048};
  for (auto _ : state) {
    kernels::HistogramAccumulate(x.data<float>(), static_cast<size_t>(x.numel()), binning,
                                 counts.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel(kernels::HistogramKernelTargetName());
}
void BM_HistogramKernel_Ref(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  std::vector<int64_t> counts(2048, 0);
  const kernels::HistogramBinning binning{-5.0f, 5.0f, 2048};
  for (auto _ : state) {
    kernels::HistogramAccumulateRef(x.data<float>(), static_cast<size_t>(x.numel()), binning,
                                    counts.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel("scalar ref");
}
BENCHMARK(BM_HistogramKernel)->Arg(kSizes[0])->Arg(kSizes[1]);
BENCHMARK(BM_HistogramKernel_Ref)->Arg(kSizes[0]);

// The observer's two passes over a batch that widens the range, alone: the range pass
// (ParallelMinMax) and the binning pass into a fresh PyTorch-rule histogram (Histogram::Add), both
// split over the same threads as in the observer.
void BM_ObserverRangePass(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ParallelMinMax(x.data<float>(), static_cast<size_t>(x.numel())));
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.nbytes()));
  state.SetLabel(QlabHistogramLabel());
}
BENCHMARK(BM_ObserverRangePass)->Arg(kSizes[0])->Arg(kSizes[1])->Unit(benchmark::kMicrosecond);

void BM_ObserverBinningPass(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  const size_t n = static_cast<size_t>(x.numel());
  const BatchMinMax range = ParallelMinMax(x.data<float>(), n);
  for (auto _ : state) {
    Histogram h(2048, HistogramBinning::kTorch113);
    h.Add(x.data<float>(), n, range.min, range.max);
    benchmark::DoNotOptimize(h.total());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetLabel(QlabHistogramLabel());
}
BENCHMARK(BM_ObserverBinningPass)->Arg(kSizes[0])->Arg(kSizes[1])->Unit(benchmark::kMicrosecond);

// The L2 search alone (independent of the element count), on a 2-batch 1M histogram.
void BM_TorchL2Search(benchmark::State& state) {
  const Batches& b = BatchesOf(kSizes[0]);
  auto observer = CreateObserver("histogram").value();
  QLAB_CHECK(observer->Observe(b.first).ok());
  QLAB_CHECK(observer->Observe(b.second).ok());
  for (auto _ : state) benchmark::DoNotOptimize(observer->ComputeQParams(kQUInt8));
}
BENCHMARK(BM_TorchL2Search)->Unit(benchmark::kMicrosecond);

// PyTorch's result for one size, measured once before the benchmarks run.
struct TorchRun {
  double seconds = -1.0;
  bool same_qparams = false;
  std::string error;
};

TorchRun MeasurePyTorch(int64_t n, bool steady) {
  TorchRun run;
  const Batches& b = BatchesOf(n);
  const std::string dir = "/tmp";
  const std::string p1 = dir + "/qlab_calib_bench_1.f32", p2 = dir + "/qlab_calib_bench_2.f32";
  // Steady state: the wide batch first.
  for (const auto& [path, t] : {std::make_pair(p1, steady ? &b.second : &b.first),
                                std::make_pair(p2, steady ? &b.first : &b.second)}) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(t->raw_data(), 1, t->nbytes(), f) != t->nbytes()) {
      run.error = "cannot write " + path;
      if (f != nullptr) std::fclose(f);
      return run;
    }
    std::fclose(f);
  }
  const int repetitions = n > (int64_t{1} << 22) ? 3 : 5;
  const std::string command = "/usr/bin/python3 bench/torch_histogram_timing.py " + p1 + " " + p2 +
                              " " + std::to_string(repetitions);
  const std::string out = qlab::bench::CommandOutput(command);
  std::remove(p1.c_str());
  std::remove(p2.c_str());
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("seconds")) {
    run.error = command + " failed (is python3-torch installed?)";
    return run;
  }
  run.seconds = j["seconds"].get<double>();
  const QuantParams ours = QlabHistogramQParams(b, steady);
  uint32_t bits;
  std::memcpy(&bits, &ours.scales[0], sizeof(bits));
  run.same_qparams = bits == j["scale_bits"].get<uint32_t>() &&
                     ours.zero_points[0] == j["zero_point"].get<int32_t>();
  return run;
}

void RegisterPyTorchBenchmarks() {
  for (const bool steady : {false, true}) {
    for (int64_t n : kSizes) {
      const TorchRun run = MeasurePyTorch(n, steady);
      benchmark::RegisterBenchmark(
          ((steady ? "BM_PyTorchHistogramSteady/" : "BM_PyTorchHistogram/") + std::to_string(n))
              .c_str(),
          [run, n](benchmark::State& state) {
            if (run.seconds < 0) {
              state.SkipWithError(run.error.c_str());
              return;
            }
            for (auto _ : state) state.SetIterationTime(run.seconds);
            state.SetItemsProcessed(state.iterations() * 2 * n);
            state.SetLabel(run.same_qparams ? "same qparams as qlab" : "QPARAMS DIFFER from qlab");
          })
          ->UseManualTime()
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
    }
  }
}

// --- min-max observing vs copy bandwidth ------------------------------------------------------
void BM_Memcpy(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  Tensor y = Tensor::Create(DType::kFloat32, x.shape()).value();
  for (auto _ : state) {
    std::memcpy(y.raw_data(), x.raw_data(), x.nbytes());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 2 * static_cast<int64_t>(x.nbytes()));
}
BENCHMARK(BM_Memcpy)->Arg(kSizes[1])->Unit(benchmark::kMillisecond);

void BM_MinMaxObserve(benchmark::State& state) {
  const Tensor& x = BatchesOf(state.range(0)).first;
  auto observer = CreateObserver("minmax").value();
  for (auto _ : state) benchmark::DoNotOptimize(observer->Observe(x));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(x.nbytes()));
}
BENCHMARK(BM_MinMaxObserve)->Arg(kSizes[1])->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace qlab::calibration

int main(int argc, char** argv) {
  qlab::calibration::RegisterPyTorchBenchmarks();
  qlab::bench::RatioReporter reporter;
  for (int64_t n : qlab::calibration::kSizes) {
    const std::string size = std::to_string(n);
    reporter.AddComparison("BM_PyTorchHistogram/" + size + "/iterations:1/manual_time",
                           "BM_QlabHistogram/" + size, 20.0,
                           "histogram observer, 2 batches + qparams, " + size + " elements");
  }
  for (int64_t n : qlab::calibration::kSizes) {
    const std::string size = std::to_string(n);
    reporter.AddComparison(
        "BM_PyTorchHistogramSteady/" + size + "/iterations:1/manual_time",
        "BM_QlabHistogramSteady/" + size, 20.0,
        "histogram observer, steady state (2nd batch inside), " + size + " elements");
  }
  const std::string big = std::to_string(qlab::calibration::kSizes[1]);
  reporter.AddComparison("BM_Memcpy/" + big, "BM_MinMaxObserve/" + big, 1.0,
                         "min-max observe vs memcpy (>= 1.0 means >= 50% of copy bandwidth)");
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
