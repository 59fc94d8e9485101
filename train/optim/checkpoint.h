// Training checkpoints: everything needed to resume a qlab training run, in one safetensors file
// that the ordinary weight loaders also read.
//
// Layout of a checkpoint (models/safetensors.h writes and validates the container):
//   * the model's tensors under their PyTorch state_dict names at top level ("conv1.weight",
//     "bn1.running_mean", ...), so models/weights.h LoadWeights and PyTorch's safetensors loaders
//     read the file as a state dict;
//   * the optimizer's momentum buffers as 1-D float32 tensors named
//     "optimizer.momentum.<parameter name>" (no model key may start with "optimizer.");
//   * metadata (safetensors "__metadata__", strings): "format" = "qlab.training_checkpoint",
//     "format_version" = "1", "epoch", "global_step", "seed" (decimal integers) and "config"
//     (the run's configuration as JSON text, or empty). Other metadata keys are ignored.
// LoadWeights returns the optimizer tensors too, and models/state_dict.h LoadStateDict is strict
// (it rejects them as unexpected keys): ModelStateDict() drops them.
//
// Saving never replaces anything: the bytes go to a temporary file beside `path` (mkstemp's
// "<path>.tmp-XXXXXX", unique even when two writers race) which is then hard-linked to `path`;
// link() fails when `path` exists, so an existing file is never overwritten (AlreadyExists naming
// it) and a crash leaves either the complete checkpoint or none (only a stray temporary file).
//
// Checkpoints of one run are named CheckpointFileName(epoch) in its output folder, and
// LatestCheckpoint finds the newest one to resume from:
//   QLAB_RETURN_IF_ERROR(SaveCheckpoint(absl::StrCat(dir, "/", CheckpointFileName(epoch)), s));
//   ...
//   QLAB_ASSIGN_OR_RETURN(std::string latest, LatestCheckpoint(dir));
//   QLAB_ASSIGN_OR_RETURN(TrainingState state, LoadCheckpoint(latest));
//   QLAB_RETURN_IF_ERROR(sgd.RestoreMomentumBuffers(state.momentum));
#ifndef QLAB_TRAIN_OPTIM_CHECKPOINT_H_
#define QLAB_TRAIN_OPTIM_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace qlab::train {

inline constexpr char kCheckpointFormat[] = "qlab.training_checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;
inline constexpr char kMomentumPrefix[] = "optimizer.momentum.";

struct TrainingState {
  std::map<std::string, Tensor> model;                 // state_dict name → tensor
  std::map<std::string, std::vector<float>> momentum;  // Sgd::MomentumBuffers()
  int64_t epoch = 0;                                   // >= 0
  int64_t step = 0;                                    // global optimizer step, >= 0
  uint64_t seed = 0;
  std::string config_json;  // empty or valid JSON
};

// Writes `state` to `path` (atomically, never over an existing file: see the top of this file).
// AlreadyExists naming `path` when it exists; InvalidArgument naming the offending key or value
// for a model key starting with "optimizer." or that safetensors refuses (empty), a negative
// epoch or step, or config_json that is not JSON; the writer's errors otherwise. Model tensors
// are stored losslessly (float32 as F32, int8 as I8, uint8 as U8, int32 as I32).
absl::Status SaveCheckpoint(const std::string& path, const TrainingState& state);

// Reads a checkpoint written by SaveCheckpoint, bit for bit. Every error names `path` and:
// NotFound when it cannot be opened; DataLoss for a truncated or inconsistent file;
// InvalidArgument for a file that is not safetensors, a missing or malformed metadata key (named,
// with its value), another format or an unsupported format_version, or an
// "optimizer.momentum." tensor that is not 1-D F32 (named).
absl::StatusOr<TrainingState> LoadCheckpoint(const std::string& path);

// `weights` without the optimizer's tensors (keys starting with "optimizer."): the state dict to
// give LoadStateDict / BuildResNet after LoadWeights read a checkpoint.
std::map<std::string, Tensor> ModelStateDict(const std::map<std::string, Tensor>& weights);

// "checkpoint-epoch-<epoch>.safetensors" (decimal, no leading zeros).
std::string CheckpointFileName(int64_t epoch);

// The path ("<dir>/<name>") of the checkpoint named CheckpointFileName(N) with the highest N in
// `dir` (numerically: epoch 10 is after epoch 9). Other names are ignored, including temporary
// files and spellings with a sign or leading zeros. NotFound naming `dir` when it has no such
// file or cannot be read.
absl::StatusOr<std::string> LatestCheckpoint(const std::string& dir);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPTIM_CHECKPOINT_H_
