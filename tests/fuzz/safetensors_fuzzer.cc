// Fuzz target for models/safetensors.h: any bytes go to ParseSafetensors; every tensor of a file
// that parses is converted with ToTensor (the dtype conversions), and a file that parses and
// serializes again must re-parse to the same tensors and metadata (the writer and reader agree).
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "models/safetensors.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzSafetensors(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<SafetensorsFile> file = ParseSafetensors(bytes);
  if (!file.ok()) return 0;
  for (const SafetensorsTensor& tensor : file->tensors) {
    // Errors are fine (e.g. an I64 value outside int32); only crashes are findings.
    (void)ToTensor(tensor);
  }
  absl::StatusOr<std::string> written = SerializeSafetensors(*file);
  if (!written.ok()) return 0;  // the writer is stricter than the reader on names, by design
  absl::StatusOr<SafetensorsFile> reread = ParseSafetensors(*written);
  // What qlab writes it must be able to read back, unchanged.
  if (!reread.ok() || reread->tensors.size() != file->tensors.size() ||
      reread->metadata != file->metadata) {
    std::abort();
  }
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzSafetensors)
