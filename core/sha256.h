// SHA-256 (FIPS 180-4), for the digests every experiment record carries: the weights file it
// used and the list of images it read, so that two records can be compared for "same inputs"
// without trusting file names. Streaming, so that a multi-hundred-megabyte checkpoint is hashed
// in fixed memory.
//
//   Sha256 hasher;
//   hasher.Update(bytes, n);
//   std::string hex = hasher.HexDigest();   // 64 lowercase hex characters
#ifndef QLAB_CORE_SHA256_H_
#define QLAB_CORE_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qlab {

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t size);
  void Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  std::array<uint8_t, 32> Digest();
  std::string HexDigest();

 private:
  void Compress(const uint8_t block[64]);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

// Hex SHA-256 of a file's contents. NotFound / DataLoss naming the path.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace qlab

#endif  // QLAB_CORE_SHA256_H_
