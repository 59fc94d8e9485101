// Shared plumbing of the calibration/ observers: input checks, the NaN/Inf policy, channel axis
// resolution, spec number formatting, and the helpers that encode and decode observer state
// (JSON fields and the little binary payload of floats and integers).
//
// Every observer applies the same rules in the same words, so they live here once: a tensor is
// checked once per Observe call before any kernel runs, and malformed saved state is DataLoss
// naming the field, whichever observer reads it. Package-private: not part of the public API.
#ifndef QLAB_CALIBRATION_OBSERVER_UTIL_H_
#define QLAB_CALIBRATION_OBSERVER_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration::internal {

// Upper bound on channel counts and histogram bins read from saved state: a file claiming 2^40
// channels is DataLoss, not an allocation attempt.
inline constexpr int64_t kMaxChannels = int64_t{1} << 24;
inline constexpr int64_t kMaxBins = int64_t{1} << 24;

// InvalidArgument unless `x` is a non-empty float32 tensor. `who` (the observer's spec) prefixes
// the message.
absl::Status CheckObservable(const Tensor& x, const std::string& who);

// The non-finite values of a float array: how many, and the first one's flat index and value.
struct NonFiniteScan {
  int64_t count = 0;
  int64_t first_index = -1;
  float first_value = 0.0f;
};
NonFiniteScan ScanNonFinite(const float* x, size_t n);

// The default NaN/Inf policy's error: InvalidArgument naming the count, the first index and the
// option that skips them.
absl::Status NonFiniteError(const std::string& who, const Tensor& x, const NonFiniteScan& scan);

// `axis` (negative counts from the end) resolved against `rank`; InvalidArgument naming both
// when out of range.
absl::StatusOr<int> ResolveAxis(int axis, int rank, const std::string& who);

// The shortest decimal that reads back as the same double ("0.01", not "0.0100000000000000002").
std::string FormatNumber(double v);

// Typed JSON field access for RestoreState: DataLoss naming `field` if missing or mistyped.
absl::StatusOr<int64_t> GetInt(const nlohmann::json& j, const char* field);
absl::StatusOr<double> GetDouble(const nlohmann::json& j, const char* field);
absl::StatusOr<std::string> GetString(const nlohmann::json& j, const char* field);
absl::StatusOr<bool> GetBool(const nlohmann::json& j, const char* field);
// Parses the JSON text of a state restored into an observer of spec `spec`: DataLoss if it is
// not a JSON object or has no string "spec", InvalidArgument if that spec is another observer's.
absl::StatusOr<nlohmann::json> ParseStateJson(const std::string& text, const std::string& spec);

// The binary payload: raw little-endian (the host order on every platform qlab targets) arrays
// appended back to back; the JSON header says how many elements each has.
class PayloadWriter {
 public:
  void Floats(absl::Span<const float> v);
  void Int64s(absl::Span<const int64_t> v);
  void Doubles(absl::Span<const double> v);
  std::string Take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class PayloadReader {
 public:
  explicit PayloadReader(const std::string& bytes) : bytes_(bytes) {}
  // DataLoss naming `field` if fewer than n elements remain.
  absl::StatusOr<std::vector<float>> Floats(size_t n, const char* field);
  absl::StatusOr<std::vector<int64_t>> Int64s(size_t n, const char* field);
  absl::StatusOr<std::vector<double>> Doubles(size_t n, const char* field);
  // DataLoss if bytes remain unread (a payload longer than its header says is malformed too).
  absl::Status ExpectEnd() const;

 private:
  absl::Status Take(size_t bytes, const char* field, void* out);
  const std::string& bytes_;
  size_t offset_ = 0;
};

}  // namespace qlab::calibration::internal

#endif  // QLAB_CALIBRATION_OBSERVER_UTIL_H_
