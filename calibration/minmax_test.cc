// Unit tests of the min-max family: the NaN/Inf policy, empty and constant inputs, channel
// checks, Reset, Merge (exact for min-max, sequential-feeding-equivalent for moving averages),
// Clone and SaveState/RestoreState. PyTorch conformance is minmax_conformance_test.
#include "calibration/minmax.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
const QuantTarget kInt8Affine{DType::kInt8, -128, 127, QScheme::kPerTensorAffine};
const QuantTarget kInt8PerChannel{DType::kInt8, -128, 127, QScheme::kPerChannelAffine};

Tensor FromValues(const std::vector<float>& v, Shape shape = {}) {
  if (shape.empty()) shape = {static_cast<int64_t>(v.size())};
  Tensor t = Tensor::Create(DType::kFloat32, shape).value();
  for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = v[i];
  return t;
}

Tensor Random(uint32_t seed, Shape shape, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  Tensor t = Tensor::Create(DType::kFloat32, shape).value();
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

std::unique_ptr<Observer> MinMax(bool per_channel = false, int axis = -1, bool skip = false) {
  ObserverOptions options;
  options.channel_axis = axis;
  options.skip_non_finite = skip;
  return MakeMinMaxObserver({per_channel, std::nullopt}, options);
}
std::unique_ptr<Observer> MovingAverage(double c, bool per_channel = false, int axis = -1) {
  ObserverOptions options;
  options.channel_axis = axis;
  return MakeMinMaxObserver({per_channel, c}, options);
}

TEST(MinMaxObserverTest, TracksRunningRange) {
  auto o = MinMax();
  ASSERT_TRUE(o->Observe(FromValues({1.0f, -2.0f, 3.0f})).ok());
  ASSERT_TRUE(o->Observe(FromValues({0.5f, 4.0f})).ok());
  const auto r = o->ComputeRanges(kInt8Affine).value();
  EXPECT_EQ(r.mins, std::vector<float>{-2.0f});
  EXPECT_EQ(r.maxs, std::vector<float>{4.0f});
  EXPECT_EQ(o->num_batches(), 2);
  EXPECT_EQ(o->spec(), "minmax");
}

TEST(MinMaxObserverTest, MovingAverageFollowsPyTorchRecursion) {
  auto o = MovingAverage(0.25);
  ASSERT_TRUE(o->Observe(FromValues({-1.0f, 1.0f})).ok());  // first batch sets the range
  ASSERT_TRUE(o->Observe(FromValues({-5.0f, 9.0f})).ok());
  const auto r = o->ComputeRanges(kInt8Affine).value();
  EXPECT_EQ(r.mins[0], -1.0f + 0.25f * (-5.0f + 1.0f));
  EXPECT_EQ(r.maxs[0], 1.0f + 0.25f * (9.0f - 1.0f));
  EXPECT_EQ(o->spec(), "moving_average:c=0.25");
}

TEST(MinMaxObserverTest, NonFiniteIsAnErrorNamingCountAndIndex) {
  for (float bad : {kNaN, kInf, -kInf}) {
    auto o = MinMax();
    const absl::Status s = o->Observe(FromValues({1.0f, 2.0f, bad, bad}));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("2 non-finite"), std::string::npos) << s;
    EXPECT_NE(s.message().find("flat index 2"), std::string::npos) << s;
    EXPECT_EQ(o->num_batches(), 0);
  }
}

TEST(MinMaxObserverTest, SkipNonFiniteCountsThem) {
  auto o = MinMax(false, -1, /*skip=*/true);
  ASSERT_TRUE(o->Observe(FromValues({kNaN, 1.0f, -kInf, -3.0f, kInf})).ok());
  EXPECT_EQ(o->non_finite_skipped(), 3);
  const auto r = o->ComputeRanges(kInt8Affine).value();
  EXPECT_EQ(r.mins[0], -3.0f);
  EXPECT_EQ(r.maxs[0], 1.0f);
  // A batch of nothing but NaN adds no data.
  ASSERT_TRUE(o->Observe(FromValues({kNaN, kNaN})).ok());
  EXPECT_EQ(o->num_batches(), 1);
  EXPECT_EQ(o->non_finite_skipped(), 5);
}

TEST(MinMaxObserverTest, PerChannelSkipsNonFinitePerChannel) {
  // [2 channels, 3] along axis 0: channel 1 keeps only its finite values.
  auto o = MinMax(true, 0, /*skip=*/true);
  ASSERT_TRUE(o->Observe(FromValues({1, 2, 3, kNaN, -4, kInf}, {2, 3})).ok());
  const auto r = o->ComputeRanges(kInt8PerChannel).value();
  EXPECT_EQ(r.mins, (std::vector<float>{1, -4}));
  EXPECT_EQ(r.maxs, (std::vector<float>{3, -4}));
  EXPECT_EQ(o->non_finite_skipped(), 2);
}

