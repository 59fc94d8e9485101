// The .pth loader of models/pth/pth_loader.h: libzip for the archive, the restricted unpickler
// for data.pkl, and a bounds-checked gather from storage bytes into qlab Tensors.
#include "models/pth/pth_loader.h"

#include <zip.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"
#include "models/pth/restricted_unpickler.h"

namespace qlab::pth {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "storage bytes are little-endian and copied as host values");

// ---- the archive ----

class ZipArchive {
 public:
  static absl::StatusOr<std::unique_ptr<ZipArchive>> Open(const std::string& path) {
    int code = 0;
    zip_t* zip = zip_open(path.c_str(), ZIP_RDONLY, &code);
    if (zip == nullptr) {
      zip_error_t error;
      zip_error_init_with_code(&error, code);
      const std::string message = zip_error_strerror(&error);
      zip_error_fini(&error);
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a readable zip archive (", message, ")"));
    }
    return std::unique_ptr<ZipArchive>(new ZipArchive(path, zip));
  }
  ~ZipArchive() { zip_discard(zip_); }  // read-only: nothing to write back

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    const zip_int64_t n = zip_get_num_entries(zip_, 0);
    for (zip_int64_t i = 0; i < n; ++i) {
      if (const char* name = zip_get_name(zip_, static_cast<zip_uint64_t>(i), 0)) {
        names.emplace_back(name);
      }
    }
    return names;
  }

  bool Has(const std::string& entry) const { return zip_name_locate(zip_, entry.c_str(), 0) >= 0; }

  // The uncompressed size the archive declares for `entry`; DataLoss if the entry is missing.
  absl::StatusOr<int64_t> Size(const std::string& entry) const {
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat(zip_, entry.c_str(), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE)) {
      return absl::DataLossError(absl::StrCat(path_, ": archive entry ", entry, " is missing"));
    }
    if (stat.size > static_cast<zip_uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::DataLossError(absl::StrCat(path_, ": entry ", entry, " size overflows"));
    }
    return static_cast<int64_t>(stat.size);
  }

  // The whole entry, whose declared size must be `expected_size` (checked before allocating).
  absl::StatusOr<std::string> Read(const std::string& entry, int64_t expected_size) const {
    QLAB_ASSIGN_OR_RETURN(const int64_t size, Size(entry));
    if (size != expected_size) {
      return absl::DataLossError(absl::StrCat(path_, ": entry ", entry, " has ", size,
                                              " bytes, expected ", expected_size));
    }
    zip_file_t* file = zip_fopen(zip_, entry.c_str(), 0);
    if (file == nullptr) {
      return absl::DataLossError(absl::StrCat(path_, ": cannot open entry ", entry, ": ",
                                              zip_strerror(zip_)));
    }
    std::string bytes(static_cast<size_t>(size), '\0');
    const zip_int64_t got = size == 0 ? 0 : zip_fread(file, bytes.data(), size);
    zip_fclose(file);
    if (got != size) {
      return absl::DataLossError(absl::StrCat(path_, ": entry ", entry, " truncated or corrupt (",
                                              got, " of ", size, " bytes)"));
    }
    return bytes;
  }

 private:
  ZipArchive(std::string path, zip_t* zip) : path_(std::move(path)), zip_(zip) {}
  std::string path_;
  zip_t* zip_;
};

// The archive's record prefix: the folder holding data.pkl (torch.save uses the file's stem).
absl::StatusOr<std::string> FindPrefix(const ZipArchive& zip, const std::string& path) {
  for (const std::string& name : zip.Names()) {
    const size_t slash = name.find('/');
    if (slash != std::string::npos && name.substr(slash) == "/data.pkl") {
      return name.substr(0, slash + 1);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": zip archive without <name>/data.pkl: not a torch.save file"));
}

