// Command-line flags of a training recipe (experiments/training_run.h), shared by
// `bazel run //experiments:train` and `//experiments:qat`, which differ only in their defaults
// (set by each main through SetRecipeFlagDefaults before parsing).
#ifndef QLAB_EXPERIMENTS_RECIPE_FLAGS_H_
#define QLAB_EXPERIMENTS_RECIPE_FLAGS_H_

#include "experiments/training_run.h"

namespace qlab::experiments {

// Makes `defaults` the flags' defaults (call before absl::ParseCommandLine).
void SetRecipeFlagDefaults(const TrainRecipe& defaults);
// The recipe the flags describe.
TrainRecipe RecipeFromFlags();

}  // namespace qlab::experiments

#endif  // QLAB_EXPERIMENTS_RECIPE_FLAGS_H_
