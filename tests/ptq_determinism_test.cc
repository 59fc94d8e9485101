// Reproducibility of the main job: the same PTQ config and seed, run twice in one process, gives
// byte-identical records apart from their "timing" sections, and so does the same config on 1
// and on 2 threads apart from the "threads" setting itself; another calibration seed changes
// the calibration image list (and so the record). A small but real run: ResNet20 from the shared
// checkpoint, 64 calibration images, 200 test images.
#include <cstdlib>
#include <string>

#include "experiments/ptq.h"
#include "gtest/gtest.h"

namespace qlab::experiments {
namespace {

PtqConfig SmallConfig() {
  PtqConfig c;
  c.model = "resnet20";
  c.calibrator = "minmax";
  c.calib_images = 64;
  c.eval_images = 200;
  c.batch_size = 50;
  c.timing_runs = 0;
  c.show_progress = false;
  // Tests may not write into the workspace: extract the training archive into the test's own
  // scratch folder (Bazel's TEST_TMPDIR).
  const char* tmp = std::getenv("TEST_TMPDIR");
  c.cache_dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/cache";
  return c;
}

TEST(PtqDeterminismTest, SameConfigSameRecord) {
  const absl::StatusOr<nlohmann::json> first = RunPtq(SmallConfig());
  ASSERT_TRUE(first.ok()) << first.status();
  const absl::StatusOr<nlohmann::json> second = RunPtq(SmallConfig());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(DeterministicPart(*first).dump(2), DeterministicPart(*second).dump(2));
  EXPECT_TRUE(first->contains("timing"));

  PtqConfig other_seed = SmallConfig();
  other_seed.calib_seed = 1;
  const absl::StatusOr<nlohmann::json> third = RunPtq(other_seed);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE((*first)["inputs"]["calibration_image_list_sha256"],
            (*third)["inputs"]["calibration_image_list_sha256"]);
}

// Calibration, the engines and evaluation reduce in a fixed order whatever the thread count
// (kernels split work by output rows and channels, never across a sum), so the thread count may
// change nothing but the record's own statement of it.
TEST(PtqDeterminismTest, OneAndTwoThreadsGiveTheSameRecord) {
  PtqConfig one = SmallConfig();
  one.threads = 1;
  PtqConfig two = SmallConfig();
  two.threads = 2;
  const absl::StatusOr<nlohmann::json> a = RunPtq(one);
  ASSERT_TRUE(a.ok()) << a.status();
  const absl::StatusOr<nlohmann::json> b = RunPtq(two);
  ASSERT_TRUE(b.ok()) << b.status();
  nlohmann::json a_part = DeterministicPart(*a);
  nlohmann::json b_part = DeterministicPart(*b);
  EXPECT_EQ(a_part["config"]["threads"], 1);
  EXPECT_EQ(b_part["config"]["threads"], 2);
  a_part["config"].erase("threads");
  b_part["config"].erase("threads");
  EXPECT_EQ(a_part.dump(2), b_part.dump(2));
}

TEST(PtqDeterminismTest, BadConfigNamesTheSetting) {
  PtqConfig c = SmallConfig();
  c.weight_granularity = "per_row";
  EXPECT_NE(RunPtq(c).status().message().find("per_row"), std::string::npos);
  c = SmallConfig();
  c.quantizer = "tflite";
  EXPECT_NE(RunPtq(c).status().message().find("tflite"), std::string::npos);
  c = SmallConfig();
  c.calibrator = "kl_divergence";
  EXPECT_EQ(RunPtq(c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::experiments
