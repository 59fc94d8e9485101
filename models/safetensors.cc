// safetensors reader/writer: header validation, dtype conversions and atomic writing.
//
// The parser works in two steps so that the file path and the in-memory path share every check:
// ParseHeader turns the header text into validated entries (name, dtype, shape, byte range)
// against a known data-section size, then the bytes of each entry are taken from memory or read
// from the file. Nothing is allocated from a size the file states before that size has been
// checked against the real file size.
#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/interrupt.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace qlab {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian bytes; qlab copies them as they are");

namespace {

using json = nlohmann::json;

struct DTypeInfo {
  SafetensorsDType dtype;
  const char* name;
  int size;
};

constexpr DTypeInfo kDTypes[] = {
    {SafetensorsDType::kBool, "BOOL", 1},      {SafetensorsDType::kU8, "U8", 1},
    {SafetensorsDType::kI8, "I8", 1},          {SafetensorsDType::kF8E5M2, "F8_E5M2", 1},
    {SafetensorsDType::kF8E4M3, "F8_E4M3", 1}, {SafetensorsDType::kI16, "I16", 2},
    {SafetensorsDType::kU16, "U16", 2},        {SafetensorsDType::kF16, "F16", 2},
    {SafetensorsDType::kBF16, "BF16", 2},      {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kU32, "U32", 4},        {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF64, "F64", 8},        {SafetensorsDType::kI64, "I64", 8},
    {SafetensorsDType::kU64, "U64", 8},
};

const DTypeInfo& Info(SafetensorsDType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  QLAB_CHECK_MSG(false, "SafetensorsDType value outside the enum");
  return kDTypes[0];
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// numel × element size, or an error naming the tensor when the product overflows.
absl::StatusOr<uint64_t> ByteSize(absl::string_view name, SafetensorsDType dtype,
                                  const std::vector<int64_t>& shape) {
  uint64_t bytes = static_cast<uint64_t>(SafetensorsDTypeSize(dtype));
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name), ": shape ",
                                                     ShapeText(shape), " has a negative size"));
    }
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name), ": shape ",
                                                     ShapeText(shape), " overflows 64 bits"));
    }
  }
  return bytes;
}

// --- Header parsing ------------------------------------------------------------------------

struct Entry {
  std::string name;
  SafetensorsDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by (begin, end)
  std::map<std::string, std::string> metadata;
};

// nlohmann::json keeps the last of duplicate keys silently; a weight file whose "conv1.weight"
// appears twice is ambiguous, so the parse callback records the first duplicate at any depth.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys_.empty()) keys_.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys_.empty() && parsed.is_string()) {
          const std::string& key = parsed.get_ref<const std::string&>();
          if (!keys_.back().insert(key).second && duplicate_->empty()) *duplicate_ = key;
        }
        break;
      default:
        break;
    }
    return true;
  }
  explicit DuplicateKeyFinder(std::string* duplicate) : duplicate_(duplicate) {}

 private:
  std::vector<std::set<std::string>> keys_;
  std::string* duplicate_;
};

absl::StatusOr<std::vector<int64_t>> ParseShape(const std::string& name, const json& value) {
  if (!value.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name),
                                                   ": \"shape\" must be an array, got ",
                                                   value.dump()));
  }
  if (value.size() > static_cast<size_t>(kMaxRank)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name), ": rank ",
                                                   value.size(), " exceeds qlab's maximum ",
                                                   kMaxRank));
  }
  std::vector<int64_t> shape;
  for (const json& d : value) {
    // Non-negative JSON integers parse as number_unsigned; negatives and fractions do not.
    if (!d.is_number_unsigned() ||
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(name), ": shape ", value.dump(),
          " must hold non-negative integers, got ", d.dump()));
    }
    shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  return shape;
}

