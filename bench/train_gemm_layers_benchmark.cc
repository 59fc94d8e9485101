// Training convolutions: train/gemm_layers' ConvForward and ConvBackward (dx + dw) beside PyTorch
// 1.13's conv2d forward and autograd backward, on every distinct conv shape of torchvision
// ResNet18 (224x224, batch 4) and of the CIFAR ResNet20 (32x32, batch 128), 2 threads, in one
// run.
//
// qlab's side: NHWC activations, OIHW weights (packed inside each call, as a training step must:
// the weights change every step), no bias, one GemmLayerScratch per layer warmed up by a first
// call. PyTorch's side: bench/torch_conv_grad.py, run once in a child process before the qlab
// benchmarks (so that its OpenMP workers never share the cores with qlab's pthreadpool), times
// each layer in both memory formats (NCHW and channels_last); the faster format's median is
// reported here through manual time, the label saying which. The ratio table then compares
// medians measured in the same run.
//
//   bazel run //bench:train_gemm_layers_benchmark -- --benchmark_repetitions=3
//   bazel run //bench:train_gemm_layers_benchmark -- --benchmark_min_time=0.01      # smoke run
//
// Target (issue 8's training kernels): backward no slower than PyTorch's (oneDNN) on the
// ResNet18 shapes. Forward and the ResNet20 shapes are reported for information.
#include <pthreadpool.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/command_output.h"
#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "kernels/threadpool/pthreadpool_ptr.h"
#include "nlohmann/json.hpp"
#include "train/gemm_layers/gemm_layers.h"

