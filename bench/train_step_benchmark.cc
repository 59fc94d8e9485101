// Whole training steps: qlab's TrainingEngine (FP32 and QAT) against PyTorch 1.13 (eager FP32 and
// FX QAT) on the same models and batch sizes, 2 threads, in one run (issue 8's benchmark).
//
// A training step is forward in training mode + softmax cross-entropy + backward + one SGD update
// (lr 0.01, momentum 0.9, weight decay 1e-4 on every parameter, as torch.optim.SGD over
// model.parameters()), each step on the next of kBatches random batches (random labels). Not one
// repeated batch: that is memorized within a few steps, the softmax then gives gradients so small
// that they are denormal floats, and a step takes several times longer (PyTorch, ResNet18 batch
// 4: ~2000 ms instead of ~240 ms here): a measure of the CPU's denormal handling, not of training.
// Models: torchvision ResNet18 (224x224, batch 4) and the He et al. CIFAR ResNet20 (32x32, batch
// 128), deterministic random weights.
//
// qlab's side: models/resnet.h's graph, trained by train::TrainingEngine and train::Sgd. QAT
// annotates it with the x86 backend quantizer (moving-average observers), prepares it for QAT and
// calibrates once so that every fake-quantize node has a range, then trains with the observers
// following the data (PyTorch's default QAT). Each side takes 3 untimed warm-up steps, then 10
// timed ones. The *_fastest_step rows give each side's fastest timed step, a second view of the
// comparison that other jobs on the shared cores disturb less. The step rows also report, as
// counters, how the step splits between ForwardBackward and the SGD update; the *_predict rows time
// an evaluation-mode forward (running statistics, nothing saved for backward) as an estimate of the
// forward's share.
//
// PyTorch's side: bench/torch_train_step.py, run once per model in a child process when the first
// of that model's PyTorch rows runs (qlab's threads are idle meanwhile, so the two never share the
// cores), reports every timed step; their median is reported here through manual time, the
// fastest in the *_fastest_step rows. PyTorch runs twice, under OpenMP's default and passive wait
// policies, and each row takes the faster (see kWaitPolicies).
//
//   bazel run //bench:train_step_benchmark
//   bazel run //bench:train_step_benchmark -- --benchmark_repetitions=3   # medians of 3
//
// Target (issue 8): qlab's QAT step on ResNet18 at batch 4 takes at most half of PyTorch FX QAT's.
// FP32 and ResNet20 are reported for information.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/command_output.h"
#include "bench/ratio_reporter.h"
#include "benchmark/benchmark.h"
#include "core/status_macros.h"
#include "core/tensor.h"
#include "models/resnet.h"
#include "nlohmann/json.hpp"
#include "quant/backend_quantizers.h"
#include "quant/prepare.h"
#include "train/optim/sgd.h"
#include "train/training_engine.h"

