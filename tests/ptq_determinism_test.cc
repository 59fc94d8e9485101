// Reproducibility of the main job: the same PTQ config and seed, run twice in one process, gives
// byte-identical records apart from their "timing" sections, and so does the same config on 1
// and on 2 threads apart from the "threads" setting itself; another calibration seed changes
// the calibration image list (and so the record). A small but real run: ResNet20 from the shared
// checkpoint, 64 calibration images, 200 test images. The same small run also checks that the
// weight calibrator setting reaches the weights and the record, and that a wrong one is refused.
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

// weight_calibrator chooses the weights' observer: per-channel MSE clips weight ranges that
// min-max keeps whole, so the quantized layers' SQNR must change; the record names the
// calibrator either way (the backend's default when the setting is empty).
TEST(PtqDeterminismTest, WeightCalibratorSelectsTheWeightObserver) {
  const absl::StatusOr<nlohmann::json> minmax = RunPtq(SmallConfig());
  ASSERT_TRUE(minmax.ok()) << minmax.status();
  EXPECT_EQ((*minmax)["config"]["weight_calibrator"], "per_channel_minmax");
  PtqConfig c = SmallConfig();
  c.weight_calibrator = "per_channel_mse";
  const absl::StatusOr<nlohmann::json> mse = RunPtq(c);
  ASSERT_TRUE(mse.ok()) << mse.status();
  EXPECT_EQ((*mse)["config"]["weight_calibrator"], "per_channel_mse");
  EXPECT_NE((*minmax)["results"]["per_layer_sqnr_db"].dump(),
            (*mse)["results"]["per_layer_sqnr_db"].dump());

  c.weight_granularity = "per_tensor";
  c.weight_calibrator = "mse";
  const absl::StatusOr<nlohmann::json> per_tensor = RunPtq(c);
  ASSERT_TRUE(per_tensor.ok()) << per_tensor.status();
  EXPECT_EQ((*per_tensor)["config"]["weight_calibrator"], "mse");

  // A per-channel calibrator for per-tensor weights, and the reverse: refused, naming it.
  c.weight_calibrator = "per_channel_mse";
  EXPECT_NE(RunPtq(c).status().message().find("per_channel_mse"), std::string::npos);
  c.weight_granularity = "per_channel";
  c.weight_calibrator = "mse";
  EXPECT_EQ(RunPtq(c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::experiments