absl::StatusOr<Entry> ParseEntry(const std::string& name, const json& value) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name),
                                                   ": entry must be an object, got ",
                                                   value.dump()));
  }
  for (const auto& [key, unused] : value.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(name), ": unknown field ", Quoted(key),
          " (an entry has exactly \"dtype\", \"shape\" and \"data_offsets\")"));
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", Quoted(name), ": missing field ", Quoted(key)));
    }
  }
  Entry e;
  e.name = name;
  const json& dtype = value["dtype"];
  if (!dtype.is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor ", Quoted(name), ": \"dtype\" must be a string, got ", dtype.dump()));
  }
  absl::StatusOr<SafetensorsDType> parsed = ParseSafetensorsDType(dtype.get<std::string>());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", Quoted(name), ": ", parsed.status().message()));
  }
  e.dtype = *parsed;
  QLAB_ASSIGN_OR_RETURN(e.shape, ParseShape(name, value["shape"]));
  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor ", Quoted(name),
                     ": \"data_offsets\" must be [begin, end] (non-negative integers), got ",
                     offsets.dump()));
  }
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.begin > e.end) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(name), ": data_offsets [",
                                                   e.begin, ",", e.end, "] end before begin"));
  }
  QLAB_ASSIGN_OR_RETURN(const uint64_t bytes, ByteSize(name, e.dtype, e.shape));
  if (bytes != e.end - e.begin) {
    return absl::DataLossError(absl::StrCat(
        "tensor ", Quoted(name), ": dtype ", SafetensorsDTypeName(e.dtype), " x shape ",
        ShapeText(e.shape), " is ", bytes, " bytes but data_offsets [", e.begin, ",", e.end,
        "] span ", e.end - e.begin));
  }
  return e;
}

absl::StatusOr<std::map<std::string, std::string>> ParseMetadata(const json& value) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"__metadata__\" must be an object of strings, got ", value.dump()));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("\"__metadata__\" value of ", Quoted(key),
                                                     " must be a string, got ", v.dump()));
    }
    metadata[key] = v.get<std::string>();
  }
  return metadata;
}

// Validates the header text against a data section of `data_size` bytes.
absl::StatusOr<Header> ParseHeader(absl::string_view text, uint64_t data_size) {
  // The reference implementation requires the header to start with '{' (no leading padding).
  if (text.empty() || text[0] != '{') {
    return absl::InvalidArgumentError(
        "safetensors header must be a JSON object starting with '{'");
  }
  std::string duplicate;
  const json root = json::parse(text.begin(), text.end(), DuplicateKeyFinder(&duplicate),
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors header (", text.size(), " bytes) is not well-formed JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError("safetensors header must be a JSON object");
  }
  if (!duplicate.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors header names ", Quoted(duplicate), " more than once"));
  }
  Header header;
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      QLAB_ASSIGN_OR_RETURN(header.metadata, ParseMetadata(value));
      continue;
    }
    if (name.empty()) return absl::InvalidArgumentError("tensor with an empty name");
    QLAB_ASSIGN_OR_RETURN(Entry e, ParseEntry(name, value));
    if (e.end > data_size) {
      return absl::DataLossError(absl::StrCat(
          "tensor ", Quoted(name), ": data_offsets [", e.begin, ",", e.end,
          "] reach past the end of the data section (", data_size, " bytes): file truncated?"));
    }
    header.entries.push_back(std::move(e));
  }
  std::sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Contiguous cover of the data section, as the reference implementation demands: an overlap
  // means two tensors alias the same bytes, a hole means bytes nobody accounts for.
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : header.entries) {
    if (e.begin < covered) {
      return absl::DataLossError(absl::StrCat(
          "tensor ", Quoted(e.name), ": data_offsets [", e.begin, ",", e.end,
          "] overlap tensor ", Quoted(previous->name), " ending at ", covered));
    }
    if (e.begin > covered) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(e.name), ": data_offsets [", e.begin, ",", e.end, "] leave bytes [",
          covered, ",", e.begin, ") of the data section unused"));
    }
    if (e.end > e.begin || previous == nullptr) previous = &e;
    covered = e.end;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(absl::StrCat("data section is ", data_size,
                                                   " bytes but the tensors cover only ", covered));
  }
  return header;
}

