// Fuzz target for the tensor-building half of models/pth/pth_loader.h: the bytes are data.pkl,
// wrapped into an otherwise valid torch.save zip (entries fuzz/data.pkl, fuzz/data/0 holding 64
// float32 values, fuzz/version) so that mutated pickles reach the code that cuts tensors out of
// storages by size, stride, offset and dtype, which the raw-zip target rarely gets past libzip to.
#include <zip.h>

#include <cstdlib>
#include <string>

#include "models/pth/pth_loader.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

std::string TorchZipWithPickle(const std::string& pickle) {
  static const std::string* const storage = [] {
    auto* bytes = new std::string(64 * sizeof(float), '\0');
    for (int i = 0; i < 64; ++i) {
      const float v = static_cast<float>(i) - 31.5f;
      bytes->replace(i * sizeof(float), sizeof(float), reinterpret_cast<const char*>(&v),
                     sizeof(float));
    }
    return bytes;
  }();
  static const std::string version = "3\n";
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* out = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_t* zip = zip_open_from_source(out, ZIP_TRUNCATE, &error);
  // The wrapper itself failing would mean fuzzing nothing: stop instead.
  if (zip == nullptr) std::abort();
  zip_source_keep(out);
  const std::pair<const char*, const std::string*> entries[] = {
      {"fuzz/data.pkl", &pickle}, {"fuzz/data/0", storage}, {"fuzz/version", &version}};
  for (const auto& [name, bytes] : entries) {
    zip_source_t* source = zip_source_buffer(zip, bytes->data(), bytes->size(), 0);
    if (source == nullptr || zip_file_add(zip, name, source, ZIP_FL_OVERWRITE) < 0) std::abort();
    // torch.save stores entries uncompressed; do the same and skip deflate's cost per input.
    zip_set_file_compression(zip, zip_name_locate(zip, name, 0), ZIP_CM_STORE, 0);
  }
  if (zip_close(zip) != 0) std::abort();
  std::string result;
  zip_stat_t stat;
  if (zip_source_stat(out, &stat) != 0 || zip_source_open(out) != 0) std::abort();
  result.resize(stat.size);
  if (zip_source_read(out, result.data(), stat.size) != static_cast<zip_int64_t>(stat.size)) {
    std::abort();
  }
  zip_source_close(out);
  zip_source_free(out);
  return result;
}

int FuzzPthStateDict(const uint8_t* data, size_t size) {
  const std::string zip =
      TorchZipWithPickle(std::string(reinterpret_cast<const char*>(data), size));
  const std::string path = WriteFuzzFile(
      "pth_state_dict", reinterpret_cast<const uint8_t*>(zip.data()), zip.size());
  pth::PthReport report;
  (void)pth::LoadPth(path, {}, &report);
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzPthStateDict)
