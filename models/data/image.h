// Image: decoded 8-bit RGB pixels, the hand-over point between decoding and preprocessing.
//
// Datasets produce Images (from PNG/JPEG bytes through OpenCV, or from CIFAR-10 binary records);
// transforms (models/data/transforms.h) turn them into normalized float CHW tensors. Pixels are
// interleaved HWC in RGB order, the layout PIL gives torchvision, so every preprocessing step can
// be written against PIL's definition without channel shuffles.
//
//   QLAB_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes("cat.png"));
//   QLAB_ASSIGN_OR_RETURN(Image image, DecodeImage(bytes, "cat.png"));
//   uint8_t red_of_top_left = image.at(0, 0, 0);
#ifndef QLAB_MODELS_DATA_IMAGE_H_
#define QLAB_MODELS_DATA_IMAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qlab::data {

// Largest image side accepted from a file: bounds the allocation a hostile header can ask for.
inline constexpr int kMaxImageSide = 1 << 15;
// Largest pixel count decoded: PIL's decompression-bomb error threshold (2 x
// Image.MAX_IMAGE_PIXELS), so every image torchvision's loader accepts is accepted here too.
inline constexpr int64_t kMaxImagePixels = 2 * int64_t{89478485};

struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> rgb;  // height * width * 3, row-major HWC, RGB

  uint8_t at(int y, int x, int c) const { return rgb[(static_cast<size_t>(y) * width + x) * 3 + c]; }
  uint8_t& at(int y, int x, int c) { return rgb[(static_cast<size_t>(y) * width + x) * 3 + c]; }
};

// A zero-filled height x width image. InvalidArgument for a negative side or one beyond
// kMaxImageSide.
absl::StatusOr<Image> MakeImage(int height, int width);

// The whole file. NotFound when it does not exist, DataLoss on a read error; both name `path`.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Decodes PNG/JPEG/BMP/... bytes to RGB as PIL's `Image.open(f).convert("RGB")` would: grayscale
// replicated to three channels, alpha dropped, 16-bit PNG reduced to 8 bits, and — unlike OpenCV's
// default — EXIF orientation ignored (PIL does not rotate). `name` (usually the path) appears in
// errors: InvalidArgument "cannot decode image <name>" for undecodable or empty bytes. The
// dimensions a PNG, JPEG, BMP or PNM header declares are checked against kMaxImageSide and
// kMaxImagePixels before decoding (InvalidArgument "image <name>: <h>x<w> ..."), so a small
// file cannot make the decoder allocate gigabytes; other formats (TIFF, WebP, ...) are bounded
// only by OpenCV's own limit of 2^30 pixels.
absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const std::string& name);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_IMAGE_H_
