// .pth files written by PyTorch 1.13's torch.save (models/pth/torch_save_fixtures.py run by
// /usr/bin/python3) load to exactly the tensors PyTorch holds: every element compared bit for
// bit, names, shapes and dtypes checked, conversions and skips reported.
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/pth/pth_loader.h"
#include "nlohmann/json.hpp"

namespace qlab::pth {
namespace {

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class PthConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir() + "/fixtures");
    const std::string command = "rm -rf " + *dir_ + " && mkdir -p " + *dir_ +
                                " && /usr/bin/python3 models/pth/torch_save_fixtures.py " + *dir_;
    ASSERT_EQ(std::system(command.c_str()), 0)
        << command << " failed: is python3-torchvision installed (tools/setup.sh)?";
  }

  // Loads fixture `name` and compares it with its manifest (following "same_as").
  void ExpectMatches(const std::string& name, PthReport* report) {
    absl::StatusOr<TensorDict> loaded = LoadPth(*dir_ + "/" + name + ".pth", {}, report);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    nlohmann::json manifest = nlohmann::json::parse(Slurp(*dir_ + "/" + name + ".json"), nullptr,
                                                    /*allow_exceptions=*/false);
    ASSERT_FALSE(manifest.is_discarded());
    std::string reference = name;
    if (manifest.contains("same_as")) {
      reference = manifest["same_as"].get<std::string>();
      manifest = nlohmann::json::parse(Slurp(*dir_ + "/" + reference + ".json"), nullptr, false);
    }
    const std::string blob = Slurp(*dir_ + "/" + reference + ".bin");
    const nlohmann::json& tensors = manifest["tensors"];
    ASSERT_EQ(loaded->size(), tensors.size());
    for (const auto& [key, spec] : tensors.items()) {
      ASSERT_EQ(loaded->count(key), 1u) << name << " lacks " << key;
      const Tensor& t = loaded->at(key);
      EXPECT_EQ(DTypeName(t.dtype()), spec["dtype"].get<std::string>()) << key;
      Shape shape;
      for (int64_t d : spec["shape"]) shape.push_back(d);
      EXPECT_EQ(ShapeString(t.shape()), ShapeString(shape)) << key;
      const size_t nbytes = spec["nbytes"].get<size_t>();
      ASSERT_EQ(t.nbytes(), nbytes) << key;
      if (nbytes > 0) {
        EXPECT_EQ(std::memcmp(t.raw_data(), blob.data() + spec["offset"].get<size_t>(), nbytes), 0)
            << name << ": " << key << " differs from PyTorch";
      }
    }
    for (const auto& skipped : manifest["skipped"]) {
      EXPECT_EQ(loaded->count(skipped.get<std::string>()), 0u);
    }
  }

  static std::string* dir_;
};

std::string* PthConformanceTest::dir_ = nullptr;

TEST_F(PthConformanceTest, Resnet18StateDictBitIdentical) {
  PthReport report;
  ExpectMatches("resnet18", &report);
  EXPECT_EQ(report.state_dict_path, "");
  EXPECT_TRUE(report.skipped.empty());
  // The 20 num_batches_tracked buffers are int64 in PyTorch, int32 in qlab.
  EXPECT_EQ(report.converted.size(), 20u);
  EXPECT_EQ(report.converted[0], "bn1.num_batches_tracked: int64 -> int32");
}

TEST_F(PthConformanceTest, WrappedDictWithModulePrefix) {
  PthReport report;
  ExpectMatches("wrapped", &report);
  EXPECT_EQ(report.state_dict_path, "state_dict");
  EXPECT_EQ(report.ignored,
            (std::vector<std::string>{"epoch (int 90)", "best_prec1 (float 69.76)",
                                      "arch (string 'resnet18')"}));
}

TEST_F(PthConformanceTest, EveryDtypeAndStridedViews) {
  PthReport report;
  ExpectMatches("mixed", &report);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_EQ(report.skipped[0], "too_big: int64 values do not fit int32");
}

TEST_F(PthConformanceTest, Protocol4) {
  PthReport report;
  ExpectMatches("protocol4", &report);
}

}  // namespace
}  // namespace qlab::pth
