// Quantization-aware training of the CIFAR ResNets: the QAT experiment behind
// `bazel run //experiments:qat` and, with quantization off, FP32 training behind
// `bazel run //experiments:train`.
//
// QAT (RunQat) follows pt2e's flow with qlab's pieces:
//   1. the pretrained float model (batch norms unfolded) is annotated by the backend quantizer in
//      QAT mode (PtqConfig's backend, calibrator, granularity, bit widths and layer overrides:
//      the same quantizer as PTQ) and prepared with fake-quantize nodes (PrepareQat);
//   2. the training engine (train/training_engine.h) calibrates the observers on `calib_images`
//      training images; the fake-quant accuracy at this point is the PTQ baseline of the run;
//      in LSQ mode the calibrated parameters become the initial learned scales;
//   3. it fine-tunes with the recipe (experiments/training_run.h), conv -> batch_norm trained as
//      PyTorch's QAT ConvBn modules, statistics / observers frozen after the recipe's steps;
//   4. the trained weights go back into the prepared model with the batch norms folded, convert
//      gives the Q/DQ model, evaluated with fake quantization on the FP32 engine and lowered to
//      the int8 engine: the same evaluation as PTQ.
// The record holds the PTQ record's fields (config, inputs, provenance, results with fp32,
// fake_quant and int8) plus "training" (recipe, curve per epoch, log path, speed) and
// "ptq_baseline" (step 2's accuracy).
#ifndef QLAB_EXPERIMENTS_QAT_H_
#define QLAB_EXPERIMENTS_QAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "experiments/ptq.h"
#include "experiments/training_run.h"
#include "nlohmann/json.hpp"

namespace qlab::experiments {

struct QatConfig {
  // Model, weights, data, quantizer and evaluation settings. calibrator empty: "moving_average"
  // (PyTorch's QAT default) without LSQ, the backend's calibrator with LSQ. calib_images and
  // calib_seed choose the calibration images, eval_images the test images of the final
  // evaluation, batch_size the evaluation batch.
  PtqConfig quant;
  TrainRecipe recipe;
  bool lsq = false;
  // LSQ's 2 mean|x| / sqrt(Q_P) initialization instead of the calibrator's ranges
  // (train/training_engine.h QatOptions::lsq_mean_abs_init).
  bool lsq_mean_abs_init = false;
  // PACT's learned clipping levels for the non-negative activations (train/training_engine.h
  // QatOptions::pact); not together with lsq.
  bool pact = false;
  // Below 8 bits: keep the first convolution and the classifier at 8 bits ("8bit" overrides).
  bool first_last_8bit = true;
  // The forward of fake-quantized convolutions on the int8 kernels (train/training_engine.h
  // QatOptions::int8_forward); false: the fp32 GEMM (the numerics of runs before 2026-11-24).
  bool int8_forward = true;
  // Where log.csv, checkpoints and record.json go (created; must not exist yet).
  std::string run_dir;
  std::string resume_from;  // a checkpoint of an interrupted run with the same config

  nlohmann::json ToJson() const;
};

absl::StatusOr<nlohmann::json> RunQat(const QatConfig& config);

struct TrainConfig {
  std::string model = "resnet18_cifar";
  // Initial weights (safetensors / .pth state dict); empty: seeded He initialization.
  std::string weights;
  std::string data_root;
  std::string cache_dir;
  TrainRecipe recipe;
  int threads = 2;
  std::string run_dir;
  std::string resume_from;
  bool show_progress = true;

  nlohmann::json ToJson() const;
};

// FP32 training on the CIFAR-10 training set; the record holds the config, inputs, provenance,
// the curve and the final test accuracy; the weights are the last checkpoint in run_dir.
absl::StatusOr<nlohmann::json> RunTrain(const TrainConfig& config);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_QAT_H_
