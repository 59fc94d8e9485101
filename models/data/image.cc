// OpenCV-backed decoding for models/data/image.h. OpenCV and PIL link the same libjpeg-turbo on
// Debian 12 (both default to the accurate integer IDCT and fancy upsampling), so JPEG pixels agree
// with torchvision's PIL loader; models/data/preprocess_conformance_test.cc measures it.
#include "models/data/image.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "opencv2/core.hpp"
#include "opencv2/imgcodecs.hpp"
#include "opencv2/imgproc.hpp"

namespace qlab::data {

absl::StatusOr<Image> MakeImage(int height, int width) {
  if (height < 0 || width < 0 || height > kMaxImageSide || width > kMaxImageSide) {
    return absl::InvalidArgumentError(absl::StrCat("image size ", height, "x", width,
                                                   " outside [0, ", kMaxImageSide, "] per side"));
  }
  Image image;
  image.height = height;
  image.width = width;
  image.rgb.assign(static_cast<size_t>(height) * width * 3, 0);
  return image;
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return std::move(buffer).str();
}

namespace {

uint32_t BigEndian(absl::string_view b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

uint32_t LittleEndian(absl::string_view b, size_t at, int n) {
  uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}

// Height and width of the first frame of a baseline/progressive JPEG (its first SOFn marker).
bool JpegSize(absl::string_view b, int64_t* height, int64_t* width) {
  size_t at = 2;  // after SOI
  while (at + 4 <= b.size()) {
    if (static_cast<uint8_t>(b[at]) != 0xff) {
      ++at;  // libjpeg skips garbage between markers (with a warning); so do we
      continue;
    }
    const uint8_t marker = static_cast<uint8_t>(b[at + 1]);
    if (marker == 0xff) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0x01 || marker == 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;  // markers without a length
      continue;
    }
    const bool sof = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 &&
                     marker != 0xcc;
    if (sof) {
      if (at + 9 > b.size()) return false;
      *height = BigEndian(b, at + 5, 2);
      *width = BigEndian(b, at + 7, 2);
      return true;
    }
    if (marker == 0xda || marker == 0xd9) return false;  // scan or end before any frame
    at += 2 + BigEndian(b, at + 2, 2);
  }
  return false;
}

// The next unsigned integer of a PNM header, skipping whitespace and '#' comments.
bool PnmNumber(absl::string_view b, size_t* at, int64_t* value) {
  while (*at < b.size()) {
    const char c = b[*at];
    if (c == '#') {
      while (*at < b.size() && b[*at] != '\n' && b[*at] != '\r') ++*at;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      ++*at;
    } else {
      break;
    }
  }
  if (*at >= b.size() || b[*at] < '0' || b[*at] > '9') return false;
  *value = 0;
  while (*at < b.size() && b[*at] >= '0' && b[*at] <= '9') {
    *value = std::min<int64_t>(*value * 10 + (b[*at] - '0'), int64_t{1} << 40);  // saturate
    ++*at;
  }
  return true;
}

// The dimensions the header of a PNG, JPEG, BMP or PNM (P1-P6) file declares; false for other
// formats and for headers too short to say (the decoder then fails on its own).
bool DeclaredSize(absl::string_view b, int64_t* height, int64_t* width) {
  if (b.size() >= 24 && b.substr(0, 8) == absl::string_view("\x89PNG\r\n\x1a\n", 8) &&
      b.substr(12, 4) == "IHDR") {
    *width = BigEndian(b, 16, 4);
    *height = BigEndian(b, 20, 4);
    return true;
  }
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xff && static_cast<uint8_t>(b[1]) == 0xd8) {
    return JpegSize(b, height, width);
  }
  if (b.size() >= 26 && b.substr(0, 2) == "BM") {
    const uint32_t info_size = LittleEndian(b, 14, 4);
    if (info_size == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit sizes
      *width = LittleEndian(b, 18, 2);
      *height = LittleEndian(b, 20, 2);
    } else {  // BITMAPINFOHEADER and later: signed 32-bit, negative height = top-down
      *width = std::abs(static_cast<int64_t>(static_cast<int32_t>(LittleEndian(b, 18, 4))));
      *height = std::abs(static_cast<int64_t>(static_cast<int32_t>(LittleEndian(b, 22, 4))));
    }
    return true;
  }
  if (b.size() >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6') {
    size_t at = 2;
    return PnmNumber(b, &at, width) && PnmNumber(b, &at, height);
  }
  return false;
}

}  // namespace

absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const std::string& name) {
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decode image ", name, ": empty file"));
  }
  // OpenCV allocates the declared size before decoding any pixel (up to 2^30 pixels, 3 GB):
  // refuse oversized headers first, as PIL's decompression-bomb check does.
  int64_t height = 0;
  int64_t width = 0;
  if (DeclaredSize(bytes, &height, &width) &&
      (height > kMaxImageSide || width > kMaxImageSide || height * width > kMaxImagePixels)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image ", name, ": ", height, "x", width, " exceeds the decoding limit (", kMaxImageSide,
        " per side, ", kMaxImagePixels, " pixels)"));
  }
  // imdecode does not modify the buffer; the Mat header only wraps it.
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1,
                        const_cast<char*>(bytes.data()));
  // IMREAD_COLOR gives 8-bit BGR for gray, palette, alpha and 16-bit sources alike.
  cv::Mat bgr;
  try {
    bgr = cv::imdecode(encoded, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    // OpenCV reports some corrupt streams by throwing; qlab's boundary is a Status.
    return absl::InvalidArgumentError(absl::StrCat("cannot decode image ", name, ": ", e.what()));
  }
  if (bgr.empty() || bgr.type() != CV_8UC3) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decode image ", name,
                                                   ": not a supported image format"));
  }
  absl::StatusOr<Image> image = MakeImage(bgr.rows, bgr.cols);
  if (!image.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("image ", name, ": ", image.status().message()));
  }
  for (int y = 0; y < bgr.rows; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    uint8_t* out = &image->rgb[static_cast<size_t>(y) * bgr.cols * 3];
    for (int x = 0; x < bgr.cols; ++x) {
      out[3 * x + 0] = row[3 * x + 2];
      out[3 * x + 1] = row[3 * x + 1];
      out[3 * x + 2] = row[3 * x + 0];
    }
  }
  return image;
}

}  // namespace qlab::data
