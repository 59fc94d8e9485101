// A restricted unpickler: reads the pickle inside a PyTorch .pth file into inert values, and can
// never run code.
//
// Python's pickle is a small stack machine whose GLOBAL + REDUCE opcodes call any importable
// function, so loading an untrusted .pth with pickle is arbitrary code execution. This one only
// knows the opcodes torch.save emits for a tensor state_dict (protocol 2, plus the protocol 4
// framing/string/memo opcodes) and only the globals that describe tensors:
//   collections.OrderedDict                              -> an ordered dict
//   torch._utils._rebuild_tensor_v2 / _rebuild_parameter -> a TensorRef (no data read here)
//   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
//                                                       -> storage types in persistent ids
// Any other global (os.system, builtins.eval, ...) is InvalidArgument naming it, at the GLOBAL
// opcode, before anything could be called; an opcode outside the set is InvalidArgument naming it
// and its offset; a truncated or malformed stream is DataLoss. Values live in an arena indexed by
// int, so shared and even cyclic references (memo GET of a container into itself) are harmless.
//
//   QLAB_ASSIGN_OR_RETURN(Unpickled u, RestrictedUnpickle(pickle_bytes, "model/data.pkl"));
//   const PyObject& root = u.objects[u.root];   // e.g. kDict of name -> kTensor
#ifndef QLAB_MODELS_PTH_RESTRICTED_UNPICKLER_H_
#define QLAB_MODELS_PTH_RESTRICTED_UNPICKLER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qlab::pth {

enum class PyKind { kNone, kBool, kInt, kFloat, kString, kTuple, kList, kDict, kGlobal, kStorage,
                    kTensor };

// "none", "bool", ..., "tensor".
absl::string_view PyKindName(PyKind kind);

// A storage named by a persistent id ('storage', torch.<Type>Storage, key, location, numel):
// its bytes are the archive entry data/<key>.
struct StorageRef {
  std::string type;  // "FloatStorage", "LongStorage", ...
  std::string key;
  std::string location;
  int64_t numel = 0;
};

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks).
struct TensorRef {
  int storage = -1;  // object index of a kStorage
  int64_t storage_offset = 0;
  std::vector<int64_t> sizes, strides;
};

struct PyObject {
  PyKind kind = PyKind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                          // kString; kGlobal as "module.name"
  std::vector<int> items;                    // kTuple, kList
  std::vector<std::pair<int, int>> entries;  // kDict, insertion order (later SETITEM wins)
  StorageRef storage;
  TensorRef tensor;
};

struct Unpickled {
  std::vector<PyObject> objects;
  int root = -1;
};

// Whether `module.name` may appear in a GLOBAL opcode.
bool IsAllowedGlobal(absl::string_view qualified_name);

// Runs the restricted machine over `bytes` up to STOP. `name` (e.g. the archive entry) prefixes
// errors.
absl::StatusOr<Unpickled> RestrictedUnpickle(absl::string_view bytes, absl::string_view name);

}  // namespace qlab::pth

#endif  // QLAB_MODELS_PTH_RESTRICTED_UNPICKLER_H_
