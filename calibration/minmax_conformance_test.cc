// The min-max family against PyTorch 1.13 on the same batches: MinMaxObserver,
// MovingAverageMinMaxObserver, PerChannelMinMaxObserver and
// MovingAveragePerChannelMinMaxObserver must give bit-identical ranges and scales and identical
// zero points, for normal, heavy-tailed, post-ReLU, constant, tiny and huge inputs over several
// batches, for int8/uint8, affine/symmetric and the restricted [-127, 127] range. Nothing here
// has a tolerance: the arithmetic is the same float32 operations in the same order.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calibration/registry.h"
#include "calibration/torch_reference.h"
#include "gtest/gtest.h"

namespace qlab::calibration {
namespace {

using testing::AllDistributions;
using testing::DistributionName;
using testing::FloatBits;
using testing::MakeBatches;
using testing::TorchCase;
using testing::TorchResult;

std::vector<QuantTarget> Targets(bool per_channel) {
  const QScheme affine = per_channel ? QScheme::kPerChannelAffine : QScheme::kPerTensorAffine;
  const QScheme symmetric =
      per_channel ? QScheme::kPerChannelSymmetric : QScheme::kPerTensorSymmetric;
  return {{DType::kInt8, -128, 127, affine},     {DType::kUInt8, 0, 255, affine},
          {DType::kInt8, -128, 127, symmetric},  {DType::kInt8, -127, 127, symmetric},
          {DType::kUInt8, 0, 255, symmetric}};
}

struct QlabCase {
  std::string spec;
  ObserverOptions options;
};

void ExpectSameFloats(const std::vector<float>& ours, const std::vector<float>& torch,
                      const std::string& what, const std::string& where) {
  ASSERT_EQ(ours.size(), torch.size()) << what << " " << where;
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_EQ(FloatBits(ours[i]), FloatBits(torch[i]))
        << what << "[" << i << "] " << where << ": qlab " << ours[i] << ", PyTorch " << torch[i];
  }
}

TEST(MinMaxConformanceTest, MatchesPyTorchObservers) {
  struct Kind {
    std::string torch_name;
    std::string spec;
    bool per_channel;
    double c;
    int axis;
  };
  const std::vector<Kind> kinds = {
      {"minmax", "minmax", false, 0.0, 0},
      {"moving_average", "moving_average", false, 0.01, 0},
      {"moving_average", "moving_average:c=0.3", false, 0.3, 0},
      {"per_channel_minmax", "per_channel_minmax", true, 0.0, 1},
      {"per_channel_minmax", "per_channel_minmax", true, 0.0, 3},
      {"per_channel_moving_average", "per_channel_moving_average", true, 0.01, 1},
      {"per_channel_moving_average", "per_channel_moving_average:c=0.3", true, 0.3, 0},
  };
  std::vector<TorchCase> torch_cases;
  std::vector<QlabCase> qlab_cases;
  uint32_t seed = 1;
  for (const Kind& kind : kinds) {
    for (testing::Distribution d : AllDistributions()) {
      // [2, 3, 4, 5]: 3 channels along axis 1, 5 along axis 3; 4 batches.
      const std::vector<Tensor> batches = MakeBatches(d, seed++, {2, 3, 4, 5}, 4);
      for (const QuantTarget& target : Targets(kind.per_channel)) {
        torch_cases.push_back({kind.torch_name, kind.c, kind.axis, 2048, target, batches});
        ObserverOptions options;
        options.channel_axis = kind.per_channel ? kind.axis : -1;
        qlab_cases.push_back({kind.spec, options});
      }
    }
  }
  absl::StatusOr<std::vector<TorchResult>> torch = testing::RunTorchObservers(torch_cases);
  ASSERT_TRUE(torch.ok()) << torch.status();

  for (size_t i = 0; i < torch_cases.size(); ++i) {
    const TorchCase& tc = torch_cases[i];
    absl::StatusOr<std::unique_ptr<Observer>> observer =
        CreateObserver(qlab_cases[i].spec, qlab_cases[i].options);
    ASSERT_TRUE(observer.ok()) << observer.status();
    for (const Tensor& batch : tc.batches) ASSERT_TRUE((*observer)->Observe(batch).ok());
    const std::string where = absl::StrCat(qlab_cases[i].spec, " axis ", tc.axis, " batches #",
                                           i, " target ", QSchemeName(tc.target.qscheme), " ",
                                           tc.target.quant_min, "..", tc.target.quant_max);
    absl::StatusOr<Observer::Ranges> ranges = (*observer)->ComputeRanges(tc.target);
    ASSERT_TRUE(ranges.ok()) << ranges.status();
    ExpectSameFloats(ranges->mins, (*torch)[i].mins, "min", where);
    ExpectSameFloats(ranges->maxs, (*torch)[i].maxs, "max", where);
    absl::StatusOr<QuantParams> params = (*observer)->ComputeQParams(tc.target);
    ASSERT_TRUE(params.ok()) << params.status();
    ExpectSameFloats(params->scales, (*torch)[i].scales, "scale", where);
    EXPECT_EQ(params->zero_points, (*torch)[i].zero_points) << where;
  }
}

}  // namespace
}  // namespace qlab::calibration
