// LoadWeights recognizes files by content: a safetensors file written under a .pth name, a
// torch.save zip, the shared legacy .th file (refused as such), and a file that is neither.
#include "models/weights.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/data/data_root.h"
#include "models/safetensors.h"

namespace qlab {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");  // Bazel's per-test scratch directory
  return tmp != nullptr ? tmp : "/tmp";
}

TEST(LoadWeightsTest, SafetensorsByContentNotName) {
  Tensor t = *Tensor::Create(DType::kFloat32, {2, 3});
  t.data<float>()[4] = 1.5f;
  const std::string path = TempDir() + "/misnamed.pth";
  ASSERT_TRUE(SaveSafetensors(path, {{"fc.weight", t}}).ok());
  const LoadedWeights w = *LoadWeights(path);
  EXPECT_EQ(w.format, "safetensors");
  EXPECT_EQ(w.tensors.at("fc.weight").data<float>()[4], 1.5f);
}

TEST(LoadWeightsTest, TorchSaveZip) {
  const std::string path = TempDir() + "/tiny.pt";
  const std::string command =
      "/usr/bin/python3 -c \"import torch, collections; torch.save(collections.OrderedDict("
      "[('module.fc.weight', torch.arange(6, dtype=torch.float32).reshape(2, 3))]), '" +
      path + "')\"";
  ASSERT_EQ(std::system(command.c_str()), 0) << "needs python3-torch (tools/setup.sh)";
  const LoadedWeights w = *LoadWeights(path);
  EXPECT_EQ(w.format, "pth");
  EXPECT_EQ(w.tensors.at("fc.weight").data<float>()[5], 5.0f);  // "module." stripped
}

TEST(LoadWeightsTest, LegacyTorchFileIsRefusedAsSuch) {
  const std::string root = *data::ResolveDataRoot("");
  const absl::StatusOr<LoadedWeights> w =
      LoadWeights(root + "/cifar10-resnet-akamaster/resnet20-12fca82f.th");
  EXPECT_EQ(w.status().code(), absl::StatusCode::kUnimplemented) << w.status();
}

TEST(LoadWeightsTest, UnknownAndMissingFiles) {
  const std::string path = TempDir() + "/notes.txt";
  std::ofstream(path) << "these are not weights";
  const absl::StatusOr<LoadedWeights> w = LoadWeights(path);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr(path));
  EXPECT_EQ(LoadWeights(TempDir() + "/missing.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace qlab