// Recognises the legacy formats by their first bytes, for a precise refusal.
absl::Status CheckFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  char head[512] = {};
  in.read(head, sizeof(head));
  const std::streamsize got = in.gcount();
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return absl::OkStatus();
  // PROTO 2, LONG1 of 10 bytes = torch's legacy magic number 0x1950a86a20f9469cfc6c.
  static const unsigned char kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                               0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  if (got >= 14 && std::memcmp(head, kLegacyMagic, sizeof(kLegacyMagic)) == 0) {
    return absl::UnimplementedError(absl::StrCat(
        path, " is in PyTorch's legacy (pre-1.6, non-zip) torch.save format: a sequence of "
        "pickles after magic number 0x1950a86a20f9469cfc6c with raw storages appended; qlab reads "
        "only the zip format. Re-save it with torch.save from PyTorch >= 1.6, or use a "
        ".safetensors conversion (the shared akamaster checkpoints have one)"));
  }
  if (got >= 262 && std::memcmp(head + 257, "ustar", 5) == 0) {
    return absl::UnimplementedError(absl::StrCat(
        path, " is in PyTorch's oldest tar-based torch.save format, which qlab does not read; "
        "re-save it with torch.save from PyTorch >= 1.6"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, " is not a PyTorch zip file (torch.save format of PyTorch >= 1.6)"));
}

// ---- storages and dtypes ----

enum class SourceType { kFloat, kHalf, kBFloat16, kDouble, kLong, kInt, kShort, kChar, kByte,
                        kBool };

struct StorageType {
  const char* name;
  SourceType type;
  int element_size;
  const char* torch_dtype;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", SourceType::kFloat, 4, "float32"},
    {"HalfStorage", SourceType::kHalf, 2, "float16"},
    {"BFloat16Storage", SourceType::kBFloat16, 2, "bfloat16"},
    {"DoubleStorage", SourceType::kDouble, 8, "float64"},
    {"LongStorage", SourceType::kLong, 8, "int64"},
    {"IntStorage", SourceType::kInt, 4, "int32"},
    {"ShortStorage", SourceType::kShort, 2, "int16"},
    {"CharStorage", SourceType::kChar, 1, "int8"},
    {"ByteStorage", SourceType::kByte, 1, "uint8"},
    {"BoolStorage", SourceType::kBool, 1, "bool"},
};

const StorageType* FindStorageType(const std::string& name) {
  for (const StorageType& t : kStorageTypes) {
    if (name == t.name) return &t;
  }
  return nullptr;
}

DType TargetDType(SourceType type) {
  switch (type) {
    case SourceType::kFloat:
    case SourceType::kHalf:
    case SourceType::kBFloat16:
    case SourceType::kDouble:
      return DType::kFloat32;
    case SourceType::kLong:
    case SourceType::kInt:
    case SourceType::kShort:
      return DType::kInt32;
    case SourceType::kChar:
      return DType::kInt8;
    case SourceType::kByte:
    case SourceType::kBool:
      return DType::kUInt8;
  }
  return DType::kFloat32;
}

// IEEE binary16 -> binary32, exact (every half is a float).
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {  // inf / NaN (payload kept)
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal half: mantissa * 2^-24, a normal float
    float v = static_cast<float>(mantissa) * 0x1p-24f;
    std::memcpy(&bits, &v, sizeof(bits));
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

float BFloat16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// Visits the storage element index of every tensor element in row-major order.
template <typename Visit>
void ForEachSourceIndex(const TensorRef& t, int64_t numel, Visit visit) {
  const int rank = static_cast<int>(t.sizes.size());
  std::vector<int64_t> index(rank, 0);
  int64_t source = t.storage_offset;
  for (int64_t n = 0; n < numel; ++n) {
    visit(n, source);
    for (int d = rank - 1; d >= 0; --d) {
      if (++index[d] < t.sizes[d]) {
        source += t.strides[d];
        break;
      }
      source -= t.strides[d] * (t.sizes[d] - 1);
      index[d] = 0;
    }
  }
}

template <typename Src>
Src LoadElement(const std::string& bytes, int64_t index) {
  Src v;
  std::memcpy(&v, bytes.data() + index * static_cast<int64_t>(sizeof(Src)), sizeof(Src));
  return v;
}

// Copies (and converts) the elements of `t` from `bytes` into `out` of TargetDType(type).
// Returns false (leaving `out` unspecified) when an integer does not fit int32.
template <typename Src, typename Dst, typename Convert>
bool GatherAs(const std::string& bytes, const TensorRef& t, int64_t numel, Tensor& out,
              Convert convert) {
  Dst* dst = out.data<Dst>();
  bool fits = true;
  ForEachSourceIndex(t, numel, [&](int64_t n, int64_t source) {
    const Src v = LoadElement<Src>(bytes, source);
    if constexpr (std::is_integral_v<Src> && std::is_same_v<Dst, int32_t> &&
                  sizeof(Src) > sizeof(int32_t)) {
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        fits = false;
      }
    }
    dst[n] = convert(v);
  });
  return fits;
}