uint64_t ReadU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

absl::Status CheckHeaderLength(uint64_t header_length, uint64_t file_size) {
  if (header_length > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors header length ", header_length,
                                                   " exceeds the limit of ",
                                                   kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_length > file_size - 8) {
    return absl::DataLossError(absl::StrCat("safetensors header length ", header_length,
                                            " reaches past the end of the file (", file_size,
                                            " bytes): file truncated?"));
  }
  return absl::OkStatus();
}

absl::Status CheckFileSize(uint64_t file_size) {
  if (file_size < 8) {
    return absl::DataLossError(absl::StrCat(
        "safetensors file is ", file_size, " bytes, shorter than its 8-byte header length"));
  }
  return absl::OkStatus();
}

// --- Element conversions -------------------------------------------------------------------

float FloatFromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
uint32_t BitsFromFloat(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Exact in float32.
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) return FloatFromBits(sign | 0x7F800000 | (mantissa << 13));  // inf/NaN
  if (exponent == 0) {
    // Zero or subnormal: mantissa × 2^-24, exact in float32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  return FloatFromBits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even; overflow to ±inf; NaN stays a (quiet) NaN.
uint16_t FloatToHalf(float f) {
  const uint32_t bits = BitsFromFloat(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t magnitude = bits & 0x7FFFFFFF;
  if (magnitude >= 0x7F800000) {
    return sign | (magnitude > 0x7F800000 ? 0x7E00 : 0x7C00);
  }
  // 65520 (0x477FF000) is halfway between 65504, the largest half, and 2^16: ties to even go up.
  if (magnitude >= 0x477FF000) return sign | 0x7C00;
  if (magnitude < 0x38800000) {
    // Below 2^-14: a subnormal half, value k × 2^-24. Scaling by 2^24 is exact, and nearbyint
    // rounds to nearest-even in the default rounding mode; k = 1024 is the smallest normal.
    const float scaled = std::ldexp(FloatFromBits(magnitude), 24);
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t half = (((magnitude >> 23) - 127 + 15) << 10) | ((magnitude >> 13) & 0x3FF);
  const uint32_t rest = magnitude & 0x1FFF;
  // A carry out of the mantissa correctly bumps the exponent (up to inf, excluded above).
  if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) ++half;
  return sign | static_cast<uint16_t>(half);
}

float BFloat16ToFloat(uint16_t b) { return FloatFromBits(static_cast<uint32_t>(b) << 16); }

uint16_t FloatToBFloat16(float f) {
  const uint32_t bits = BitsFromFloat(f);
  if ((bits & 0x7FFFFFFF) > 0x7F800000) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);  // ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// float8 e5m2 is the upper byte of a binary16.
float F8E5M2ToFloat(uint8_t b) { return HalfToFloat(static_cast<uint16_t>(b) << 8); }

// float8 e4m3fn (PyTorch's float8_e4m3fn, the safetensors F8_E4M3): bias 7, no infinities,
// S.1111.111 is NaN, largest 448.
float F8E4M3ToFloat(uint8_t b) {
  const bool negative = (b & 0x80) != 0;
  const int exponent = (b >> 3) & 0xF;
  const int mantissa = b & 0x7;
  float magnitude;
  if (exponent == 0xF && mantissa == 0x7) {
    magnitude = std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -9);
  } else {
    magnitude = std::ldexp(static_cast<float>(8 + mantissa), exponent - 7 - 3);
  }
  return negative ? -magnitude : magnitude;
}

template <typename From>
From LoadElement(const char* bytes, int64_t i) {
  From v;
  std::memcpy(&v, bytes + i * static_cast<int64_t>(sizeof(From)), sizeof(From));
  return v;
}

template <typename From, typename Convert>
void ConvertToFloat(const std::string& bytes, Tensor& out, Convert convert) {
  float* dst = out.data<float>();
  for (int64_t i = 0; i < out.numel(); ++i) dst[i] = convert(LoadElement<From>(bytes.data(), i));
}

// Integers wider than int32 or unsigned 32-bit: kept only if every value fits.
template <typename From>
absl::Status ConvertToInt32(const SafetensorsTensor& stored, Tensor& out) {
  int32_t* dst = out.data<int32_t>();
  for (int64_t i = 0; i < out.numel(); ++i) {
    const From v = LoadElement<From>(stored.bytes.data(), i);
    const bool fits = std::is_signed<From>::value
                          ? (static_cast<int64_t>(v) >= std::numeric_limits<int32_t>::min() &&
                             static_cast<int64_t>(v) <= std::numeric_limits<int32_t>::max())
                          : static_cast<uint64_t>(v) <=
                                static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
    if (!fits) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(stored.name), ": ", SafetensorsDTypeName(stored.dtype),
          " element ", i, " = ", v, " does not fit qlab's int32 (no 64-bit integer dtype)"));
    }
    dst[i] = static_cast<int32_t>(v);
  }
  return absl::OkStatus();
}

