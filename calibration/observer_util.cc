// Shared observer plumbing: see observer_util.h.
#include "calibration/observer_util.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace qlab::calibration::internal {

absl::Status CheckObservable(const Tensor& x, const std::string& who) {
  if (x.dtype() != DType::kFloat32) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, " observes float32 tensors, got ", x.DebugString()));
  }
  if (x.numel() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, " cannot observe empty tensor ", x.DebugString()));
  }
  return absl::OkStatus();
}

NonFiniteScan ScanNonFinite(const float* x, size_t n) {
  NonFiniteScan scan;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      if (scan.count == 0) {
        scan.first_index = static_cast<int64_t>(i);
        scan.first_value = x[i];
      }
      ++scan.count;
    }
  }
  return scan;
}

absl::Status NonFiniteError(const std::string& who, const Tensor& x, const NonFiniteScan& scan) {
  return absl::InvalidArgumentError(absl::StrCat(
      who, ": ", x.DebugString(), " contains ", scan.count,
      " non-finite values (NaN/Inf), the first at flat index ", scan.first_index, " (",
      scan.first_value, "); create the observer with skip_non_finite to skip and count them"));
}

absl::StatusOr<int> ResolveAxis(int axis, int rank, const std::string& who) {
  const int resolved = axis < 0 ? axis + rank : axis;
  if (resolved < 0 || resolved >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": channel axis ", axis,
                                                   " is out of range for a rank-", rank,
                                                   " tensor"));
  }
  return resolved;
}

std::string FormatNumber(double v) {
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

namespace {
absl::Status FieldError(const char* field, const char* expected) {
  return absl::DataLossError(
      absl::StrCat("observer state: field \"", field, "\" is missing or not ", expected));
}
}  // namespace

absl::StatusOr<int64_t> GetInt(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number_integer()) return FieldError(field, "an integer");
  return it->get<int64_t>();
}

absl::StatusOr<double> GetDouble(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number()) return FieldError(field, "a number");
  return it->get<double>();
}

absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return FieldError(field, "a string");
  return it->get<std::string>();
}

absl::StatusOr<bool> GetBool(const nlohmann::json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_boolean()) return FieldError(field, "a boolean");
  return it->get<bool>();
}

absl::StatusOr<nlohmann::json> ParseStateJson(const std::string& text, const std::string& spec) {
  nlohmann::json j = nlohmann::json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::DataLossError(
        absl::StrCat(spec, " state: the JSON header is not a JSON object"));
  }
  absl::StatusOr<std::string> saved_spec = GetString(j, "spec");
  if (!saved_spec.ok()) return saved_spec.status();
  if (*saved_spec != spec) {
    return absl::InvalidArgumentError(
        absl::StrCat("state of a ", *saved_spec, " observer given to a ", spec, " observer"));
  }
  return j;
}

void PayloadWriter::Floats(absl::Span<const float> v) {
  bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
void PayloadWriter::Int64s(absl::Span<const int64_t> v) {
  bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t));
}
void PayloadWriter::Doubles(absl::Span<const double> v) {
  bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(double));
}

absl::Status PayloadReader::Take(size_t bytes, const char* field, void* out) {
  if (bytes > bytes_.size() - offset_) {
    return absl::DataLossError(absl::StrCat("observer state: binary payload too short for \"",
                                            field, "\": needs ", bytes, " bytes at offset ",
                                            offset_, ", has ", bytes_.size() - offset_));
  }
  if (bytes > 0) std::memcpy(out, bytes_.data() + offset_, bytes);
  offset_ += bytes;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> PayloadReader::Floats(size_t n, const char* field) {
  if (n > static_cast<size_t>(kMaxBins) * 4) {
    return absl::DataLossError(absl::StrCat("observer state: \"", field, "\" claims ", n,
                                            " elements, more than any observer keeps"));
  }
  // Too few bytes left: the error, before allocating for a count the payload cannot back.
  if (n > (bytes_.size() - offset_) / sizeof(float)) {
    return Take(n * sizeof(float), field, nullptr);
  }
  std::vector<float> v(n);
  absl::Status s = Take(n * sizeof(float), field, v.data());
  if (!s.ok()) return s;
  return v;
}

absl::StatusOr<std::vector<int64_t>> PayloadReader::Int64s(size_t n, const char* field) {
  if (n > static_cast<size_t>(kMaxBins) * 4) {
    return absl::DataLossError(absl::StrCat("observer state: \"", field, "\" claims ", n,
                                            " elements, more than any observer keeps"));
  }
  // Too few bytes left: the error, before allocating for a count the payload cannot back.
  if (n > (bytes_.size() - offset_) / sizeof(int64_t)) {
    return Take(n * sizeof(int64_t), field, nullptr);
  }
  std::vector<int64_t> v(n);
  absl::Status s = Take(n * sizeof(int64_t), field, v.data());
  if (!s.ok()) return s;
  return v;
}

absl::StatusOr<std::vector<double>> PayloadReader::Doubles(size_t n, const char* field) {
  if (n > static_cast<size_t>(kMaxBins) * 4) {
    return absl::DataLossError(absl::StrCat("observer state: \"", field, "\" claims ", n,
                                            " elements, more than any observer keeps"));
  }
  // Too few bytes left: the error, before allocating for a count the payload cannot back.
  if (n > (bytes_.size() - offset_) / sizeof(double)) {
    return Take(n * sizeof(double), field, nullptr);
  }
  std::vector<double> v(n);
  absl::Status s = Take(n * sizeof(double), field, v.data());
  if (!s.ok()) return s;
  return v;
}

absl::Status PayloadReader::ExpectEnd() const {
  if (offset_ != bytes_.size()) {
    return absl::DataLossError(absl::StrCat("observer state: binary payload has ",
                                            bytes_.size() - offset_,
                                            " unexpected trailing bytes"));
  }
  return absl::OkStatus();
}

}  // namespace qlab::calibration::internal
