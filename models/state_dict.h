// State dicts: named weight tensors, and loading them strictly into a built model graph.
//
// A model graph (models/resnet.h) holds its weights as `parameter` nodes named exactly like the
// keys of PyTorch's `model.state_dict()` ("conv1.weight", "layer1.0.bn1.running_mean", "fc.bias").
// A StateDict is the same name → tensor map as it comes out of a weight file
// (models/safetensors.h, the .pth loader). LoadStateDict is PyTorch's
// `load_state_dict(strict=True)`: every parameter of the graph must be given, nothing else may
// be, and shapes and dtypes must agree, with all problems reported in one error so that a user
// fixing a converted checkpoint sees the whole picture at once:
//
//   INVALID_ARGUMENT: state dict does not match the model: 2 missing (fc.weight, fc.bias);
//   1 unexpected (linear.weight); 1 shape mismatch (conv1.weight: checkpoint float32[64,3,3,3],
//   model float32[64,3,7,7])
//
// BatchNorm's `num_batches_tracked` counters are accepted and ignored (qlab's batch_norm node is
// eval-mode and has no counter), and a DataParallel `module.` prefix can be stripped.
#ifndef QLAB_MODELS_STATE_DICT_H_
#define QLAB_MODELS_STATE_DICT_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/graph/graph.h"

namespace qlab {

// Ordered by name, so listings and errors are deterministic.
using StateDict = std::map<std::string, Tensor>;

struct LoadStateDictOptions {
  // Strip a leading "module." (torch.nn.DataParallel / DistributedDataParallel) from every key
  // that has it, as torch's consume_prefix_in_state_dict_if_present does.
  bool strip_module_prefix = true;
  // Accept and drop keys ending in ".num_batches_tracked" that the graph has no parameter for.
  bool ignore_num_batches_tracked = true;
};

// `weights` with the "module." prefix removed from every key that has it. InvalidArgument when
// two keys collapse onto one name ("module.fc.bias" and "fc.bias").
absl::StatusOr<StateDict> StripModulePrefix(const StateDict& weights);

// Replaces the value of every parameter node of `graph` by the tensor of the same name
// (shared, not copied). Strict: InvalidArgument listing every missing, unexpected, shape- or
// dtype-mismatched name in one message, and then `graph` is left unchanged.
absl::Status LoadStateDict(const StateDict& weights, Graph& graph,
                           const LoadStateDictOptions& options = {});

// The graph's parameters as a state dict (name → tensor, shared with the graph).
StateDict ExtractStateDict(const Graph& graph);

}  // namespace qlab

#endif  // QLAB_MODELS_STATE_DICT_H_
