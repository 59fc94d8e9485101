// Test helpers of models/data/test_util.h.
#include "models/data/test_util.h"

#include <cstdlib>
#include <fstream>
#include <vector>

#include "gtest/gtest.h"
#include "models/data/data_root.h"
#include "opencv2/core.hpp"
#include "opencv2/imgcodecs.hpp"

namespace qlab::data::testing {

std::string SharedDataRoot() {
  absl::StatusOr<std::string> root = ResolveDataRoot("");
  EXPECT_TRUE(root.ok()) << root.status();
  return root.ok() ? *root : std::string("/nonexistent");
}

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

void WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string EncodePng(const Image& image) {
  cv::Mat bgr(image.height, image.width, CV_8UC3);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) bgr.ptr<uint8_t>(y)[3 * x + 2 - c] = image.at(y, x, c);
    }
  }
  std::vector<uint8_t> png;
  EXPECT_TRUE(cv::imencode(".png", bgr, png));
  return std::string(png.begin(), png.end());
}

}  // namespace qlab::data::testing
