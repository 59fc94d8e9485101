// OpenCV-backed decoding for models/data/image.h. OpenCV and PIL link the same libjpeg-turbo on
// Debian 12 (both default to the accurate integer IDCT and fancy upsampling), so JPEG pixels agree
// with torchvision's PIL loader; models/data/preprocess_conformance_test.cc measures it.
#include "models/data/image.h"

#include <cerrno>
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

absl::StatusOr<Image> DecodeImage(absl::string_view bytes, const std::string& name) {
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot decode image ", name, ": empty file"));
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