bool Gather(const std::string& bytes, SourceType type, const TensorRef& t, int64_t numel,
            Tensor& out) {
  auto same = [](auto v) { return v; };
  switch (type) {
    case SourceType::kFloat: return GatherAs<float, float>(bytes, t, numel, out, same);
    case SourceType::kHalf: return GatherAs<uint16_t, float>(bytes, t, numel, out, HalfToFloat);
    case SourceType::kBFloat16:
      return GatherAs<uint16_t, float>(bytes, t, numel, out, BFloat16ToFloat);
    case SourceType::kDouble:
      return GatherAs<double, float>(bytes, t, numel, out,
                                     [](double v) { return static_cast<float>(v); });
    case SourceType::kLong:
      return GatherAs<int64_t, int32_t>(bytes, t, numel, out,
                                        [](int64_t v) { return static_cast<int32_t>(v); });
    case SourceType::kInt: return GatherAs<int32_t, int32_t>(bytes, t, numel, out, same);
    case SourceType::kShort:
      return GatherAs<int16_t, int32_t>(bytes, t, numel, out,
                                        [](int16_t v) { return static_cast<int32_t>(v); });
    case SourceType::kChar: return GatherAs<int8_t, int8_t>(bytes, t, numel, out, same);
    case SourceType::kByte: return GatherAs<uint8_t, uint8_t>(bytes, t, numel, out, same);
    case SourceType::kBool:
      return GatherAs<uint8_t, uint8_t>(bytes, t, numel, out,
                                        [](uint8_t v) { return static_cast<uint8_t>(v != 0); });
  }
  return false;
}

// ---- the object graph ----

class Builder {
 public:
  Builder(const std::string& path, const ZipArchive& zip, std::string prefix, Unpickled pickled,
          const PthOptions& options, PthReport* report)
      : path_(path), zip_(zip), prefix_(std::move(prefix)), u_(std::move(pickled)),
        options_(options), report_(report) {}

  absl::StatusOr<TensorDict> Build();

 private:
  const PyObject& At(int id) const { return u_.objects[id]; }
  bool IsStateDict(int id) const;
  std::string Describe(int id) const;
  absl::StatusOr<const std::string*> StorageBytes(const StorageRef& s, const StorageType& type);
  // The tensor `name`; nullopt when it was skipped (recorded in the report).
  absl::StatusOr<std::optional<Tensor>> MakeTensor(const std::string& name, const TensorRef& t);

  const std::string& path_;
  const ZipArchive& zip_;
  const std::string prefix_;
  const Unpickled u_;
  const PthOptions& options_;
  PthReport* report_;
  std::map<std::string, std::string> storages_;  // key -> bytes, each entry read once
};

bool Builder::IsStateDict(int id) const {
  const PyObject& o = At(id);
  if (o.kind != PyKind::kDict || o.entries.empty()) return false;
  bool any_tensor = false;
  for (const auto& [key, value] : o.entries) {
    if (At(key).kind != PyKind::kString) return false;
    any_tensor |= At(value).kind == PyKind::kTensor;
  }
  return any_tensor;
}

std::string Builder::Describe(int id) const {
  const PyObject& o = At(id);
  switch (o.kind) {
    case PyKind::kInt: return absl::StrCat("int ", o.integer);
    case PyKind::kFloat: return absl::StrCat("float ", o.real);
    case PyKind::kString: return absl::StrCat("string '", o.text.substr(0, 40), "'");
    case PyKind::kBool: return o.boolean ? "True" : "False";
    case PyKind::kDict: return absl::StrCat("dict of ", o.entries.size());
    case PyKind::kList:
    case PyKind::kTuple: return absl::StrCat(PyKindName(o.kind), " of ", o.items.size());
    default: return std::string(PyKindName(o.kind));
  }
}

