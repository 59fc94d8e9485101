// Fuzz target for image decoding (models/data/image.h, dataset.h): the bytes are the one image of
// a one-class image folder, opened with OpenImageFolder and decoded through Dataset::Load, the
// path every PNG/JPEG qlab evaluates or calibrates on takes (OpenCV's imdecode underneath; OpenCV
// itself is Debian's uninstrumented build, so libFuzzer's coverage guidance only sees qlab's side,
// but any crash, sanitizer report or oversized allocation inside OpenCV still surfaces). A decoded
// image must have the size it claims and stay within the documented bounds.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "models/data/dataset.h"
#include "models/data/image.h"
#include "tests/fuzz/fuzz_targets.h"

namespace qlab::fuzz {

int FuzzImageFolder(const uint8_t* data, size_t size) {
  // <tmp>/qlab_fuzz_images_<pid>/class/image.png: one class folder with one image, per process.
  static const std::string root = [] {
    const char* dir = std::getenv("TEST_TMPDIR");
    const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/qlab_fuzz_images_" +
                             std::to_string(getpid());
    std::filesystem::create_directories(path + "/class");
    return path;
  }();
  const std::string file = WriteFuzzFile("image", data, size);
  std::filesystem::rename(file, root + "/class/image.png");
  auto dataset = data::OpenImageFolder(root);
  if (!dataset.ok() || (*dataset)->size() != 1) std::abort();  // the folder itself is valid
  absl::StatusOr<data::Image> image = (*dataset)->Load(0);
  if (!image.ok()) return 0;
  if (image->height <= 0 || image->width <= 0 || image->height > data::kMaxImageSide ||
      image->width > data::kMaxImageSide ||
      image->rgb.size() != static_cast<size_t>(image->height) * image->width * 3) {
    std::abort();
  }
  return 0;
}

}  // namespace qlab::fuzz

QLAB_FUZZ_ENTRY_POINT(qlab::fuzz::FuzzImageFolder)
