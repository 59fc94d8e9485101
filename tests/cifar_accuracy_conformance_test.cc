// qlab's FP32 accuracy on the whole CIFAR-10 test set equals PyTorch's (issue 6, conformance 2):
// the shared pretrained ResNet20 and ResNet56, the same 10,000 images and preprocessing, qlab on
// its FP32 engine and PyTorch 1.13 on its own. Correct counts must be equal, and predictions may
// differ only where two logits are within float32 summation-order noise of each other.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/fp32_engine.h"
#include "gtest/gtest.h"
#include "models/data/batch_loader.h"
#include "models/data/data_root.h"
#include "models/data/transforms.h"
#include "models/evaluate.h"
#include "models/resnet.h"
#include "models/weights.h"

namespace qlab {
namespace {

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");  // Bazel's per-test scratch directory
  return tmp != nullptr ? tmp : "/tmp";
}

class CifarAccuracyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CifarAccuracyTest, CorrectCountEqualsPyTorch) {
  const std::string name = GetParam();
  const std::string root = data::ResolveDataRoot("").value();
  const std::string command = absl::StrCat("/usr/bin/python3 models/resnet_torch.py accuracy ",
                                           root, " ", TempDir(), " ", name);
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream in(absl::StrCat(TempDir(), "/", name, ".predictions.txt"));
  std::vector<int> torch_predictions;
  for (int p; in >> p;) torch_predictions.push_back(p);
  ASSERT_EQ(torch_predictions.size(), 10000u);

  const LoadedWeights weights =
      LoadWeights(absl::StrCat(root, "/cifar10-resnet-akamaster/", name, ".safetensors")).value();
  ResNetOptions options;
  options.batch = 100;
  const Graph model = BuildResNet(ModelByName(name).value(), weights.tensors, options).value();
  auto engine = std::make_shared<Fp32Engine>(Fp32Engine::Create(model, 2).value());
  const auto test_set = data::OpenCifar10Test(root).value();
  EvalOptions eval;
  eval.show_progress = false;
  const EvalResult r = Evaluate(
                           *test_set, data::AllIndices(*test_set), data::CifarEvalTransform(),
                           [engine](const Tensor& images) { return engine->Run(images); }, eval)
                           .value();

  int64_t torch_correct = 0, disagreements = 0;
  for (int64_t i = 0; i < 10000; ++i) {
    torch_correct += torch_predictions[i] == test_set->label(i);
    disagreements += torch_predictions[i] != r.predictions[i];
  }
  std::printf("%s: qlab %lld correct, PyTorch %lld correct, %lld predictions differ\n",
              name.c_str(), static_cast<long long>(r.top1_correct),
              static_cast<long long>(torch_correct), static_cast<long long>(disagreements));
  EXPECT_EQ(r.top1_correct, torch_correct);
  // A prediction flips only on a near-tie of the top two logits (|difference| ~ 1e-6 relative);
  // among 10,000 images that may happen a handful of times, not more.
  EXPECT_LE(disagreements, 3);
}

INSTANTIATE_TEST_SUITE_P(SharedCheckpoints, CifarAccuracyTest,
                         ::testing::Values("resnet20", "resnet56"));

}  // namespace
}  // namespace qlab
