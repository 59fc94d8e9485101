// Fuzz target for the zip layer of models/pth/pth_loader.h: the bytes are a whole .pth file
// (torch.save's zip), loaded through LoadPth from a temporary file because LoadPth takes a path.
// Reaches libzip's archive parsing, the entry-prefix and format checks, and, for inputs that keep
// a valid zip structure, the pickle and tensor building behind them.
#include "models/pth/pth_loader.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzPthZip(const uint8_t* data, size_t size) {
  const std::string path = WriteFuzzFile("pth_zip", data, size);
  pth::PthReport report;
  (void)pth::LoadPth(path, {}, &report);
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzPthZip)
