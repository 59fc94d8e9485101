// safetensors: reading and writing Hugging Face's weight-file format, validated like a parser of
// untrusted input.
//
// This is how checkpoints enter qlab (models/state_dict.h then loads them into a built graph) and
// how qlab hands weights back (quantized or fine-tuned). The format is
//     [8 bytes: little-endian u64 N] [N bytes: JSON header] [data section: raw little-endian bytes]
// where the header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the data section) plus an optional "__metadata__" string→string map.
//
// Reading never trusts the file: the header length is bounded (kMaxSafetensorsHeaderBytes) and
// checked against the file size before anything is allocated; the JSON must be well formed, an
// object, without duplicate names; every entry must have exactly the three fields with sane
// values; dtype × shape must equal the entry's byte range; ranges must lie inside the data
// section, must not overlap and must cover it without holes (as the reference implementation
// requires). Failures are DataLoss when the bytes are inconsistent (truncated file, offsets past
// the end, overlaps, size mismatch) and InvalidArgument when the content is not valid safetensors
// (bad JSON, unknown dtype, bad shape, header too large), each naming the tensor and the value.
//
// Two levels:
//   * SafetensorsFile / SafetensorsTensor: the file as stored (every dtype the format defines,
//     raw bytes), for lossless round trips and inspection;
//   * LoadSafetensors / SaveSafetensors: qlab Tensors. Floating types (F64, F16, BF16, F8_E4M3,
//     F8_E5M2) become float32; integer types become the nearest qlab dtype that holds every value
//     (I8→int8, U8→uint8, BOOL→uint8 0/1, I16/U16/I32→int32, I64/U32/U64→int32 when every value
//     fits, else InvalidArgument naming the tensor and the first value that does not).
//
//   QLAB_ASSIGN_OR_RETURN(LoadedSafetensors w,
//                         LoadSafetensors("../shared/data/cifar10-resnet-akamaster/resnet20.safetensors"));
//   w.tensors.at("conv1.weight");   // float32[16,3,3,3]
//   w.metadata.at("arch");          // "resnet20"
//
// Writing is atomic (a temporary file in the destination folder, then a rename or a hard link),
// and an existing file is never replaced unless WriteOptions::overwrite says so (AlreadyExists).
// Only little-endian hosts are supported (static_assert in the .cc).
#ifndef QLAB_MODELS_SAFETENSORS_H_
#define QLAB_MODELS_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"

namespace qlab {

// Header lengths above this are rejected before allocation (the reference implementation's
// bound: a ResNet50 header is ~30 KB, a 100k-tensor LLM header a few MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u * 1000 * 1000;

// The element types the format defines, under their header spelling ("F32", "BF16", ...).
enum class SafetensorsDType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

// "F32", "F8_E4M3", ...
absl::string_view SafetensorsDTypeName(SafetensorsDType dtype);
// Inverse of SafetensorsDTypeName; InvalidArgument for any other spelling.
absl::StatusOr<SafetensorsDType> ParseSafetensorsDType(absl::string_view name);
// Bytes per element (1, 2, 4 or 8).
int SafetensorsDTypeSize(SafetensorsDType dtype);

// One tensor as stored: little-endian element bytes, row-major.
struct SafetensorsTensor {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar (one element)
  std::string bytes;           // exactly numel × SafetensorsDTypeSize(dtype)
};

// A whole file as stored. `tensors` are in data-offset order (the order of the bytes in the
// file), which for files written by qlab or the reference writer is: larger dtypes first, then
// by name.
struct SafetensorsFile {
  std::vector<SafetensorsTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

// Parses a complete file held in memory. Errors as described at the top of this file.
absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view file_bytes);
// Reads and parses `path`: the header length is checked against the file size, and the header
// against kMaxSafetensorsHeaderBytes, before the header or the data are read. NotFound when the
// file cannot be opened.
absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path);

// The file's bytes. InvalidArgument naming the tensor for a bad name (empty, duplicate,
// "__metadata__"), a negative dimension or a byte count that is not numel × element size.
absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file);

struct WriteOptions {
  // Replace an existing file at the destination (atomically). Off: AlreadyExists.
  bool overwrite = false;
};
absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file,
                              const WriteOptions& options = {});

// --- qlab tensors --------------------------------------------------------------------------
// The stored tensor as a qlab Tensor (conversions at the top of this file), with 64-byte aligned
// storage of its own.
absl::StatusOr<Tensor> ToTensor(const SafetensorsTensor& stored);

// The float32 storage type when saving float32 tensors: F32 is lossless; F16 and BF16 round to
// nearest-even (F16 overflows to ±inf beyond 65504), F64 widens exactly.
struct SaveOptions {
  WriteOptions write;
  SafetensorsDType float_dtype = SafetensorsDType::kF32;
};
// A qlab tensor as stored (float32 in `float_dtype`; int8→I8, uint8→U8, int32→I32).
// InvalidArgument for a float_dtype that is not a floating type.
absl::StatusOr<SafetensorsTensor> FromTensor(std::string name, const Tensor& tensor,
                                             SafetensorsDType float_dtype =
                                                 SafetensorsDType::kF32);

struct LoadedSafetensors {
  std::map<std::string, Tensor> tensors;  // a state dict: name → tensor
  std::map<std::string, std::string> metadata;
};
absl::StatusOr<LoadedSafetensors> LoadSafetensors(const std::string& path);
absl::Status SaveSafetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                             const std::map<std::string, std::string>& metadata = {},
                             const SaveOptions& options = {});

}  // namespace qlab

#endif  // QLAB_MODELS_SAFETENSORS_H_