absl::StatusOr<const std::string*> Builder::StorageBytes(const StorageRef& s,
                                                         const StorageType& type) {
  auto it = storages_.find(s.key);
  if (it != storages_.end()) {
    // A later reference to a storage read before must agree on its size: MakeTensor bounds
    // tensors by the numel of *this* reference, so a second reference claiming more elements
    // (or wider ones) than were read would index past the cached bytes (found by fuzzing).
    const int64_t held = static_cast<int64_t>(it->second.size());
    if (held % type.element_size != 0 || s.numel != held / type.element_size) {
      return absl::DataLossError(absl::StrCat(
          path_, ": storage '", s.key, "' is referenced as ", s.numel, " elements of ", type.name,
          " but holds ", it->second.size(), " bytes"));
    }
    return &it->second;
  }
  if (s.key.empty() || s.key.find('/') != std::string::npos || s.key == "..") {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": bad storage key '", s.key, "'"));
  }
  // The declared size is bounded before it can become an allocation.
  if (s.numel > kMaxTensorBytes / type.element_size) {
    return absl::ResourceExhaustedError(absl::StrCat(
        path_, ": storage '", s.key, "' declares ", s.numel, " elements of ", type.name,
        ", more than the ", kMaxTensorBytes, "-byte tensor limit"));
  }
  QLAB_ASSIGN_OR_RETURN(std::string bytes,
                        zip_.Read(prefix_ + "data/" + s.key, s.numel * type.element_size));
  return &storages_.emplace(s.key, std::move(bytes)).first->second;
}

absl::StatusOr<std::optional<Tensor>> Builder::MakeTensor(const std::string& name,
                                                          const TensorRef& t) {
  const StorageRef& s = At(t.storage).storage;
  const StorageType* type = FindStorageType(s.type);
  if (type == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor ", name, " has unknown storage type ", s.type));
  }
  if (t.sizes.size() != t.strides.size() || t.sizes.size() > static_cast<size_t>(kMaxRank)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor ", name, " has ",
                                                   t.sizes.size(), " sizes and ",
                                                   t.strides.size(), " strides"));
  }
  Shape shape(t.sizes.begin(), t.sizes.end());
  const DType dtype = TargetDType(type->type);
  absl::StatusOr<int64_t> numel = CheckedNumElements(dtype, shape, Layout::kRowMajor);
  if (!numel.ok()) {
    return absl::Status(numel.status().code(), absl::StrCat(path_, ": tensor ", name, ": ",
                                                            numel.status().message()));
  }
  // Every element must lie inside the storage: offset + sum((size - 1) * stride) < numel(storage),
  // computed in 128 bits so hostile strides cannot wrap around.
  if (t.storage_offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor ", name, " has negative storage offset"));
  }
  if (*numel > 0) {
    __int128 last = t.storage_offset;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      if (t.strides[d] < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": tensor ", name, " has negative stride ", t.strides[d]));
      }
      last += static_cast<__int128>(t.sizes[d] - 1) * t.strides[d];
    }
    if (last >= s.numel) {
      return absl::DataLossError(absl::StrCat(
          path_, ": tensor ", name, " ", ShapeString(shape), " at offset ", t.storage_offset,
          " reaches element ", static_cast<int64_t>(std::min<__int128>(last, INT64_MAX)),
          " of storage '", s.key, "', which has ", s.numel));
    }
  }
  QLAB_ASSIGN_OR_RETURN(const std::string* bytes, StorageBytes(s, *type));
  QLAB_ASSIGN_OR_RETURN(Tensor tensor, Tensor::Create(dtype, shape));
  if (!Gather(*bytes, type->type, t, *numel, tensor)) {
    if (report_ != nullptr) {
      report_->skipped.push_back(absl::StrCat(name, ": ", type->torch_dtype,
                                              " values do not fit int32"));
    }
    return std::nullopt;
  }
  if (report_ != nullptr && type->type != SourceType::kFloat && type->type != SourceType::kInt &&
      type->type != SourceType::kChar && type->type != SourceType::kByte) {
    report_->converted.push_back(
        absl::StrCat(name, ": ", type->torch_dtype, " -> ", DTypeName(dtype)));
  }
  return tensor;
}

