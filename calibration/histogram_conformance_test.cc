// The `histogram` observer against PyTorch 1.13's HistogramObserver on the same batches: the
// collected histogram's range and the L2 search's result must be bit-identical, so that scales
// are bit-identical and zero points identical. Inputs: normal, heavy-tailed, post-ReLU,
// constant, tiny and huge values over several batches of growing spread (so the range grows and
// PyTorch's re-binning runs), for int8/uint8, affine/symmetric and the restricted [-127, 127].
//
// Why this can be exact: collection is integer counts plus PyTorch's float32/double operations
// reproduced one by one. The one place qlab cannot follow PyTorch's operation order is the
// float32 sum of 2048 per-bin errors inside the search (PyTorch's vectorized reduction order);
// qlab sums in double and rounds once. That could only change a result when two candidate
// errors tie to within an ulp; if it ever does, the test reports it as a mismatch, not silently.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calibration/histogram_observers.h"
#include "calibration/registry.h"
#include "calibration/torch_reference.h"
#include "gtest/gtest.h"

namespace qlab::calibration {
namespace {

using testing::FloatBits;

TEST(HistogramConformanceTest, MatchesPyTorchHistogramObserver) {
  const std::vector<QuantTarget> targets = {
      {DType::kUInt8, 0, 255, QScheme::kPerTensorAffine},
      {DType::kInt8, -128, 127, QScheme::kPerTensorAffine},
      {DType::kInt8, -128, 127, QScheme::kPerTensorSymmetric},
      {DType::kInt8, -127, 127, QScheme::kPerTensorSymmetric},
      {DType::kUInt8, 0, 255, QScheme::kPerTensorSymmetric}};
  std::vector<testing::TorchCase> cases;
  uint32_t seed = 100;
  for (testing::Distribution d : testing::AllDistributions()) {
    for (int batches : {1, 4}) {
      std::vector<Tensor> data = testing::MakeBatches(d, seed++, {4, 8, 16}, batches);
      if (d == testing::Distribution::kHuge) {
        // PyTorch 1.13's HistogramObserver passes int(min_val) to torch.histc, which fails
        // ("Overflow when unpacking long") beyond 2^63: huge here means ~1e6 * N(0, 1).
        for (Tensor& t : data) {
          for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] *= 1e-24f;
        }
      }
      for (const QuantTarget& t : targets) {
        cases.push_back({"histogram", 0.0, 0, 2048, t, data});
      }
    }
  }
  absl::StatusOr<std::vector<testing::TorchResult>> torch = testing::RunTorchObservers(cases);
  ASSERT_TRUE(torch.ok()) << torch.status();
  int compared = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const testing::TorchCase& c = cases[i];
    auto observer = CreateObserver("histogram").value();
    for (const Tensor& batch : c.batches) ASSERT_TRUE(observer->Observe(batch).ok());
    const std::string where =
        absl::StrCat("case ", i, " (", testing::DistributionName(testing::AllDistributions()[i /
                     (2 * targets.size())]), ", ", c.batches.size(), " batches) ",
                     QSchemeName(c.target.qscheme), " ", c.target.quant_min, "..",
                     c.target.quant_max);
    // The collected range (PyTorch's min_val / max_val after its relaxations).
    const Histogram* h = CollectedHistogram(*observer);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(FloatBits(h->min()), FloatBits((*torch)[i].mins[0]))
        << where << ": qlab min " << h->min() << ", PyTorch " << (*torch)[i].mins[0];
    EXPECT_EQ(FloatBits(h->max()), FloatBits((*torch)[i].maxs[0]))
        << where << ": qlab max " << h->max() << ", PyTorch " << (*torch)[i].maxs[0];
    absl::StatusOr<QuantParams> params = observer->ComputeQParams(c.target);
    ASSERT_TRUE(params.ok()) << params.status();
    EXPECT_EQ(FloatBits(params->scales[0]), FloatBits((*torch)[i].scales[0]))
        << where << ": qlab scale " << params->scales[0] << ", PyTorch "
        << (*torch)[i].scales[0];
    EXPECT_EQ(params->zero_points[0], (*torch)[i].zero_points[0]) << where;
    ++compared;
  }
  EXPECT_EQ(compared, 60);
}

}  // namespace
}  // namespace qlab::calibration