DType QlabDTypeFor(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::kBool:
    case SafetensorsDType::kU8:
      return DType::kUInt8;
    case SafetensorsDType::kI8:
      return DType::kInt8;
    case SafetensorsDType::kI16:
    case SafetensorsDType::kU16:
    case SafetensorsDType::kI32:
    case SafetensorsDType::kU32:
    case SafetensorsDType::kI64:
    case SafetensorsDType::kU64:
      return DType::kInt32;
    default:
      return DType::kFloat32;
  }
}

// UTF-8 well-formedness (RFC 3629: no overlongs, no surrogates, ≤ U+10FFFF), checked before
// nlohmann::json dumps a name, which would otherwise throw on invalid UTF-8.
bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // truncated sequence
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string ErrnoText() { return std::strerror(errno); }

// Writes all of `data` to `fd`, retrying short writes.
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("writing ", path, ": ", ErrnoText()));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes at `offset`.
absl::Status ReadAt(int fd, uint64_t offset, char* out, uint64_t size, const std::string& path) {
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat("reading ", path, ": ", ErrnoText()));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path, " shrank while being read (at byte ", offset + done, ")"));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

class FileCloser {
 public:
  explicit FileCloser(int fd) : fd_(fd) {}
  ~FileCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileCloser(const FileCloser&) = delete;
  FileCloser& operator=(const FileCloser&) = delete;

 private:
  int fd_;
};

}  // namespace

absl::string_view SafetensorsDTypeName(SafetensorsDType dtype) { return Info(dtype).name; }

int SafetensorsDTypeSize(SafetensorsDType dtype) { return Info(dtype).size; }

absl::StatusOr<SafetensorsDType> ParseSafetensorsDType(absl::string_view name) {
  std::vector<std::string> known;
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
    known.push_back(info.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown safetensors dtype ", Quoted(name),
                                                 " (known: ", absl::StrJoin(known, ", "), ")"));
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(absl::string_view file_bytes) {
  QLAB_RETURN_IF_ERROR(CheckFileSize(file_bytes.size()));
  const uint64_t header_length = ReadU64(file_bytes.data());
  QLAB_RETURN_IF_ERROR(CheckHeaderLength(header_length, file_bytes.size()));
  const absl::string_view data = file_bytes.substr(8 + header_length);
  QLAB_ASSIGN_OR_RETURN(Header header,
                        ParseHeader(file_bytes.substr(8, header_length), data.size()));
  SafetensorsFile file;
  file.metadata = std::move(header.metadata);
  for (Entry& e : header.entries) {
    file.tensors.push_back(SafetensorsTensor{std::move(e.name), e.dtype, std::move(e.shape),
                                             std::string(data.substr(e.begin, e.end - e.begin))});
  }
  return file;
}