absl::StatusOr<TensorDict> Builder::Build() {
  int state_dict = -1;
  const PyObject& root = At(u_.root);
  if (IsStateDict(u_.root)) {
    state_dict = u_.root;
  } else if (root.kind == PyKind::kDict) {
    std::vector<std::string> keys;
    for (const char* wanted : {"state_dict", "model_state_dict", "model", "net"}) {
      for (const auto& [key, value] : root.entries) {
        if (state_dict < 0 && At(key).kind == PyKind::kString && At(key).text == wanted &&
            IsStateDict(value)) {
          state_dict = value;
          if (report_ != nullptr) report_->state_dict_path = wanted;
        }
      }
    }
    for (const auto& [key, value] : root.entries) {
      keys.push_back(At(key).kind == PyKind::kString ? At(key).text : Describe(key));
      if (value != state_dict && report_ != nullptr) {
        report_->ignored.push_back(absl::StrCat(keys.back(), " (", Describe(value), ")"));
      }
    }
    if (state_dict < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path_, ": no state_dict found: the top-level dict has keys [", absl::StrJoin(keys, ", "),
          "] and none of state_dict/model_state_dict/model/net holds tensors"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path_, ": the saved object is a ", PyKindName(root.kind), ", not a state_dict"));
  }

  TensorDict tensors;
  for (const auto& [key, value] : At(state_dict).entries) {
    std::string name = At(key).text;
    if (options_.strip_module_prefix && absl::StartsWith(name, "module.")) {
      name = name.substr(7);
    }
    if (At(value).kind != PyKind::kTensor) {
      if (report_ != nullptr) report_->ignored.push_back(absl::StrCat(name, " (", Describe(value), ")"));
      continue;
    }
    if (tensors.count(name) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": tensor name ", name, " appears twice (after stripping module.)"));
    }
    QLAB_ASSIGN_OR_RETURN(std::optional<Tensor> tensor, MakeTensor(name, At(value).tensor));
    if (tensor.has_value()) tensors.emplace(name, *std::move(tensor));
  }
  return tensors;
}

}  // namespace

absl::StatusOr<TensorDict> LoadPth(const std::string& path, const PthOptions& options,
                                   PthReport* report) {
  QLAB_RETURN_IF_ERROR(CheckFormat(path));
  QLAB_ASSIGN_OR_RETURN(std::unique_ptr<ZipArchive> zip, ZipArchive::Open(path));
  QLAB_ASSIGN_OR_RETURN(const std::string prefix, FindPrefix(*zip, path));
  if (zip->Has(prefix + "byteorder")) {
    QLAB_ASSIGN_OR_RETURN(const int64_t size, zip->Size(prefix + "byteorder"));
    if (size > 16) return absl::DataLossError(absl::StrCat(path, ": oversized byteorder entry"));
    QLAB_ASSIGN_OR_RETURN(const std::string order, zip->Read(prefix + "byteorder", size));
    if (order != "little") {
      return absl::UnimplementedError(
          absl::StrCat(path, ": storages saved with byteorder '", order, "'; only little"));
    }
  }
  const std::string pickle_entry = prefix + "data.pkl";
  QLAB_ASSIGN_OR_RETURN(const int64_t pickle_size, zip->Size(pickle_entry));
  if (pickle_size > options.max_pickle_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": ", pickle_entry, " has ",
                                                     pickle_size, " bytes, more than ",
                                                     options.max_pickle_bytes));
  }
  QLAB_ASSIGN_OR_RETURN(const std::string pickle, zip->Read(pickle_entry, pickle_size));
  QLAB_ASSIGN_OR_RETURN(Unpickled unpickled,
                        RestrictedUnpickle(pickle, absl::StrCat(path, ":", pickle_entry)));
  if (report != nullptr) *report = PthReport{};
  return Builder(path, *zip, prefix, std::move(unpickled), options, report).Build();
}

}  // namespace qlab::pth
