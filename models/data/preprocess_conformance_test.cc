// qlab's preprocessing against torchvision 0.14 + PIL 9.4 (Debian's python3-torchvision, run by
// /usr/bin/python3 with models/data/torch_preprocess.py) on the shared real images:
//  - CIFAR-10 test PNGs (every 50th of 10,000): decoded pixels and ToTensor + Normalize tensors
//    bit-identical.
//  - ILSVRC2012 validation JPEGs (every 65th of 1,300): JPEG decoding (OpenCV vs PIL, both on
//    libjpeg-turbo) compared pixel by pixel; qlab's PIL-style resize applied to PIL's decoded
//    pixels equals PIL's Image.resize(BILINEAR) exactly for down-, up- and mixed scaling; the
//    whole Resize(256) + CenterCrop(224) pipeline within one uint8 step of torchvision's, with the
//    fraction of exactly equal values printed; Normalize bit-identical on the same uint8 crop.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/data/data_root.h"
#include "models/data/dataset.h"
#include "models/data/pil_resize.h"
#include "models/data/test_util.h"
#include "models/data/transforms.h"
#include "nlohmann/json.hpp"

namespace qlab::data {
namespace {

std::string ReadAll(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::string bytes = ReadAll(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof(b));
  return b;
}

// Runs torch_preprocess.py on `jobs`; returns the folder holding its outputs.
std::string RunTorchvision(const nlohmann::json& jobs, const std::string& tag) {
  const std::string dir = testing::TempDir() + "/" + tag;
  const std::string reset = "rm -rf " + dir + " && mkdir -p " + dir;
  EXPECT_EQ(std::system(reset.c_str()), 0) << reset;
  const std::string jobs_path = dir + "/jobs.json";
  std::ofstream(jobs_path) << jobs.dump();
  const std::string command =
      "/usr/bin/python3 models/data/torch_preprocess.py " + jobs_path + " " + dir;
  EXPECT_EQ(std::system(command.c_str()), 0)
      << command << " failed: is python3-torchvision installed (tools/setup.sh)?";
  return dir;
}

TEST(PreprocessConformanceTest, CifarTensorsAreBitIdentical) {
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenCifar10Test(testing::SharedDataRoot());
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<int64_t> sample;
  for (int64_t i = 0; i < (*ds)->size(); i += 50) sample.push_back(i);
  nlohmann::json jobs = nlohmann::json::array();
  for (int64_t i : sample) jobs.push_back({{"path", (*ds)->name(i)}, {"kind", "cifar"}});
  const std::string dir = RunTorchvision(jobs, "cifar");

  const CifarEvalTransform transform;
  std::vector<float> ours(3 * 32 * 32);
  for (size_t j = 0; j < sample.size(); ++j) {
    absl::StatusOr<Image> image = (*ds)->Load(sample[j]);
    ASSERT_TRUE(image.ok()) << image.status();
    const std::string decoded = ReadAll(absl::StrCat(dir, "/", j, ".decoded"));
    ASSERT_EQ(decoded, std::string(image->rgb.begin(), image->rgb.end())) << (*ds)->name(sample[j]);
    ASSERT_TRUE(transform.Apply(*image, 0, ours.data()).ok());
    const std::vector<float> torch = ReadFloats(absl::StrCat(dir, "/", j, ".tensor"));
    ASSERT_EQ(torch.size(), ours.size());
    for (size_t k = 0; k < ours.size(); ++k) {
      ASSERT_EQ(Bits(ours[k]), Bits(torch[k])) << (*ds)->name(sample[j]) << " element " << k;
    }
  }
  std::cout << "CIFAR: " << sample.size() << " images, decoded pixels and tensors bit-identical\n";
}

// Sizes PIL resizes each ImageNet image to, [height, width]: shrinking by ~2x and ~3.5x,
// enlarging, mixed (one side up, one down), and the identity-width case (vertical pass only).
const std::vector<std::pair<int, int>> kResizes = {{113, 113}, {64, 97},  {300, 451},
                                                   {224, 224}, {57, 200}, {227, 100},
                                                   {500, 227}};

TEST(PreprocessConformanceTest, ImageNetWithinOneStepOfTorchvision) {
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageNetVal1300(testing::SharedDataRoot());
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<int64_t> sample;
  for (int64_t i = 0; i < (*ds)->size(); i += 65) sample.push_back(i);
  nlohmann::json jobs = nlohmann::json::array();
  for (int64_t i : sample) {
    nlohmann::json resizes = nlohmann::json::array();
    for (auto [h, w] : kResizes) resizes.push_back({h, w});
    jobs.push_back({{"path", (*ds)->name(i)}, {"kind", "imagenet"}, {"resizes", resizes}});
  }
  const std::string dir = RunTorchvision(jobs, "imagenet");

  int64_t decode_total = 0, decode_equal = 0, decode_max_diff = 0;
  int64_t crop_total = 0, crop_equal = 0, crop_max_diff = 0;
  int64_t resize_total = 0, resize_equal = 0;
  const ImageNetEvalTransform transform;
  const NormalizeParams params;
  std::vector<float> ours(3 * 224 * 224);
  for (size_t j = 0; j < sample.size(); ++j) {
    const std::string name = (*ds)->name(sample[j]);
    absl::StatusOr<Image> image = (*ds)->Load(sample[j]);
    ASSERT_TRUE(image.ok()) << image.status();
    const std::string prefix = absl::StrCat(dir, "/", j);

    // Decoding: OpenCV vs PIL.
    Image pil = *image;
    const std::string pil_decoded = ReadAll(prefix + ".decoded");
    ASSERT_EQ(pil_decoded.size(), pil.rgb.size()) << name;
    std::memcpy(pil.rgb.data(), pil_decoded.data(), pil_decoded.size());
    for (size_t k = 0; k < pil.rgb.size(); ++k) {
      const int diff = std::abs(int{pil.rgb[k]} - int{image->rgb[k]});
      decode_equal += diff == 0;
      decode_max_diff = std::max<int64_t>(decode_max_diff, diff);
    }
    decode_total += static_cast<int64_t>(pil.rgb.size());

    // Resampling alone, on PIL's own decoded pixels: must be exact.
    for (size_t r = 0; r < kResizes.size(); ++r) {
      absl::StatusOr<Image> resized = PilResizeBilinear(pil, kResizes[r].first, kResizes[r].second);
      ASSERT_TRUE(resized.ok());
      const std::string torch = ReadAll(absl::StrCat(prefix, ".resize_", r));
      ASSERT_EQ(torch.size(), resized->rgb.size());
      for (size_t k = 0; k < torch.size(); ++k) {
        resize_equal += static_cast<uint8_t>(torch[k]) == resized->rgb[k];
        ASSERT_EQ(static_cast<uint8_t>(torch[k]), resized->rgb[k])
            << name << " resized to " << kResizes[r].first << "x" << kResizes[r].second
            << " byte " << k;
      }
      resize_total += static_cast<int64_t>(torch.size());
    }

    // The whole pipeline from qlab's decode: within one uint8 step per value.
    absl::StatusOr<Image> resized = ResizeShorterSide(*image, 256);
    ASSERT_TRUE(resized.ok());
    absl::StatusOr<Image> cropped = CenterCrop(*resized, 224, 224);
    ASSERT_TRUE(cropped.ok());
    const std::string torch_crop = ReadAll(prefix + ".crop");
    ASSERT_EQ(torch_crop.size(), cropped->rgb.size());
    for (size_t k = 0; k < torch_crop.size(); ++k) {
      const int diff = std::abs(int{static_cast<uint8_t>(torch_crop[k])} - int{cropped->rgb[k]});
      crop_equal += diff == 0;
      crop_max_diff = std::max<int64_t>(crop_max_diff, diff);
      ASSERT_LE(diff, 1) << name << " byte " << k;
    }
    crop_total += static_cast<int64_t>(torch_crop.size());

    // Normalize on torchvision's own crop: bit-identical. From qlab's crop: the transform's
    // output is that crop normalized (so within one step / std of torchvision's tensor).
    Image torch_cropped = *cropped;
    std::memcpy(torch_cropped.rgb.data(), torch_crop.data(), torch_crop.size());
    ToTensorNormalize(torch_cropped, params, ours.data());
    const std::vector<float> torch_tensor = ReadFloats(prefix + ".tensor");
    ASSERT_EQ(torch_tensor.size(), ours.size());
    for (size_t k = 0; k < ours.size(); ++k) ASSERT_EQ(Bits(ours[k]), Bits(torch_tensor[k]));
    ASSERT_TRUE(transform.Apply(*image, 0, ours.data()).ok());
    for (size_t k = 0; k < ours.size(); ++k) {
      const float step = 1.0f / 255.0f / params.std[k / (224 * 224)];
      ASSERT_LE(std::fabs(ours[k] - torch_tensor[k]), step * 1.0001f) << name << " element " << k;
    }
  }
  std::printf(
      "ImageNet (%zu JPEGs): decode OpenCV vs PIL: %.6f equal (max diff %lld); PIL-style resize "
      "on PIL pixels: %.6f equal over %lld values; Resize(256)+CenterCrop(224) from qlab's "
      "decode: %.6f equal (max diff %lld)\n",
      sample.size(), static_cast<double>(decode_equal) / decode_total,
      static_cast<long long>(decode_max_diff), static_cast<double>(resize_equal) / resize_total,
      static_cast<long long>(resize_total), static_cast<double>(crop_equal) / crop_total,
      static_cast<long long>(crop_max_diff));
  EXPECT_EQ(resize_equal, resize_total);
}

}  // namespace
}  // namespace qlab::data
