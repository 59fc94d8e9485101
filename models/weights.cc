// LoadWeights (models/weights.h).
#include "models/weights.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "models/pth/pth_loader.h"
#include "models/safetensors.h"

namespace qlab {

absl::StatusOr<LoadedWeights> LoadWeights(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open weights file ", path));
  unsigned char head[9] = {};
  file.read(reinterpret_cast<char*>(head), sizeof(head));
  const std::streamsize got = file.gcount();
  LoadedWeights loaded;
  const bool zip = got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
  // torch's legacy format starts with a pickled magic number: PROTO 2 (0x80 0x02), LONG1 (0x8a).
  const bool legacy_torch = got >= 3 && head[0] == 0x80 && head[1] == 0x02 && head[2] == 0x8a;
  if (zip || legacy_torch) {
    pth::PthReport report;
    QLAB_ASSIGN_OR_RETURN(loaded.tensors, pth::LoadPth(path, {}, &report));
    loaded.format = "pth";
    for (const std::string& n : report.converted) loaded.notes.push_back("converted " + n);
    for (const std::string& n : report.ignored) loaded.notes.push_back("ignored " + n);
    for (const std::string& n : report.skipped) loaded.notes.push_back("skipped " + n);
    return loaded;
  }
  // safetensors: the JSON header begins right after the 8-byte length.
  if (got == 9 && head[8] == '{') {
    QLAB_ASSIGN_OR_RETURN(LoadedSafetensors st, LoadSafetensors(path));
    loaded.tensors = std::move(st.tensors);
    loaded.format = "safetensors";
    return loaded;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path,
      " is neither a safetensors file nor a torch.save zip (.pth/.pt); convert it with "
      "torch.save(model.state_dict(), path) in PyTorch >= 1.6"));
}

}  // namespace qlab
