// The shared CIFAR-10 training archive read straight from its .tar.gz: 50,000 images, 5,000 per
// class in CIFAR-10 label order, and a seeded calibration subset that decodes and is the same on
// every run. (Extraction into the cache is covered on a generated archive in dataset_test.)
#include <map>
#include <memory>

#include "gtest/gtest.h"
#include "models/data/dataset.h"
#include "models/data/random.h"
#include "models/data/tar_gz.h"
#include "models/data/test_util.h"

namespace qlab::data {
namespace {

TEST(CifarTrainArchiveTest, FiftyThousandImagesInClassOrder) {
  const std::string archive =
      testing::SharedDataRoot() + "/cifar10-train-png/cifar10-train-png.tar.gz";
  absl::StatusOr<std::unique_ptr<Dataset>> train = OpenTarGzImageFolder(archive, "train/");
  ASSERT_TRUE(train.ok()) << train.status();
  const Dataset& ds = **train;
  ASSERT_EQ(ds.size(), 50000);
  EXPECT_EQ(ds.class_names(), Cifar10ClassNames());
  std::map<int, int> per_class;
  for (int64_t i = 0; i < ds.size(); ++i) {
    ++per_class[ds.label(i)];
    if (i > 0) {
      ASSERT_LE(ds.label(i - 1), ds.label(i));
    }
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 5000);
  EXPECT_NE(ds.name(0).find("train/airplane/aeroplane_s_000004.png"), std::string::npos);

  // 512 calibration images, seed 1: reproducible, spread over the classes, all decodable.
  const std::vector<int64_t> subset = SeededSubset(ds.size(), 512, /*seed=*/1);
  EXPECT_EQ(subset, SeededSubset(ds.size(), 512, 1));
  std::map<int, int> subset_classes;
  for (int64_t i : subset) {
    ++subset_classes[ds.label(i)];
    absl::StatusOr<Image> image = ds.Load(i);
    ASSERT_TRUE(image.ok()) << image.status();
    ASSERT_EQ(image->height, 32);
  }
  EXPECT_EQ(subset_classes.size(), 10u);
}

}  // namespace
}  // namespace qlab::data