absl::StatusOr<SafetensorsFile> ReadSafetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open safetensors file ", path, ": ",
                                            ErrnoText()));
  }
  FileCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  absl::Status status = CheckFileSize(file_size);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  char length_bytes[8];
  QLAB_RETURN_IF_ERROR(ReadAt(fd, 0, length_bytes, 8, path));
  const uint64_t header_length = ReadU64(length_bytes);
  status = CheckHeaderLength(header_length, file_size);
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  std::string header_text(header_length, '\0');
  QLAB_RETURN_IF_ERROR(ReadAt(fd, 8, header_text.data(), header_length, path));
  const uint64_t data_start = 8 + header_length;
  absl::StatusOr<Header> header = ParseHeader(header_text, file_size - data_start);
  if (!header.ok()) {
    return absl::Status(header.status().code(),
                        absl::StrCat(path, ": ", header.status().message()));
  }
  SafetensorsFile file;
  file.metadata = std::move(header->metadata);
  for (Entry& e : header->entries) {
    // e.end <= data size <= the real file size, checked in ParseHeader: a bounded allocation.
    SafetensorsTensor t{std::move(e.name), e.dtype, std::move(e.shape),
                        std::string(e.end - e.begin, '\0')};
    QLAB_RETURN_IF_ERROR(ReadAt(fd, data_start + e.begin, t.bytes.data(), t.bytes.size(), path));
    file.tensors.push_back(std::move(t));
  }
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(const SafetensorsFile& file) {
  std::vector<const SafetensorsTensor*> order;
  std::set<absl::string_view> names;
  for (const SafetensorsTensor& t : file.tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !IsValidUtf8(t.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor name ", Quoted(t.name),
          " is not allowed (empty, \"__metadata__\" or not UTF-8)"));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", Quoted(t.name), " appears more than once"));
    }
    if (t.shape.size() > static_cast<size_t>(kMaxRank)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", Quoted(t.name), ": rank ",
                                                     t.shape.size(), " exceeds ", kMaxRank));
    }
    QLAB_ASSIGN_OR_RETURN(const uint64_t bytes, ByteSize(t.name, t.dtype, t.shape));
    if (bytes != t.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(t.name), ": dtype ", SafetensorsDTypeName(t.dtype), " x shape ",
          ShapeText(t.shape), " is ", bytes, " bytes but ", t.bytes.size(), " were given"));
    }
    order.push_back(&t);
  }
  for (const auto& [key, value] : file.metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata entry ", Quoted(key), " is not valid UTF-8"));
    }
  }
  // Larger elements first, then by name: every tensor then starts at a multiple of its element
  // size (the data section itself starts 8-aligned), as in the reference writer.
  std::sort(order.begin(), order.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
    const int sa = SafetensorsDTypeSize(a->dtype), sb = SafetensorsDTypeSize(b->dtype);
    return sa != sb ? sa > sb : a->name < b->name;
  });
  json header = json::object();
  if (!file.metadata.empty()) {
    json metadata = json::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header["__metadata__"] = std::move(metadata);
  }
  uint64_t offset = 0;
  for (const SafetensorsTensor* t : order) {
    header[t->name] = {{"dtype", std::string(SafetensorsDTypeName(t->dtype))},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes.size()}}};
    offset += t->bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t length = text.size();
  out.append(reinterpret_cast<const char*>(&length), 8);
  out += text;
  for (const SafetensorsTensor* t : order) out += t->bytes;
  return out;
}

