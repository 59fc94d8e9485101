// The shared pretrained CIFAR-10 ResNet20 and ResNet56 (../shared/data/cifar10-resnet-akamaster,
// He et al. option-A models) against PyTorch 1.13 on the same safetensors files: qlab loads the
// shared file itself and builds the model strictly; resnet_torch.py defines the architecture in
// PyTorch, loads the same file with load_state_dict(strict=True), and writes its logits for a
// seeded random batch and for the first CIFAR-10 test image of every class.
//
// The images are decoded independently on both sides (OpenCV here, PIL there) and preprocessed
// as the checkpoints were trained (RGB, /255, Normalize(mean=(0.485,0.456,0.406),
// std=(0.229,0.224,0.225))). Those inputs must agree bit for bit: PNG is lossless, and each
// step is one correctly rounded float32 operation on both sides (x/255, −mean, /std). Logits use
// the tolerance of resnet_conformance_test (kTolerance = 1e-4 of the largest |logit|: float32
// summation order through 20 or 56 layers; K ≤ 576 terms per conv output here, so the expected
// differences are smaller than for the ImageNet models), and the predicted class must be the
// same as PyTorch's for every image.
//
// The data folder is found from the runfiles (models/data/data_root.h); without it the test
// fails saying what to put where.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "models/data/data_root.h"
#include "models/resnet.h"
#include "models/safetensors.h"
#include "models/testing/logits.h"
#include "opencv2/imgcodecs.hpp"
#include "opencv2/imgproc.hpp"
#include "quant/graph/interpreter.h"

namespace qlab {
namespace {

constexpr double kTolerance = 1e-4;
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

std::string OutDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

struct Image {
  int label;
  std::string path;
};

// The first image of each class in labels.csv order (index,label,class,file), by label.
std::vector<Image> FirstImagePerClass(const std::string& root) {
  std::ifstream in(root + "/cifar10-test-png/labels.csv");
  std::string line;
  std::getline(in, line);  // header
  std::vector<Image> chosen(10, Image{-1, ""});
  while (std::getline(in, line)) {
    const std::vector<std::string> f = absl::StrSplit(line, ',');
    if (f.size() != 4) continue;
    const int label = std::atoi(f[1].c_str());
    if (label >= 0 && label < 10 && chosen[label].label < 0) {
      chosen[label] = Image{label, root + "/cifar10-test-png/test/" + f[3]};
    }
  }
  return chosen;
}

// ToTensor + Normalize of 32×32 RGB PNGs into a float32 [N, 3, 32, 32] batch.
absl::StatusOr<Tensor> LoadBatch(const std::vector<Image>& images) {
  Tensor batch = *Tensor::Create(DType::kFloat32, {static_cast<int64_t>(images.size()), 3, 32, 32});
  float* out = batch.data<float>();
  for (const Image& image : images) {
    cv::Mat bgr = cv::imread(image.path, cv::IMREAD_COLOR);
    if (bgr.empty() || bgr.rows != 32 || bgr.cols != 32) {
      return absl::DataLossError(absl::StrCat("cannot decode a 32x32 image from ", image.path));
    }
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) {
          const float v = static_cast<float>(rgb.at<cv::Vec3b>(y, x)[c]) / 255.0f;
          *out++ = (v - kMean[c]) / kStd[c];
        }
      }
    }
  }
  return batch;
}

class ResNetPretrainedTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> root = data::ResolveDataRoot("");
    if (!root.ok()) {
      setup_error_ = std::string(root.status().message());
      return;
    }
    root_ = *root;
    const std::string command = absl::StrCat("/usr/bin/python3 models/resnet_torch.py pretrained ",
                                             root_, " ", OutDir(), " resnet20 resnet56");
    if (std::system(command.c_str()) != 0) {
      setup_error_ = command + " failed: is python3-torch installed (tools/setup.sh)?";
    }
  }

  static std::string root_;
  static std::string setup_error_;
};

std::string ResNetPretrainedTest::root_;
std::string ResNetPretrainedTest::setup_error_;

TEST_P(ResNetPretrainedTest, LogitsAndPredictionsMatchPyTorch) {
  ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  const std::string name = GetParam();
  const std::string path = root_ + "/cifar10-resnet-akamaster/" + name + ".safetensors";
  absl::StatusOr<LoadedSafetensors> weights = LoadSafetensors(path);
  ASSERT_TRUE(weights.ok()) << weights.status();
  // The shared files say what they hold: "resnet20 CIFAR ResNet (He et al. 2016), n=3, ...".
  EXPECT_TRUE(absl::StartsWith(weights->metadata["arch"], name + " ")) << weights->metadata["arch"];
  absl::StatusOr<Graph> model = BuildResNet(*ModelByName(name), weights->tensors);
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<LoadedSafetensors> io =
      LoadSafetensors(absl::StrCat(OutDir(), "/", name, ".io.safetensors"));
  ASSERT_TRUE(io.ok()) << io.status();

  // Seeded random inputs.
  absl::StatusOr<RunResult> run = RunGraph(*model, {io->tensors.at("random_input")});
  ASSERT_TRUE(run.ok()) << run.status();
  testing::LogitsComparison c =
      testing::CompareLogits(run->outputs[0], io->tensors.at("random_logits"), kTolerance);
  std::cout << name << " random: " << c.summary << "\n";
  EXPECT_LE(c.relative, kTolerance) << c.summary;
  EXPECT_EQ(c.argmax_mismatches, 0) << c.summary;

  // Real test images, decoded and preprocessed here.
  const std::vector<Image> images = FirstImagePerClass(root_);
  for (const Image& image : images) ASSERT_GE(image.label, 0) << "labels.csv lacks a class";
  absl::StatusOr<Tensor> batch = LoadBatch(images);
  ASSERT_TRUE(batch.ok()) << batch.status();
  const Tensor& torch_input = io->tensors.at("image_input");
  ASSERT_EQ(batch->shape(), torch_input.shape());
  int64_t differing = 0;
  for (int64_t i = 0; i < batch->numel(); ++i) {
    differing += batch->data<float>()[i] != torch_input.data<float>()[i];
  }
  EXPECT_EQ(differing, 0) << "preprocessed pixels differ from torchvision's";

  run = RunGraph(*model, {*batch});
  ASSERT_TRUE(run.ok()) << run.status();
  const Tensor& torch_logits = io->tensors.at("image_logits");
  c = testing::CompareLogits(run->outputs[0], torch_logits, kTolerance);
  std::cout << name << " images: " << c.summary << "\n";
  EXPECT_LE(c.relative, kTolerance) << c.summary;
  int correct = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const int ours = testing::ArgMax(run->outputs[0], i);
    EXPECT_EQ(ours, testing::ArgMax(torch_logits, i)) << images[i].path;
    correct += ours == images[i].label;
  }
  EXPECT_EQ(io->tensors.at("image_label").data<int32_t>()[3], images[3].label);
  std::cout << name << ": " << correct << "/" << images.size()
            << " of the first test image per class correct\n";
  // A 91-94 % model gets most of ten images right; fewer than 7 means the weights are not
  // being used as trained (e.g. channel order or normalization wrong).
  EXPECT_GE(correct, 7);
}

INSTANTIATE_TEST_SUITE_P(Shared, ResNetPretrainedTest, ::testing::Values("resnet20", "resnet56"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace qlab
