// LoadWeights: a state dict from any weight file qlab reads, chosen by the file's content.
//
// safetensors (an 8-byte little-endian header length, then JSON) and PyTorch's torch.save zip
// ("PK\x03\x04") are recognized by their first bytes, not by the file name, so a checkpoint
// renamed to .bin still loads and a text file named .pth fails as what it is. The legacy pre-1.6
// torch format is refused (models/pth) with a pointer to the safetensors copies.
#ifndef QLAB_MODELS_WEIGHTS_H_
#define QLAB_MODELS_WEIGHTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/state_dict.h"

namespace qlab {

struct LoadedWeights {
  StateDict tensors;
  std::string format;              // "safetensors" or "pth"
  std::vector<std::string> notes;  // conversions, ignored entries, skipped tensors
};

// NotFound naming the path; InvalidArgument naming it when the format is not recognized; the
// loaders' own errors (naming the tensor) otherwise.
absl::StatusOr<LoadedWeights> LoadWeights(const std::string& path);

}  // namespace qlab

#endif  // QLAB_MODELS_WEIGHTS_H_