absl::Status WriteSafetensors(const std::string& path, const SafetensorsFile& file,
                              const WriteOptions& options) {
  QLAB_ASSIGN_OR_RETURN(const std::string bytes, SerializeSafetensors(file));
  if (!options.overwrite && ::access(path.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " exists (set WriteOptions::overwrite to replace it)"));
  }
  // Ctrl-C waits for the rename (or the cleanup), so no temporary is left behind.
  const CriticalWrite critical;
  // The temporary file sits beside the destination so that rename/link stay on one filesystem.
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create a temporary file beside ", path, ": ", ErrnoText()));
  }
  absl::Status status = WriteAll(fd, bytes, tmp);
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::InternalError(absl::StrCat("fsync ", tmp, ": ", ErrnoText()));
  }
  ::fchmod(fd, 0644);  // mkstemp creates 0600; weight files are meant to be shared
  if (::close(fd) != 0 && status.ok()) {
    status = absl::InternalError(absl::StrCat("closing ", tmp, ": ", ErrnoText()));
  }
  if (status.ok()) {
    if (options.overwrite) {
      if (::rename(tmp.c_str(), path.c_str()) != 0) {
        status = absl::InternalError(absl::StrCat("rename to ", path, ": ", ErrnoText()));
      }
    } else if (::link(tmp.c_str(), path.c_str()) != 0) {
      // link() fails if the destination exists, closing the race with the access() above; a
      // filesystem without hard links falls back to rename after that check.
      if (errno == EEXIST) {
        status = absl::AlreadyExistsError(
            absl::StrCat(path, " exists (set WriteOptions::overwrite to replace it)"));
      } else if (::rename(tmp.c_str(), path.c_str()) != 0) {
        status = absl::InternalError(absl::StrCat("rename to ", path, ": ", ErrnoText()));
      }
    }
  }
  ::unlink(tmp.c_str());  // after link() or a failure; after rename it is already gone
  return status;
}

absl::StatusOr<Tensor> ToTensor(const SafetensorsTensor& stored) {
  QLAB_ASSIGN_OR_RETURN(const uint64_t bytes, ByteSize(stored.name, stored.dtype, stored.shape));
  if (bytes != stored.bytes.size()) {
    return absl::DataLossError(absl::StrCat("tensor ", Quoted(stored.name), ": holds ",
                                            stored.bytes.size(), " bytes, its dtype and shape ",
                                            ShapeText(stored.shape), " need ", bytes));
  }
  absl::StatusOr<Tensor> created = Tensor::Create(
      QlabDTypeFor(stored.dtype), Shape(stored.shape.begin(), stored.shape.end()));
  if (!created.ok()) {
    return absl::Status(created.status().code(), absl::StrCat("tensor ", Quoted(stored.name),
                                                              ": ", created.status().message()));
  }
  Tensor out = *std::move(created);
  const std::string& b = stored.bytes;
  switch (stored.dtype) {
    case SafetensorsDType::kF32:
    case SafetensorsDType::kU8:
    case SafetensorsDType::kI8:
    case SafetensorsDType::kI32:
      std::memcpy(out.raw_data(), b.data(), b.size());
      break;
    case SafetensorsDType::kBool:
      for (int64_t i = 0; i < out.numel(); ++i) {
        const uint8_t v = static_cast<uint8_t>(b[i]);
        if (v > 1) {
          return absl::DataLossError(absl::StrCat("tensor ", Quoted(stored.name),
                                                  ": BOOL element ", i, " is byte ", int{v},
                                                  ", not 0 or 1"));
        }
        out.data<uint8_t>()[i] = v;
      }
      break;
    case SafetensorsDType::kF64:
      // Rounds to nearest; magnitudes beyond float32's range become ±inf, as torch's .float().
      ConvertToFloat<double>(b, out, [](double v) { return static_cast<float>(v); });
      break;
    case SafetensorsDType::kF16:
      ConvertToFloat<uint16_t>(b, out, HalfToFloat);
      break;
    case SafetensorsDType::kBF16:
      ConvertToFloat<uint16_t>(b, out, BFloat16ToFloat);
      break;
    case SafetensorsDType::kF8E5M2:
      ConvertToFloat<uint8_t>(b, out, F8E5M2ToFloat);
      break;
    case SafetensorsDType::kF8E4M3:
      ConvertToFloat<uint8_t>(b, out, F8E4M3ToFloat);
      break;
    case SafetensorsDType::kI16:
      for (int64_t i = 0; i < out.numel(); ++i) {
        out.data<int32_t>()[i] = LoadElement<int16_t>(b.data(), i);
      }
      break;
    case SafetensorsDType::kU16:
      for (int64_t i = 0; i < out.numel(); ++i) {
        out.data<int32_t>()[i] = LoadElement<uint16_t>(b.data(), i);
      }
      break;
    case SafetensorsDType::kU32:
      QLAB_RETURN_IF_ERROR(ConvertToInt32<uint32_t>(stored, out));
      break;
    case SafetensorsDType::kI64:
      QLAB_RETURN_IF_ERROR(ConvertToInt32<int64_t>(stored, out));
      break;
    case SafetensorsDType::kU64:
      QLAB_RETURN_IF_ERROR(ConvertToInt32<uint64_t>(stored, out));
      break;
  }
  return out;
}

