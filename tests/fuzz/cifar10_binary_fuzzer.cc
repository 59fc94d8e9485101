// Fuzz target for the CIFAR-10 binary reader (models/data/dataset.h): OpenCifar10Binary on one
// file of any bytes, then every record's label, name and decoded image, so a file that validates
// is also one whose records can all be read.
#include "models/data/dataset.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzCifar10Binary(const uint8_t* data, size_t size) {
  const std::string path = WriteFuzzFile("cifar10", data, size);
  auto dataset = data::OpenCifar10Binary({path});
  if (!dataset.ok()) return 0;
  for (int64_t i = 0; i < (*dataset)->size(); ++i) {
    (void)(*dataset)->label(i);
    (void)(*dataset)->name(i);
    (void)(*dataset)->Load(i);
  }
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzCifar10Binary)
