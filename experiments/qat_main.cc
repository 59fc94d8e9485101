// bazel run //experiments:qat -- --model=resnet20 --weight_bits=4 --activation_bits=4 --lsq ...
//
// Quantization-aware fine-tuning of a pretrained CIFAR ResNet (experiments/qat.h): calibrate,
// fine-tune with fake quantization, convert, evaluate with fake quantization and on the int8
// engine. Writes <out>/record.json (the PTQ record's fields plus the training curve), log.csv and
// a checkpoint per epoch; --resume=<out> continues an interrupted run from its latest checkpoint.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "core/interrupt.h"
#include "core/status_macros.h"
#include "experiments/qat.h"
#include "experiments/recipe_flags.h"
#include "experiments/record_io.h"
#include "experiments/training_report.h"
#include "models/data/data_root.h"

ABSL_FLAG(std::string, model, "resnet20", "resnet20/32/44/56, resnet18_cifar, resnet50_cifar");
ABSL_FLAG(std::string, weights, "",
          "pretrained weights (safetensors or .pth); empty: the shared checkpoint of resnet20..56");
ABSL_FLAG(std::string, cache_dir, "", "where the training archive is unpacked once");
ABSL_FLAG(std::string, quantizer, "x86", "xnnpack, x86 or tensorrt");
ABSL_FLAG(std::string, activation_scheme, "",
          "affine or symmetric (per-tensor activations on the backend's dtype and range); "
          "default: the quantizer's");
ABSL_FLAG(
    std::string, calibrator, "",
    "activation observer (registry spec); empty: moving_average, or the backend's with --lsq");
ABSL_FLAG(std::string, weight_granularity, "per_channel", "per_channel or per_tensor");
ABSL_FLAG(int, weight_bits, 8, "weight bit width (2..8)");
ABSL_FLAG(int, activation_bits, 8, "activation bit width (2..8)");
ABSL_FLAG(bool, first_last_8bit, true, "below 8 bits, keep the stem conv and classifier at 8");
ABSL_FLAG(bool, lsq, false, "learned step size (LSQ) scales instead of observer ranges");
ABSL_FLAG(bool, lsq_mean_abs_init, false,
          "with --lsq: initialize scales as 2 mean|x| / sqrt(Q_P) (LSQ's rule), not from the "
          "calibrator");
ABSL_FLAG(bool, pact, false,
          "PACT: learned clipping levels [0, alpha] for the non-negative activations (the "
          "others follow their observers); not with --lsq");
ABSL_FLAG(bool, int8_forward, true,
          "the forward of fake-quantized convolutions on the int8 VNNI kernels (exact integer "
          "sums); false: the fp32 GEMM");
ABSL_FLAG(int64_t, calib_images, 512, "calibration images (seeded subset of the training set)");
ABSL_FLAG(uint64_t, calib_seed, 0, "seed of the calibration subset");
ABSL_FLAG(int64_t, eval_images, 0, "final evaluation on the first N test images (0: all)");
ABSL_FLAG(int, batch_size, 200, "evaluation batch size");
ABSL_FLAG(int, threads, 2, "threads");

namespace qlab::experiments {
namespace {

absl::Status Main() {
  QatConfig c;
  PtqConfig& q = c.quant;
  q.model = absl::GetFlag(FLAGS_model);
  q.weights = absl::GetFlag(FLAGS_weights);
  q.data_root = absl::GetFlag(FLAGS_data_root);
  q.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  q.quantizer = absl::GetFlag(FLAGS_quantizer);
  q.activation_scheme = absl::GetFlag(FLAGS_activation_scheme);
  q.calibrator = absl::GetFlag(FLAGS_calibrator);
  q.weight_granularity = absl::GetFlag(FLAGS_weight_granularity);
  q.weight_bits = absl::GetFlag(FLAGS_weight_bits);
  q.activation_bits = absl::GetFlag(FLAGS_activation_bits);
  q.calib_images = absl::GetFlag(FLAGS_calib_images);
  q.calib_seed = absl::GetFlag(FLAGS_calib_seed);
  q.eval_images = absl::GetFlag(FLAGS_eval_images);
  q.batch_size = absl::GetFlag(FLAGS_batch_size);
  q.threads = absl::GetFlag(FLAGS_threads);
  c.recipe = RecipeFromFlags();
  c.lsq = absl::GetFlag(FLAGS_lsq);
  c.lsq_mean_abs_init = absl::GetFlag(FLAGS_lsq_mean_abs_init);
  c.pact = absl::GetFlag(FLAGS_pact);
  c.first_last_8bit = absl::GetFlag(FLAGS_first_last_8bit);
  c.int8_forward = absl::GetFlag(FLAGS_int8_forward);
  QLAB_ASSIGN_OR_RETURN(const RunFolder folder, RunFolderFromFlags("results/qat/run-"));
  c.run_dir = folder.run_dir;
  c.resume_from = folder.resume_from;
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, RunQat(c));
  const std::string path = absl::StrCat(c.run_dir, "/record.json");
  QLAB_RETURN_IF_ERROR(WriteJsonFile(path, record, /*overwrite=*/false));
  QLAB_RETURN_IF_ERROR(WriteTrainingReport(c.run_dir, record));
  const nlohmann::json& r = record["results"];
  std::printf(
      "%s  %s W%dA%d%s  fp32 %.2f %%  PTQ %.2f %%  QAT fake-quant %.2f %%  int8 %.2f %%  -> %s\n",
      q.model.c_str(), q.quantizer.c_str(), q.weight_bits, q.activation_bits,
      c.lsq ? " LSQ" : (c.pact ? " PACT" : ""), 100 * r["fp32"]["top1"].get<double>(),
      100 * r["ptq_baseline_fake_quant_top1"].get<double>(),
      100 * r["fake_quant"]["top1"].get<double>(), 100 * r["int8"].value("top1", -0.01),
      path.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  qlab::experiments::TrainRecipe defaults;  // a short fine-tune from pretrained weights
  defaults.epochs = 1;
  defaults.lr = 0.01;
  defaults.weight_decay = 1e-4;
  defaults.batch_size = 128;
  qlab::experiments::SetRecipeFlagDefaults(defaults);
  absl::ParseCommandLine(argc, argv);
  // Ctrl-C ends the run at once but never inside a results write (core/interrupt.h): what it
  // completed stays whole, and --resume continues from there.
  qlab::InstallInterruptHandler();
  if (const absl::Status s = qlab::experiments::Main(); !s.ok()) {
    std::fprintf(stderr, "qat: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