absl::StatusOr<SafetensorsTensor> FromTensor(std::string name, const Tensor& tensor,
                                             SafetensorsDType float_dtype) {
  SafetensorsTensor t;
  t.name = std::move(name);
  t.shape.assign(tensor.shape().begin(), tensor.shape().end());
  const char* raw = static_cast<const char*>(tensor.raw_data());
  switch (tensor.dtype()) {
    case DType::kInt8:
      t.dtype = SafetensorsDType::kI8;
      t.bytes.assign(raw, tensor.nbytes());
      return t;
    case DType::kUInt8:
      t.dtype = SafetensorsDType::kU8;
      t.bytes.assign(raw, tensor.nbytes());
      return t;
    case DType::kInt32:
      t.dtype = SafetensorsDType::kI32;
      t.bytes.assign(raw, tensor.nbytes());
      return t;
    case DType::kFloat32:
      break;
  }
  t.dtype = float_dtype;
  const float* src = tensor.data<float>();
  const int64_t n = tensor.numel();
  switch (float_dtype) {
    case SafetensorsDType::kF32:
      t.bytes.assign(raw, tensor.nbytes());
      return t;
    case SafetensorsDType::kF64:
      t.bytes.resize(n * 8);
      for (int64_t i = 0; i < n; ++i) {
        const double v = src[i];
        std::memcpy(&t.bytes[i * 8], &v, 8);
      }
      return t;
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16:
      t.bytes.resize(n * 2);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t v = float_dtype == SafetensorsDType::kF16 ? FloatToHalf(src[i])
                                                                 : FloatToBFloat16(src[i]);
        std::memcpy(&t.bytes[i * 2], &v, 2);
      }
      return t;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", Quoted(t.name), ": float32 can be saved as F32, F64, F16 or BF16, not ",
          SafetensorsDTypeName(float_dtype)));
  }
}

absl::StatusOr<LoadedSafetensors> LoadSafetensors(const std::string& path) {
  QLAB_ASSIGN_OR_RETURN(SafetensorsFile file, ReadSafetensors(path));
  LoadedSafetensors loaded;
  loaded.metadata = std::move(file.metadata);
  for (SafetensorsTensor& stored : file.tensors) {
    absl::StatusOr<Tensor> t = ToTensor(stored);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
    }
    loaded.tensors.emplace(stored.name, *std::move(t));
    stored.bytes = std::string();  // keeps peak memory near one copy of the weights
  }
  return loaded;
}

absl::Status SaveSafetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                             const std::map<std::string, std::string>& metadata,
                             const SaveOptions& options) {
  SafetensorsFile file;
  file.metadata = metadata;
  for (const auto& [name, tensor] : tensors) {
    QLAB_ASSIGN_OR_RETURN(SafetensorsTensor t, FromTensor(name, tensor, options.float_dtype));
    file.tensors.push_back(std::move(t));
  }
  return WriteSafetensors(path, file, options.write);
}

}  // namespace qlab
