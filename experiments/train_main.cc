// bazel run //experiments:train -- --model=resnet18_cifar --epochs=30 ...
//
// FP32 training of a CIFAR ResNet from scratch (or from --weights) on the CIFAR-10 training set
// (experiments/qat.h RunTrain): seeded augmentation, SGD with momentum, a cosine or step
// schedule with warm-up, per-epoch test accuracy. Writes <out>/record.json, log.csv and
// checkpoint-epoch-<N>.safetensors (a state dict every qlab loader reads: --weights of
// //experiments:qat and //experiments:ptq); --resume=<out> continues an interrupted run.
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

ABSL_FLAG(std::string, model, "resnet18_cifar",
          "resnet18_cifar, resnet50_cifar, resnet20/32/44/56");
ABSL_FLAG(std::string, weights, "", "initial weights; empty: seeded He initialization");
ABSL_FLAG(std::string, cache_dir, "", "where the training archive is unpacked once");
ABSL_FLAG(int, threads, 2, "threads");

namespace qlab::experiments {
namespace {

absl::Status Main() {
  TrainConfig c;
  c.model = absl::GetFlag(FLAGS_model);
  c.weights = absl::GetFlag(FLAGS_weights);
  c.data_root = absl::GetFlag(FLAGS_data_root);
  c.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  c.threads = absl::GetFlag(FLAGS_threads);
  c.recipe = RecipeFromFlags();
  QLAB_ASSIGN_OR_RETURN(const RunFolder folder, RunFolderFromFlags("results/train/run-"));
  c.run_dir = folder.run_dir;
  c.resume_from = folder.resume_from;
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json record, RunTrain(c));
  const std::string path = absl::StrCat(c.run_dir, "/record.json");
  QLAB_RETURN_IF_ERROR(WriteJsonFile(path, record, /*overwrite=*/false));
  QLAB_RETURN_IF_ERROR(WriteTrainingReport(c.run_dir, record));
  std::printf("%s  %d epochs  test %.2f %%  %.0f img/s  -> %s\n", c.model.c_str(), c.recipe.epochs,
              100 * record["results"]["test_top1"].get<double>(),
              record["training"]["images_per_second"].get<double>(), path.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace qlab::experiments

int main(int argc, char** argv) {
  qlab::experiments::TrainRecipe defaults;  // from scratch: see experiments/README.md
  defaults.epochs = 30;
  defaults.lr = 0.1;
  defaults.weight_decay = 5e-4;
  defaults.batch_size = 128;
  defaults.warmup_epochs = 1;
  defaults.nesterov = true;
  qlab::experiments::SetRecipeFlagDefaults(defaults);
  absl::ParseCommandLine(argc, argv);
  // Ctrl-C ends the run at once but never inside a results write (core/interrupt.h): what it
  // completed stays whole, and --resume continues from there.
  qlab::InstallInterruptHandler();
  if (const absl::Status s = qlab::experiments::Main(); !s.ok()) {
    std::fprintf(stderr, "train: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