namespace qlab::bench {
namespace {

constexpr int kThreads = 2;
constexpr int kWarmupSteps = 3;
constexpr int kTimedSteps = 10;
constexpr uint32_t kSeed = 42;
constexpr int kBatches = 16;  // as torch_train_step.py's BATCHES

// One model at its training batch size. The name is also torch_train_step.py's argument.
struct ModelCase {
  const char* name;
  int64_t batch;
};

// "resnet18_b4": the second part of every row name.
std::string CaseName(const ModelCase& c) { return absl::StrCat(c.name, "_b", c.batch); }

// The same optimizer as torch_train_step.py's torch.optim.SGD.
train::SgdOptions StepSgdOptions() {
  train::SgdOptions options;
  options.lr = 0.01f;
  options.momentum = 0.9f;
  options.weight_decay = 1e-4f;
  return options;
}

Tensor RandomImages(int64_t n, int64_t size, uint32_t seed) {
  Tensor t = Tensor::Create(DType::kFloat32, {n, 3, size, size}).value();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

std::vector<int> RandomLabels(int64_t n, int64_t classes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> label(0, static_cast<int>(classes) - 1);
  std::vector<int> labels(n);
  for (int& l : labels) l = label(rng);
  return labels;
}

struct Batch {
  Tensor images;
  std::vector<int> labels;
};

// One qlab training setup, warmed up: model, engine, optimizer and the batches it trains on.
// Members are destroyed in reverse order, so the engine goes before the model it reads.
struct QlabTrainer {
  std::unique_ptr<Graph> model;             // FP32 training: the float graph
  std::unique_ptr<PreparedModel> prepared;  // QAT: the prepared graph and its slots
  std::unique_ptr<train::TrainingEngine> engine;
  std::optional<train::Sgd> sgd;
  std::vector<Batch> batches;
  size_t next_batch = 0;
  double fastest_step = 0.0;  // seconds, over every timed step so far; 0 before the first

  const Batch& NextBatch() { return batches[next_batch++ % batches.size()]; }

  // One training step: forward + loss + backward, then the SGD update.
  absl::Status Step() {
    const Batch& batch = NextBatch();
    QLAB_RETURN_IF_ERROR(engine->ForwardBackward(batch.images, batch.labels).status());
    sgd->Step(engine->pool());
    return absl::OkStatus();
  }
};

absl::StatusOr<std::unique_ptr<QlabTrainer>> BuildTrainer(const ModelCase& c, bool qat) {
  QLAB_ASSIGN_OR_RETURN(const ResNetSpec spec, ModelByName(c.name));
  ResNetOptions model_options;
  model_options.batch = c.batch;
  model_options.init = ParameterInit::kDeterministic;
  model_options.seed = kSeed;
  QLAB_ASSIGN_OR_RETURN(Graph model, BuildResNet(spec, model_options));

  auto trainer = std::make_unique<QlabTrainer>();
  for (int i = 0; i < kBatches; ++i) {
    const uint32_t seed = kSeed + 1 + 2 * static_cast<uint32_t>(i);
    trainer->batches.push_back({RandomImages(c.batch, spec.image_size, seed),
                                RandomLabels(c.batch, spec.num_classes, seed + 1)});
  }
  train::TrainingEngineOptions engine_options;
  engine_options.threads = kThreads;
  if (qat) {
    QLAB_ASSIGN_OR_RETURN(std::unique_ptr<BackendQuantizer> quantizer,
                          BackendQuantizer::Create(Backend::kX86, "moving_average"));
    quantizer->set_qat(true);
    QLAB_ASSIGN_OR_RETURN(PreparedModel prepared,
                          PrepareWith(std::move(model), *quantizer, /*qat=*/true));
    trainer->prepared = std::make_unique<PreparedModel>(std::move(prepared));
    QLAB_ASSIGN_OR_RETURN(trainer->engine,
                          train::TrainingEngine::CreateQat(trainer->prepared.get(), engine_options,
                                                           train::QatOptions{}));
    QLAB_RETURN_IF_ERROR(trainer->engine->Calibrate(trainer->batches[0].images));
  } else {
    trainer->model = std::make_unique<Graph>(std::move(model));
    QLAB_ASSIGN_OR_RETURN(trainer->engine,
                          train::TrainingEngine::Create(*trainer->model, engine_options));
  }
  QLAB_ASSIGN_OR_RETURN(train::Sgd sgd, train::Sgd::Create(StepSgdOptions()));
  for (train::TrainableParameter& p : trainer->engine->parameters()) {
    // Every parameter decays, as torch.optim.SGD(model.parameters(), weight_decay=...) does.
    QLAB_RETURN_IF_ERROR(
        sgd.AddParameter(p.name, p.value, p.grad, p.size, /*apply_weight_decay=*/true));
  }
  trainer->sgd.emplace(std::move(sgd));
  for (int step = 0; step < kWarmupSteps; ++step) QLAB_RETURN_IF_ERROR(trainer->Step());
  return trainer;
}

// A trainer built on first use (so a filtered-out row costs nothing) and shared by the rows of
// one model and mode; a build error is kept and reported by every row that needs it.
class LazyTrainer {
 public:
  LazyTrainer(ModelCase c, bool qat) : case_(c), qat_(qat) {}

  absl::StatusOr<QlabTrainer*> Get() {
    if (!built_) {
      built_ = true;
      absl::StatusOr<std::unique_ptr<QlabTrainer>> trainer = BuildTrainer(case_, qat_);
      if (trainer.ok()) {
        trainer_ = *std::move(trainer);
      } else {
        error_ = trainer.status();
      }
    }
    if (!error_.ok()) return error_;
    return trainer_.get();
  }
  // The trainer if it was built successfully, else null (never builds).
  QlabTrainer* IfBuilt() const { return trainer_.get(); }

 private:
  ModelCase case_;
  bool qat_;
  bool built_ = false;
  absl::Status error_;
  std::unique_ptr<QlabTrainer> trainer_;
};

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void QlabStep(benchmark::State& state, LazyTrainer& lazy) {
  absl::StatusOr<QlabTrainer*> trainer = lazy.Get();
  if (!trainer.ok()) {
    state.SkipWithError(trainer.status().ToString().c_str());
    return;
  }
  QlabTrainer& t = **trainer;
  double forward_backward = 0.0;
  double update = 0.0;
  double fastest = 0.0;
  for (auto _ : state) {
    const Batch& batch = t.NextBatch();
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<train::StepStats> stats = t.engine->ForwardBackward(batch.images, batch.labels);
    const auto middle = std::chrono::steady_clock::now();
    if (!stats.ok()) {
      state.SkipWithError(stats.status().ToString().c_str());
      return;
    }
    t.sgd->Step(t.engine->pool());
    const auto end = std::chrono::steady_clock::now();
    forward_backward += Seconds(middle - start);
    update += Seconds(end - middle);
    const double step = Seconds(end - start);
    fastest = fastest == 0.0 ? step : std::min(fastest, step);
  }
  t.fastest_step = t.fastest_step == 0.0 ? fastest : std::min(t.fastest_step, fastest);
  // Milliseconds per step spent in each part (the rest of the row's time is loop overhead).
  state.counters["fwd_bwd_ms"] =
      benchmark::Counter(1e3 * forward_backward, benchmark::Counter::kAvgIterations);
  state.counters["sgd_ms"] = benchmark::Counter(1e3 * update, benchmark::Counter::kAvgIterations);
}

void QlabPredict(benchmark::State& state, LazyTrainer& lazy) {
  absl::StatusOr<QlabTrainer*> trainer = lazy.Get();
  if (!trainer.ok()) {
    state.SkipWithError(trainer.status().ToString().c_str());
    return;
  }
  QlabTrainer& t = **trainer;
  for (auto _ : state) {
    absl::StatusOr<Tensor> logits = t.engine->Predict(t.NextBatch().images);
    if (!logits.ok()) {
      state.SkipWithError(logits.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(logits->data<float>());
  }
}

// The fastest timed step of the step row, as this row's time: on a machine shared with other
// jobs, the fastest step is the one least disturbed by them.
void QlabFastestStep(benchmark::State& state, const LazyTrainer& lazy) {
  const QlabTrainer* t = lazy.IfBuilt();
  if (t == nullptr || t->fastest_step == 0.0) {
    state.SkipWithError("needs its step row, which did not run (filtered out or failed)");
    return;
  }
  for (auto _ : state) state.SetIterationTime(t->fastest_step);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? -1.0 : v[v.size() / 2];
}

// OpenMP's wait policies PyTorch is run under. libgomp's default lets idle threads spin before
// sleeping; on cores shared with other jobs a spinning thread takes the time slice another one
// needs, and PyTorch's step gets several times slower (ResNet18 batch 4 beside two single-thread
// jobs: FX QAT 4478 ms by default, 712 ms passive). qlab's training pool yields instead
// (kernels/threadpool's SetYieldingPool), so PyTorch gets both policies and each row takes the
// faster: the comparison never gains from PyTorch's spinning.
struct WaitPolicy {
  const char* name;
  const char* command_prefix;
};
constexpr WaitPolicy kWaitPolicies[] = {
    {"default", "env -u OMP_WAIT_POLICY "},
    {"passive", "env OMP_WAIT_POLICY=PASSIVE "},
};

// One child process's JSON (torch_train_step.py: "<mode>_<part>_ms" lists) under one policy.
struct TorchRun {
  const char* policy;
  nlohmann::json json;

  std::vector<double> Milliseconds(const std::string& key) const {
    return json[key + "_ms"].get<std::vector<double>>();
  }
};

// PyTorch's runs under every wait policy, or `error`.
struct TorchTimes {
  std::vector<TorchRun> runs;
  std::string error;
};

TorchTimes MeasurePyTorch(const ModelCase& c) {
  TorchTimes t;
  for (const WaitPolicy& policy : kWaitPolicies) {
    const std::string command =
        absl::StrCat(policy.command_prefix, "/usr/bin/python3 bench/torch_train_step.py ", c.name,
                     " ", c.batch, " ", kThreads, " ", kWarmupSteps, " ", kTimedSteps);
    const std::string out = CommandOutput(command);
    TorchRun run{policy.name, nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false)};
    bool complete = run.json.is_object();
    for (const char* key : {"fp32_step_ms", "fp32_forward_ms", "qat_step_ms", "qat_forward_ms"}) {
      complete =
          complete && run.json.contains(key) && run.json[key].is_array() && !run.json[key].empty();
    }
    if (!complete) {
      t.error = command + " failed (is python3-torch installed?)";
      return t;
    }
    t.runs.push_back(std::move(run));
  }
  return t;
}

// PyTorch's measurement of one model, taken when its first row runs (so a --benchmark_filter that
// leaves none of its rows costs nothing) and shared by the model's PyTorch rows.
class LazyTorch {
 public:
  explicit LazyTorch(ModelCase c) : case_(c) {}

  const TorchTimes& Get() {
    if (!times_.has_value()) times_ = MeasurePyTorch(case_);
    return *times_;
  }

 private:
  ModelCase case_;
  std::optional<TorchTimes> times_;
};

// The median of PyTorch's timed runs for `key` (with `fastest`: their minimum) under the wait
// policy that gives the lower value; the label names it and the other policy's value.
void TorchRow(benchmark::State& state, LazyTorch& lazy, const std::string& key, bool fastest) {
  const TorchTimes& torch = lazy.Get();
  if (!torch.error.empty()) {
    state.SkipWithError(torch.error.c_str());
    return;
  }
  std::vector<std::pair<double, const char*>> ms_by_policy;
  size_t runs = 0;
  for (const TorchRun& run : torch.runs) {
    const std::vector<double> ms = run.Milliseconds(key);
    runs = ms.size();
    ms_by_policy.emplace_back(fastest ? *std::min_element(ms.begin(), ms.end()) : Median(ms),
                              run.policy);
  }
  std::sort(ms_by_policy.begin(), ms_by_policy.end());
  for (auto _ : state) state.SetIterationTime(ms_by_policy.front().first / 1e3);
  std::string label =
      absl::StrCat(fastest ? "fastest" : "median", " of ", runs,
                   " in a child process, OpenMP wait ", ms_by_policy.front().second);
  for (size_t i = 1; i < ms_by_policy.size(); ++i) {
    absl::StrAppend(&label, " (", ms_by_policy[i].second, ": ",
                    absl::SixDigits(ms_by_policy[i].first), " ms)");
  }
  state.SetLabel(label);
}

void Register(const ModelCase& c, bool target, RatioReporter& reporter) {
  const std::string model = CaseName(c);
  const std::string qlab_suffix = absl::StrCat("/iterations:", kTimedSteps, "/real_time");
  const std::string torch_suffix = "/iterations:1/manual_time";
  std::vector<std::shared_ptr<LazyTrainer>> trainers;
  for (const bool qat : {true, false}) {
    const std::string mode = qat ? "qat" : "fp32";
    auto lazy = std::make_shared<LazyTrainer>(c, qat);
    trainers.push_back(lazy);
    benchmark::RegisterBenchmark(("qlab_" + mode + "_step/" + model).c_str(),
                                 [lazy](benchmark::State& s) { QlabStep(s, *lazy); })
        ->Iterations(kTimedSteps)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("qlab_" + mode + "_predict/" + model).c_str(),
                                 [lazy](benchmark::State& s) { QlabPredict(s, *lazy); })
        ->Iterations(kTimedSteps)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (size_t i = 0; i < trainers.size(); ++i) {
    const std::shared_ptr<LazyTrainer> lazy = trainers[i];
    benchmark::RegisterBenchmark(
        absl::StrCat("qlab_", i == 0 ? "qat" : "fp32", "_fastest_step/", model).c_str(),
        [lazy](benchmark::State& s) { QlabFastestStep(s, *lazy); })
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  auto torch = std::make_shared<LazyTorch>(c);
  for (const std::string key : {"qat_step", "fp32_step", "qat_forward", "fp32_forward"}) {
    benchmark::RegisterBenchmark(
        absl::StrCat("pytorch_", key, "/", model).c_str(),
        [torch, key](benchmark::State& s) { TorchRow(s, *torch, key, /*fastest=*/false); })
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  for (const std::string mode : {"qat", "fp32"}) {
    benchmark::RegisterBenchmark(
        absl::StrCat("pytorch_", mode, "_fastest_step/", model).c_str(),
        [torch, mode](benchmark::State& s) { TorchRow(s, *torch, mode + "_step", true); })
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }

  const std::string label = absl::StrCat(c.name, " b", c.batch);
  reporter.AddComparison(
      "pytorch_qat_step/" + model + torch_suffix, "qlab_qat_step/" + model + qlab_suffix,
      target ? 2.0 : 1.0,
      absl::StrCat(target ? "TARGET" : "info:", " qat ", label, ": PyTorch FX QAT / qlab QAT"));
  reporter.AddComparison("pytorch_fp32_step/" + model + torch_suffix,
                         "qlab_fp32_step/" + model + qlab_suffix, 1.0,
                         absl::StrCat("info: fp32 ", label, ": PyTorch / qlab"));
  // The same from each side's fastest step: the view least disturbed by other jobs on the cores.
  for (const std::string mode : {"qat", "fp32"}) {
    reporter.AddComparison(
        "pytorch_" + mode + "_fastest_step/" + model + torch_suffix,
        "qlab_" + mode + "_fastest_step/" + model + torch_suffix, 1.0,
        absl::StrCat("info: ", mode, " ", label, ", fastest steps: PyTorch / qlab"));
  }
  // Step / forward: how many forwards one step costs (the forward's share is its inverse).
  reporter.AddComparison("qlab_qat_step/" + model + qlab_suffix,
                         "qlab_qat_predict/" + model + qlab_suffix, 1.0,
                         absl::StrCat("info: qat ", label, ": qlab step / eval forward"));
  reporter.AddComparison("pytorch_qat_step/" + model + torch_suffix,
                         "pytorch_qat_forward/" + model + torch_suffix, 1.0,
                         absl::StrCat("info: qat ", label, ": PyTorch step / train forward"));
}

}  // namespace
}  // namespace qlab::bench

int main(int argc, char** argv) {
  qlab::bench::RatioReporter reporter;
  qlab::bench::Register({"resnet18", 4}, /*target=*/true, reporter);
  qlab::bench::Register({"resnet20", 128}, /*target=*/false, reporter);
  return qlab::bench::RunBenchmarksWithRatios(argc, argv, reporter);
}
