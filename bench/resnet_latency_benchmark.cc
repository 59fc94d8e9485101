// Whole-model latency: qlab's FP32 engine and lowered int8 engine against PyTorch 1.13 on
// torchvision ResNet18 and ResNet50 at 224x224, batch 1, 2 threads (or --threads), in one run.
//
// qlab's side: the model built with deterministic random weights, batch norm folded, quantized
// with the x86 backend (uint8 activations, per-channel int8 weights: oneDNN's convention) and
// calibrated on a few random images (latency does not depend on the calibration), run by
// engine/fp32_engine and engine/int8_engine. PyTorch's side: bench/torch_resnet_latency.py run
// once per model in a child process (FP32 traced + frozen + optimize_for_inference; int8 FX PTQ
// with the onednn engine, traced + frozen), its median reported here through manual time. The
// ratio table then compares medians measured minutes apart at most, on the same machine.
//
//   bazel run //bench:resnet_latency_benchmark -- --benchmark_repetitions=5
//   bazel run //bench:resnet_latency_benchmark -- --threads=1   # both sides on one thread
//
// --threads=N (this binary's own flag, default 2) sets the thread count of both sides. One
// thread is the comparison that survives a machine whose cores are shared with other work: at
// 2 threads every per-layer barrier waits whenever the second core is taken by another process.
//
// Targets (issue 6 and 7): qlab FP32 <= 1.0x PyTorch's FP32 latency; qlab int8 faster than
// PyTorch's onednn int8.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/command_output.h"
#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "core/check.h"
#include "engine/fp32_engine.h"
#include "engine/int8_engine.h"
#include "models/resnet.h"
#include "nlohmann/json.hpp"
#include "quant/backend_quantizers.h"
#include "quant/convert.h"
#include "quant/graph/fold_batch_norm.h"
#include "quant/prepare.h"

namespace qlab::bench {
namespace {

int g_threads = 2;  // both sides' thread count (--threads)

Tensor RandomImage(uint32_t seed) {
  Tensor t = Tensor::Create(DType::kFloat32, {1, 3, 224, 224}).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

struct QlabModel {
  std::unique_ptr<Fp32Engine> fp32;
  std::unique_ptr<Int8Engine> int8;
};

QlabModel BuildQlab(const std::string& name) {
  Graph model = BuildResNet(ModelByName(name).value()).value();
  QLAB_CHECK(FoldBatchNorm(model).ok());
  QlabModel m;
  m.fp32 = std::make_unique<Fp32Engine>(Fp32Engine::Create(model, g_threads).value());
  auto quantizer = BackendQuantizer::Create(Backend::kX86, "minmax").value();
  PreparedModel prepared = PrepareWith(model, *quantizer).value();
  for (uint32_t seed = 0; seed < 2; ++seed)
    QLAB_CHECK(prepared.Calibrate({RandomImage(seed)}).ok());
  m.int8 =
      std::make_unique<Int8Engine>(
          Int8Engine::Create(Convert(prepared).value(), g_threads).value());
  return m;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1.0 : v[v.size() / 2];
}

// PyTorch's medians (seconds), or negative with `error` set.
struct TorchTimes {
  double fp32 = -1.0, int8 = -1.0;
  std::string error;
};

TorchTimes MeasurePyTorch(const std::string& name) {
  TorchTimes t;
  const std::string command = "/usr/bin/python3 bench/torch_resnet_latency.py " + name + " " +
                              std::to_string(g_threads) + " 30";
  const std::string out = CommandOutput(command);
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("fp32_ms")) {
    t.error = command + " failed (is python3-torch installed?)";
    return t;
  }
  t.fp32 = Median(j["fp32_ms"].get<std::vector<double>>()) / 1e3;
  t.int8 = Median(j["int8_ms"].get<std::vector<double>>()) / 1e3;
  return t;
}

void Register(const std::string& name, RatioReporter& reporter) {
  auto qlab = std::make_shared<QlabModel>(BuildQlab(name));
  auto image = std::make_shared<Tensor>(RandomImage(7));
  benchmark::RegisterBenchmark(("qlab_fp32/" + name).c_str(),
                               [qlab, image](benchmark::State& s) {
                                 for (auto _ : s) benchmark::DoNotOptimize(qlab->fp32->Run(*image));
                               })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark(("qlab_int8/" + name).c_str(),
                               [qlab, image](benchmark::State& s) {
                                 for (auto _ : s) benchmark::DoNotOptimize(qlab->int8->Run(*image));
                               })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  const TorchTimes torch = MeasurePyTorch(name);
  for (const auto& [kind, seconds] : {std::pair<std::string, double>{"fp32", torch.fp32},
                                      std::pair<std::string, double>{"int8", torch.int8}}) {
    const std::string error = torch.error;
    const double t = seconds;
    benchmark::RegisterBenchmark(("pytorch_" + kind + "/" + name).c_str(),
                                 [t, error](benchmark::State& s) {
                                   if (t < 0) {
                                     s.SkipWithError(error.c_str());
                                     return;
                                   }
                                   for (auto _ : s) s.SetIterationTime(t);
                                   s.SetLabel("median of 30 runs in a child process");
                                 })
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  reporter.AddComparison("pytorch_fp32/" + name + "/iterations:1/manual_time",
                         "qlab_fp32/" + name + "/real_time", 1.0,
                         "TARGET fp32 " + name + ": PyTorch / qlab");
  reporter.AddComparison("pytorch_int8/" + name + "/iterations:1/manual_time",
                         "qlab_int8/" + name + "/real_time", 1.0,
                         "TARGET int8 " + name + ": PyTorch onednn / qlab");
  reporter.AddComparison("qlab_fp32/" + name + "/real_time", "qlab_int8/" + name + "/real_time",
                         1.0, "info: qlab int8 speedup over qlab fp32, " + name);
}

}  // namespace
}  // namespace qlab::bench

int main(int argc, char** argv) {
  const std::string kThreadsFlag = "--threads=";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(kThreadsFlag, 0) == 0) {
      qlab::bench::g_threads = std::max(1, std::atoi(arg.c_str() + kThreadsFlag.size()));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  qlab::bench::RatioReporter reporter;
  for (const char* name : {"resnet18", "resnet50"}) qlab::bench::Register(name, reporter);
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