namespace qlab::bench {
namespace {

constexpr int kThreads = 2;
constexpr int kTorchRuns = 20;
constexpr uint32_t kSeed = 42;

// One conv layer (square input and kernel, padding kernel / 2, no bias) at its training batch.
struct ConvLayer {
  const char* name;
  size_t batch, in_c, out_c, size, kernel, stride;
  bool resnet18;  // a target row (ResNet18) or information (ResNet20)
  size_t Pad() const { return kernel / 2; }
  size_t OutSize() const { return (size + 2 * Pad() - kernel) / stride + 1; }
  double ForwardFlops() const {
    const double out = static_cast<double>(OutSize());
    return 2.0 * static_cast<double>(batch) * out * out *
           static_cast<double>(out_c * in_c * kernel * kernel);
  }
};

// Every distinct conv shape of ResNet18 (224x224, batch 4) and ResNet20 (32x32, batch 128).
const ConvLayer kLayers[] = {
    {"r18.conv1_7x7s2_3-64_224", 4, 3, 64, 224, 7, 2, true},          // stem
    {"r18.layer1_3x3_64-64_56", 4, 64, 64, 56, 3, 1, true},           // layer1 (x4)
    {"r18.layer2.0_3x3s2_64-128_56", 4, 64, 128, 56, 3, 2, true},     // layer2 entry
    {"r18.layer2_3x3_128-128_28", 4, 128, 128, 28, 3, 1, true},       // layer2 (x3)
    {"r18.layer2.0.ds_1x1s2_64-128_56", 4, 64, 128, 56, 1, 2, true},  // layer2 downsample
    {"r18.layer3.0_3x3s2_128-256_28", 4, 128, 256, 28, 3, 2, true},   // layer3 entry
    {"r18.layer3_3x3_256-256_14", 4, 256, 256, 14, 3, 1, true},       // layer3 (x3)
    {"r18.layer3.0.ds_1x1s2_128-256_28", 4, 128, 256, 28, 1, 2, true},
    {"r18.layer4.0_3x3s2_256-512_14", 4, 256, 512, 14, 3, 2, true},  // layer4 entry
    {"r18.layer4_3x3_512-512_7", 4, 512, 512, 7, 3, 1, true},        // layer4 (x3)
    {"r18.layer4.0.ds_1x1s2_256-512_14", 4, 256, 512, 14, 1, 2, true},
    {"r20.conv1_3x3_3-16_32", 128, 3, 16, 32, 3, 1, false},         // stem
    {"r20.layer1_3x3_16-16_32", 128, 16, 16, 32, 3, 1, false},      // layer1 (x6)
    {"r20.layer2.0_3x3s2_16-32_32", 128, 16, 32, 32, 3, 2, false},  // layer2 entry
    {"r20.layer2_3x3_32-32_16", 128, 32, 32, 16, 3, 1, false},      // layer2 (x5)
    {"r20.layer3.0_3x3s2_32-64_16", 128, 32, 64, 16, 3, 2, false},  // layer3 entry
    {"r20.layer3_3x3_64-64_8", 128, 64, 64, 8, 3, 1, false},        // layer3 (x5)
};


train::ConvLayerShape ShapeOf(const ConvLayer& l) {
  train::ConvLayerShape s;
  kernels::Fp32ConvGeometry& g = s.geometry;
  g.batch = l.batch;
  g.in_h = g.in_w = l.size;
  g.in_channels = l.in_c;
  g.kernel_h = g.kernel_w = l.kernel;
  g.stride_h = g.stride_w = l.stride;
  g.pad_h = g.pad_w = l.Pad();
  g.out_h = g.out_w = l.OutSize();
  s.out_channels = l.out_c;
  return s;
}

std::vector<float> RandomFloats(size_t size, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

void Rates(benchmark::State& state, double flops) {
  state.counters["GFLOPS"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}

// What a qlab row times: the forward, the whole backward (dx + dw), or one half of it.
enum class Pass { kForward, kBackward, kBackwardData, kBackwardFilter };

void QlabConv(benchmark::State& state, const ConvLayer& l, Pass pass) {
  const train::ConvLayerShape s = ShapeOf(l);
  std::mt19937 rng(kSeed);
  const size_t out_size = l.OutSize();
  const std::vector<float> x = RandomFloats(l.batch * l.size * l.size * l.in_c, rng);
  const std::vector<float> w = RandomFloats(l.out_c * l.in_c * l.kernel * l.kernel, rng);
  const std::vector<float> dy = RandomFloats(l.batch * out_size * out_size * l.out_c, rng);
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
  kernels::PthreadpoolPtr pool(pthreadpool_create(kThreads));
  train::GemmLayerScratch scratch;
  const bool want_dx = pass == Pass::kBackward || pass == Pass::kBackwardData;
  const bool want_dw = pass == Pass::kBackward || pass == Pass::kBackwardFilter;
  const auto run = [&] {
    if (pass == Pass::kForward) {
      train::ConvForward(s, x.data(), w.data(), nullptr, y.data(), scratch, pool.get());
    } else {
      train::ConvBackward(s, x.data(), w.data(), dy.data(), want_dx ? dx.data() : nullptr,
                          want_dw ? dw.data() : nullptr, nullptr, scratch, pool.get());
    }
  };
  run();  // grows the scratch
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  Rates(state, (want_dx && want_dw ? 2.0 : 1.0) * l.ForwardFlops());
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1.0 : v[v.size() / 2];
}

// PyTorch's medians in seconds per layer and direction (the faster memory format), or empty
// with `error` set.
struct TorchTime {
  double seconds = -1.0;
  std::string format;
};
struct TorchTimes {
  std::vector<TorchTime> forward, backward;  // by layer index
  std::string error;
};

TorchTimes MeasurePyTorch() {
  TorchTimes t;
  std::string command = "/usr/bin/python3 bench/torch_conv_grad.py " + std::to_string(kThreads) +
                        " " + std::to_string(kTorchRuns);
  for (const ConvLayer& l : kLayers) {
    command += " " + std::string(l.name) + ":" + std::to_string(l.batch) + ":" +
               std::to_string(l.in_c) + ":" + std::to_string(l.size) + ":" +
               std::to_string(l.out_c) + ":" + std::to_string(l.kernel) + ":" +
               std::to_string(l.stride) + ":" + std::to_string(l.Pad());
  }
  const std::string out = CommandOutput(command);
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    t.error = "bench/torch_conv_grad.py failed (is python3-torch installed?)";
    return t;
  }
  for (const ConvLayer& l : kLayers) {
    TorchTime best[2];
    for (const char* format : {"nchw", "nhwc"}) {
      const auto& r = j[l.name][format];
      const double times[2] = {Median(r["forward_ms"].get<std::vector<double>>()) / 1e3,
                               Median(r["backward_ms"].get<std::vector<double>>()) / 1e3};
      for (int d = 0; d < 2; ++d) {
        if (best[d].seconds < 0 || times[d] < best[d].seconds) best[d] = {times[d], format};
      }
    }
    t.forward.push_back(best[0]);
    t.backward.push_back(best[1]);
  }
  return t;
}

void RegisterAll(RatioReporter& reporter) {
  const TorchTimes torch = MeasurePyTorch();
  for (size_t i = 0; i < std::size(kLayers); ++i) {
    const ConvLayer& l = kLayers[i];
    for (const bool backward : {false, true}) {
      const std::string direction = backward ? "backward" : "forward";
      benchmark::RegisterBenchmark(("qlab_" + direction + "/" + l.name).c_str(), QlabConv, l,
                                   backward ? Pass::kBackward : Pass::kForward)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
      if (backward) {  // the two halves, for information (no PyTorch counterpart)
        benchmark::RegisterBenchmark(("qlab_backward_dx/" + std::string(l.name)).c_str(), QlabConv,
                                     l, Pass::kBackwardData)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        benchmark::RegisterBenchmark(("qlab_backward_dw/" + std::string(l.name)).c_str(), QlabConv,
                                     l, Pass::kBackwardFilter)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
      const TorchTime t =
          torch.error.empty() ? (backward ? torch.backward[i] : torch.forward[i]) : TorchTime{};
      const std::string error = torch.error;
      const double flops = (backward ? 2.0 : 1.0) * l.ForwardFlops();
      benchmark::RegisterBenchmark(
          ("pytorch_" + direction + "/" + l.name).c_str(),
          [t, error, flops](benchmark::State& s) {
            if (t.seconds < 0) return s.SkipWithError(error.c_str());
            for (auto _ : s) s.SetIterationTime(t.seconds);
            s.counters["GFLOPS"] = flops / t.seconds * 1e-9;
            s.SetLabel("median of " + std::to_string(kTorchRuns) + " runs, " + t.format);
          })
          ->UseManualTime()
          ->Iterations(1)
          ->Unit(benchmark::kMicrosecond);
      const bool target = backward && l.resnet18;
      reporter.AddComparison("pytorch_" + direction + "/" + l.name + "/iterations:1/manual_time",
                             "qlab_" + direction + "/" + l.name + "/real_time", 1.0,
                             std::string(target ? "TARGET " : "info: ") + direction + " " + l.name +
                                 ": PyTorch / qlab");
    }
  }
}

}  // namespace
}  // namespace qlab::bench

int main(int argc, char** argv) {
  qlab::bench::RatioReporter reporter;
  qlab::bench::RegisterAll(reporter);
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