TEST(MinMaxObserverTest, RejectsEmptyNonFloatAndMismatchedChannels) {
  auto o = MinMax(true, 1);
  EXPECT_EQ(o->Observe(Tensor::Create(DType::kFloat32, {0, 3}).value()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(o->Observe(Tensor::Create(DType::kInt8, {2, 3}).value()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(o->Observe(Tensor::Create(DType::kFloat32, {4}).value()).code(),
            absl::StatusCode::kInvalidArgument);  // axis 1 out of range
  ASSERT_TRUE(o->Observe(Random(1, {2, 3})).ok());
  const absl::Status s = o->Observe(Random(2, {2, 4}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4 channels"), std::string::npos) << s;
}

TEST(MinMaxObserverTest, NothingObservedAndSchemeMismatch) {
  auto o = MinMax();
  EXPECT_EQ(o->ComputeQParams(kInt8Affine).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(o->Observe(FromValues({1.0f})).ok());
  EXPECT_EQ(o->ComputeQParams(kInt8PerChannel).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto pc = MinMax(true, 0);
  ASSERT_TRUE(pc->Observe(FromValues({1.0f})).ok());
  EXPECT_EQ(pc->ComputeQParams(kInt8Affine).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MinMaxObserverTest, ConstantAndZeroTensorsGiveValidParams) {
  for (float v : {0.0f, 3.0f, -2.0f}) {
    auto o = MinMax();
    ASSERT_TRUE(o->Observe(FromValues({v, v, v})).ok());
    const auto p = o->ComputeQParams(kInt8Affine);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_TRUE(p->Validate().ok()) << p->DebugString();
  }
}

TEST(MinMaxObserverTest, ResetForgets) {
  auto o = MinMax(true, 0);
  ASSERT_TRUE(o->Observe(Random(1, {3, 4})).ok());
  o->Reset();
  EXPECT_EQ(o->num_batches(), 0);
  // A different channel count is fine after Reset.
  EXPECT_TRUE(o->Observe(Random(1, {5, 4})).ok());
  EXPECT_EQ(o->ComputeRanges(kInt8PerChannel).value().mins.size(), 5u);
}

TEST(MinMaxObserverTest, MergeEqualsFeedingBoth) {
  for (bool per_channel : {false, true}) {
    auto a = MinMax(per_channel, 1), b = MinMax(per_channel, 1), both = MinMax(per_channel, 1);
    for (uint32_t i = 0; i < 6; ++i) {
      const Tensor x = Random(i, {4, 3, 5}, 1.0f + static_cast<float>(i));
      ASSERT_TRUE((i % 2 == 0 ? a : b)->Observe(x).ok());
      ASSERT_TRUE(both->Observe(x).ok());
    }
    ASSERT_TRUE(a->Merge(*b).ok());
    const QuantTarget t = per_channel ? kInt8PerChannel : kInt8Affine;
    EXPECT_EQ(a->ComputeRanges(t).value().mins, both->ComputeRanges(t).value().mins);
    EXPECT_EQ(a->ComputeRanges(t).value().maxs, both->ComputeRanges(t).value().maxs);
    EXPECT_EQ(a->num_batches(), 6);
  }
}

TEST(MinMaxObserverTest, MovingAverageMergeEqualsSequentialFeedingUpToRounding) {
  for (bool per_channel : {false, true}) {
    auto a = MovingAverage(0.1, per_channel, 0), b = MovingAverage(0.1, per_channel, 0);
    auto sequential = MovingAverage(0.1, per_channel, 0);
    for (uint32_t i = 0; i < 10; ++i) {
      const Tensor x = Random(i, {3, 50}, 1.0f + 0.5f * static_cast<float>(i));
      ASSERT_TRUE((i < 4 ? a : b)->Observe(x).ok());
      ASSERT_TRUE(sequential->Observe(x).ok());
    }
    ASSERT_TRUE(a->Merge(*b).ok());
    const QuantTarget t = per_channel ? kInt8PerChannel : kInt8Affine;
    const auto merged = a->ComputeRanges(t).value();
    const auto expected = sequential->ComputeRanges(t).value();
    for (size_t c = 0; c < merged.mins.size(); ++c) {
      // Sequential feeding rounds to float32 at each of its 20 multiply/add steps; the merge
      // evaluates the same affine map in double and rounds once: they agree to a few ulps.
      EXPECT_NEAR(merged.mins[c], expected.mins[c], 1e-5f * std::abs(expected.mins[c]));
      EXPECT_NEAR(merged.maxs[c], expected.maxs[c], 1e-5f * std::abs(expected.maxs[c]));
    }
    // Feeding b first then a would be a different EMA: the merge is order-dependent, and says so.
    auto reversed = MovingAverage(0.1, per_channel, 0);
    for (uint32_t i : {4, 5, 6, 7, 8, 9, 0, 1, 2, 3}) {
      ASSERT_TRUE(reversed->Observe(Random(i, {3, 50}, 1.0f + 0.5f * i)).ok());
    }
    EXPECT_NE(reversed->ComputeRanges(t).value().maxs[0], expected.maxs[0]);
  }
}

TEST(MinMaxObserverTest, MergeRejectsOtherKindsAndArguments) {
  auto a = MinMax();
  EXPECT_EQ(a->Merge(*MovingAverage(0.01)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MovingAverage(0.01)->Merge(*MovingAverage(0.02)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->Merge(*MinMax(true, 0)).code(), absl::StatusCode::kInvalidArgument);
  auto p3 = MinMax(true, 0), p4 = MinMax(true, 0);
  ASSERT_TRUE(p3->Observe(Random(1, {3, 2})).ok());
  ASSERT_TRUE(p4->Observe(Random(1, {4, 2})).ok());
  EXPECT_EQ(p3->Merge(*p4).code(), absl::StatusCode::kInvalidArgument);
}

TEST(MinMaxObserverTest, MergeIntoEmptyAndSelf) {
  auto a = MovingAverage(0.2), b = MovingAverage(0.2);
  ASSERT_TRUE(b->Observe(Random(3, {10})).ok());
  ASSERT_TRUE(a->Merge(*b).ok());
  EXPECT_EQ(a->ComputeRanges(kInt8Affine).value().mins, b->ComputeRanges(kInt8Affine).value().mins);
  auto m = MinMax();
  ASSERT_TRUE(m->Observe(Random(3, {10})).ok());
  const auto before = m->ComputeRanges(kInt8Affine).value();
  ASSERT_TRUE(m->Merge(*m).ok());
  EXPECT_EQ(m->ComputeRanges(kInt8Affine).value().mins, before.mins);
  EXPECT_EQ(m->num_batches(), 2);
}

TEST(MinMaxObserverTest, SaveRestoreRoundTripsAndContinuesIdentically) {
  for (const bool per_channel : {false, true}) {
    for (const std::optional<double> c : {std::optional<double>(), std::optional<double>(0.05)}) {
      ObserverOptions options;
      options.channel_axis = per_channel ? 1 : -1;
      auto a = MakeMinMaxObserver({per_channel, c}, options);
      ASSERT_TRUE(a->Observe(Random(1, {2, 3, 4})).ok());
      ASSERT_TRUE(a->Observe(Random(2, {2, 3, 4}, 3.0f)).ok());
      auto b = MakeMinMaxObserver({per_channel, c}, options);
      ASSERT_TRUE(b->RestoreState(a->SaveState()).ok());
      const Tensor next = Random(3, {2, 3, 4}, 2.0f);
      ASSERT_TRUE(a->Observe(next).ok());
      ASSERT_TRUE(b->Observe(next).ok());
      const QuantTarget t = per_channel ? kInt8PerChannel : kInt8Affine;
      EXPECT_EQ(a->ComputeRanges(t).value().mins, b->ComputeRanges(t).value().mins);
      EXPECT_EQ(a->ComputeRanges(t).value().maxs, b->ComputeRanges(t).value().maxs);
      EXPECT_EQ(b->num_batches(), 3);
      auto clone = a->Clone();
      EXPECT_EQ(clone->ComputeRanges(t).value().maxs, a->ComputeRanges(t).value().maxs);
    }
  }
}

TEST(MinMaxObserverTest, RestoreRejectsMalformedState) {
  auto a = MinMax(true, 0);
  ASSERT_TRUE(a->Observe(Random(1, {3, 2})).ok());
  ObserverState state = a->SaveState();
  auto fresh = [] { return MinMax(true, 0); };
  ObserverState truncated = state;
  truncated.binary.resize(truncated.binary.size() - 1);
  EXPECT_EQ(fresh()->RestoreState(truncated).code(), absl::StatusCode::kDataLoss);
  ObserverState longer = state;
  longer.binary += "x";
  EXPECT_EQ(fresh()->RestoreState(longer).code(), absl::StatusCode::kDataLoss);
  ObserverState not_json = state;
  not_json.json = "{\"spec\": ";
  EXPECT_EQ(fresh()->RestoreState(not_json).code(), absl::StatusCode::kDataLoss);
  auto j = nlohmann::json::parse(state.json);
  j["num_channels"] = int64_t{1} << 40;
  const absl::Status huge = fresh()->RestoreState({j.dump(), state.binary});
  EXPECT_EQ(huge.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(huge.message().find("num_channels"), std::string::npos) << huge;
  j = nlohmann::json::parse(state.json);
  j.erase("num_batches");
  const absl::Status missing = fresh()->RestoreState({j.dump(), state.binary});
  EXPECT_NE(missing.message().find("num_batches"), std::string::npos) << missing;
  // A NaN range in the payload.
  ObserverState nan_state = state;
  const float nan = kNaN;
  std::memcpy(&nan_state.binary[0], &nan, sizeof(nan));
  EXPECT_EQ(fresh()->RestoreState(nan_state).code(), absl::StatusCode::kDataLoss);
  // State of another kind.
  EXPECT_EQ(MinMax()->RestoreState(state).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qlab::calibration
