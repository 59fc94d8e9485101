// Loading PyTorch .pth/.pt files (torch.save's zip format, PyTorch >= 1.6) into qlab Tensors,
// without a Python interpreter and without ever running code from the file.
//
// A torch.save zip holds <prefix>/data.pkl (the pickled object), <prefix>/data/<key> (raw
// little-endian storage bytes, one entry per storage), <prefix>/version and sometimes
// <prefix>/byteorder; <prefix> is the saved file's stem. data.pkl is read by the restricted
// unpickler (restricted_unpickler.h); tensors are then cut out of their storages: storage
// offsets and strides are honoured (non-contiguous views are materialized), and every size,
// offset and stride is checked against the storage before anything is allocated.
//
// What can be loaded: a state_dict (dict or OrderedDict of name -> tensor) or a dict holding one
// under "state_dict", "model_state_dict", "model" or "net" (e.g. {"state_dict": ..., "epoch": 90});
// the other entries are listed in the report. A "module." prefix (DataParallel) is stripped.
// dtypes: float32 as is; float16, bfloat16 and float64 converted to float32; int64/int32/int16
// to int32 when every value fits (num_batches_tracked), otherwise skipped and reported; int8 and
// uint8/bool kept as int8/uint8.
// The legacy pre-1.6 format (a bare pickle stream starting with torch's magic number, as in the
// shared akamaster .th files) is recognised and refused with Unimplemented.
//
//   PthReport report;
//   QLAB_ASSIGN_OR_RETURN(TensorDict weights, LoadPth("resnet18.pth", {}, &report));
//   const Tensor& conv1 = weights.at("conv1.weight");   // float32[64,3,7,7]
#ifndef QLAB_MODELS_PTH_PTH_LOADER_H_
#define QLAB_MODELS_PTH_PTH_LOADER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"

namespace qlab::pth {

// Parameter name -> tensor, sorted by name. (models/ may hold a similar alias; they are the same
// type and can be merged.)
using TensorDict = std::map<std::string, Tensor>;

struct PthOptions {
  bool strip_module_prefix = true;
  // Largest data.pkl read (a ResNet50 state_dict pickle is ~60 KB).
  int64_t max_pickle_bytes = int64_t{1} << 28;
};

struct PthReport {
  std::string state_dict_path;             // "" for the root, or e.g. "state_dict"
  std::vector<std::string> ignored;        // non-tensor entries next to / inside the state_dict
  std::vector<std::string> converted;      // "conv1.weight: float16 -> float32"
  std::vector<std::string> skipped;        // tensors that could not be represented, and why
};

// Loads the tensors of a torch.save zip file. Errors: NotFound (no file), Unimplemented (legacy
// non-zip torch format; big-endian byteorder), InvalidArgument (not a torch zip, a disallowed
// pickle global or opcode, no state_dict inside, duplicate names after stripping "module."),
// DataLoss (truncated/malformed pickle, a missing data/<key> entry, a storage smaller than its
// tensor), ResourceExhausted (a declared size beyond the tensor limit). Messages name the file and
// the tensor or entry.
absl::StatusOr<TensorDict> LoadPth(const std::string& path, const PthOptions& options = {},
                                   PthReport* report = nullptr);

}  // namespace qlab::pth

#endif  // QLAB_MODELS_PTH_PTH_LOADER_H_
