// Command-line flags of a training recipe (experiments/training_run.h) and of the run folder
// (--out, --resume), shared by `bazel run //experiments:train` and `//experiments:qat`, which
// differ only in their defaults (set by each main through SetRecipeFlagDefaults before parsing).
#ifndef QLAB_EXPERIMENTS_RECIPE_FLAGS_H_
#define QLAB_EXPERIMENTS_RECIPE_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "experiments/training_run.h"

namespace qlab::experiments {

// Makes `defaults` the flags' defaults (call before absl::ParseCommandLine).
void SetRecipeFlagDefaults(const TrainRecipe& defaults);
// The recipe the flags describe.
TrainRecipe RecipeFromFlags();

struct RunFolder {
  std::string run_dir;      // where the run writes
  std::string resume_from;  // its newest checkpoint when --resume, else empty
};

// --resume=<folder>: that folder and its newest checkpoint (NotFound when it has none);
// otherwise --out, or a new <default_prefix><N> (e.g. "results/qat/run-") under the workspace.
absl::StatusOr<RunFolder> RunFolderFromFlags(const std::string& default_prefix);

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_RECIPE_FLAGS_H_
