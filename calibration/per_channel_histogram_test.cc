// Tests of the per-channel histogram observers (per_channel_histogram.h): every channel's qparams
// equal, bit for bit, those of the per-tensor observer of the same kind fed exactly that
// channel's values, on NCHW (short and long runs), NHWC, weight and 2-D layouts, over batches that
// widen the range, with channels whose ranges differ, constant and all-zero channels; merge equal
// to per-channel merges of the per-tensor histograms (and to sequential feeding where the ranges
// agree); collect once / compute many; save/load; the NaN/Inf, empty, axis and target errors.
// Counts are integers and ranges come from the same arithmetic: no tolerance anywhere.
//
// Randomness: std::mt19937 seeded per case (the seed is in every failure message).
#include "calibration/per_channel_histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "calibration/histogram_observers.h"
#include "calibration/registry.h"
#include "core/check.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace qlab::calibration {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

const QuantTarget kInt8PerChannelAffine{DType::kInt8, -128, 127, QScheme::kPerChannelAffine};
const QuantTarget kInt8PerChannelSymmetric{DType::kInt8, -127, 127, QScheme::kPerChannelSymmetric};
const QuantTarget kUInt8PerChannelAffine{DType::kUInt8, 0, 255, QScheme::kPerChannelAffine};
const QuantTarget kPerChannelTargets[] = {kInt8PerChannelAffine, kInt8PerChannelSymmetric,
                                          kUInt8PerChannelAffine};

QuantTarget PerTensor(const QuantTarget& t) {
  QuantTarget p = t;
  p.qscheme = IsSymmetric(t.qscheme) ? QScheme::kPerTensorSymmetric : QScheme::kPerTensorAffine;
  return p;
}

// The four per-channel kinds with their per-tensor counterparts, at the default 2048 bins and
// with the other binning, so both collection rules are compared.
struct KindPair {
  const char* per_channel;
  const char* per_tensor;
  bool exact_binning;  // torch_binning=0
};
const KindPair kKinds[] = {
    {"per_channel_histogram", "histogram", false},
    {"per_channel_histogram:torch_binning=0", "histogram:torch_binning=0", true},
    {"per_channel_percentile:99.9", "percentile:99.9", true},
    {"per_channel_percentile:99,torch_binning=1", "percentile:99,torch_binning=1", false},
    {"per_channel_entropy", "entropy", true},
    {"per_channel_mse", "mse", true},
    {"per_channel_mse:bins=256,torch_binning=1", "mse:bins=256,torch_binning=1", false},
};

struct Layout {
  const char* name;
  Shape shape;
  int axis;
};
// NCHW with runs shorter than kMinRunLength (transposed) and longer (binned in place), NHWC
// (axis last, transposed), conv weights [O, I, kh, kw] on axis 0 (one run per channel), and a
// 2-D [rows, C] matrix on axis 1 given as -1.
const Layout kLayouts[] = {
    {"NCHW short runs", {3, 5, 6, 7}, 1},
    {"NCHW long runs", {2, 4, 9, 11}, 1},
    {"NHWC", {3, 6, 7, 5}, 3},
    {"weights OIHW", {6, 4, 3, 3}, 0},
    {"[rows, C], axis -1", {300, 7}, -1},
};

int ResolvedAxis(const Layout& l) {
  return l.axis < 0 ? l.axis + static_cast<int>(l.shape.size()) : l.axis;
}

// Channel c's values ~ N(shift_c, scale_c) with shift and scale differing per channel (ranges
// differ), `widen` times wider in the second batch (re-binning runs); channel 1 is constant and
// channel 2 all zero when `special_channels`.
Tensor MakeBatch(const Layout& l, uint32_t seed, float widen, bool special_channels = true) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t = Tensor::Create(DType::kFloat32, l.shape).value();
  const int axis = ResolvedAxis(l);
  size_t inner = 1;
  for (size_t a = static_cast<size_t>(axis) + 1; a < l.shape.size(); ++a) {
    inner *= static_cast<size_t>(l.shape[a]);
  }
  const size_t channels = static_cast<size_t>(l.shape[static_cast<size_t>(axis)]);
  float* x = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    const size_t c = (static_cast<size_t>(i) / inner) % channels;
    const float scale = widen * (0.3f + 0.9f * static_cast<float>(c));
    const float shift = (c % 3 == 0) ? 0.0f : 0.5f * static_cast<float>(c);
    x[i] = shift + scale * normal(rng);
    if (special_channels && c == 1) x[i] = 2.75f;
    if (special_channels && c == 2) x[i] = 0.0f;
  }
  return t;
}

// Channel c's values of x (any order: histograms do not depend on it; this keeps tensor order).
Tensor ChannelValues(const Tensor& x, int axis, size_t c) {
  size_t inner = 1;
  for (int a = axis + 1; a < x.rank(); ++a) inner *= static_cast<size_t>(x.dim(a));
  const size_t channels = static_cast<size_t>(x.dim(axis));
  std::vector<float> v;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if ((static_cast<size_t>(i) / inner) % channels == c) v.push_back(x.data<float>()[i]);
  }
  Tensor t = Tensor::Create(DType::kFloat32, {static_cast<int64_t>(v.size())}).value();
  std::copy(v.begin(), v.end(), t.data<float>());
  return t;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

std::unique_ptr<Observer> Create(const std::string& spec, int axis, bool skip = false) {
  ObserverOptions options;
  options.channel_axis = axis;
  options.skip_non_finite = skip;
  auto o = CreateObserver(spec, options);
  QLAB_CHECK_MSG(o.ok(), o.status().ToString().c_str());
  return *std::move(o);
}

// Per channel: the per-channel observer's qparams and ranges against the per-tensor observer's
// fed that channel's values of every batch.
void ExpectEveryChannelMatchesPerTensor(const KindPair& kind, const Layout& layout,
                                        const std::vector<Tensor>& batches,
                                        const std::string& trace) {
  auto per_channel = Create(kind.per_channel, layout.axis);
  for (const Tensor& b : batches) ASSERT_TRUE(per_channel->Observe(b).ok()) << trace;
  const int axis = ResolvedAxis(layout);
  const size_t channels = static_cast<size_t>(layout.shape[static_cast<size_t>(axis)]);
  for (const QuantTarget& target : kPerChannelTargets) {
    const auto qp = per_channel->ComputeQParams(target);
    ASSERT_TRUE(qp.ok()) << trace << ": " << qp.status();
    ASSERT_EQ(qp->num_channels(), channels) << trace;
    EXPECT_EQ(qp->axis, axis) << trace;
    const auto ranges = per_channel->ComputeRanges(target).value();
    for (size_t c = 0; c < channels; ++c) {
      auto per_tensor = Create(kind.per_tensor, -1);
      for (const Tensor& b : batches) {
        ASSERT_TRUE(per_tensor->Observe(ChannelValues(b, axis, c)).ok()) << trace;
      }
      const QuantParams expected = per_tensor->ComputeQParams(PerTensor(target)).value();
      const auto expected_range = per_tensor->ComputeRanges(PerTensor(target)).value();
      const std::string where = trace + ", " + QSchemeName(target.qscheme) + " " +
                                std::string(DTypeName(target.dtype)) + ", channel " +
                                std::to_string(c);
      EXPECT_EQ(Bits(qp->scales[c]), Bits(expected.scales[0]))
          << where << ": " << qp->scales[c] << " vs " << expected.scales[0];
      EXPECT_EQ(qp->zero_points[c], expected.zero_points[0]) << where;
      EXPECT_EQ(ranges.mins[c], expected_range.mins[0]) << where;
      EXPECT_EQ(ranges.maxs[c], expected_range.maxs[0]) << where;
    }
  }
}

TEST(PerChannelHistogramTest, EveryChannelEqualsThePerTensorObserverOfItsValues) {
  uint32_t seed = 100;
  for (const KindPair& kind : kKinds) {
    for (const Layout& layout : kLayouts) {
      const std::vector<Tensor> batches = {MakeBatch(layout, seed, 1.0f),
                                           MakeBatch(layout, seed + 1, 1.6f),
                                           MakeBatch(layout, seed + 2, 0.5f)};
      ExpectEveryChannelMatchesPerTensor(
          kind, layout, batches,
          std::string(kind.per_channel) + " on " + layout.name + ", seed " + std::to_string(seed));
      seed += 3;
    }
  }
}

TEST(PerChannelHistogramTest, LargeChannelsSplitOverCoresStillMatch) {
  // Channels of kParallelMinElements values or more: Histogram::Add splits each over the cores.
  const Layout layout{"[2, 2^18 + 5]", {2, (int64_t{1} << 18) + 5}, 0};
  const std::vector<Tensor> batches = {MakeBatch(layout, 7, 1.0f, false),
                                       MakeBatch(layout, 8, 2.0f, false)};
  ExpectEveryChannelMatchesPerTensor(kKinds[0], layout, batches, "large channels, histogram");
  ExpectEveryChannelMatchesPerTensor(kKinds[5], layout, batches, "large channels, mse");
}

TEST(PerChannelHistogramTest, ConstantAndZeroChannelsGiveValidParameters) {
  const Layout layout = kLayouts[0];
  for (const KindPair& kind : kKinds) {
    auto o = Create(kind.per_channel, layout.axis);
    ASSERT_TRUE(o->Observe(MakeBatch(layout, 5, 1.0f)).ok());
    for (const QuantTarget& target : kPerChannelTargets) {
      const auto qp = o->ComputeQParams(target);
      ASSERT_TRUE(qp.ok()) << kind.per_channel << ": " << qp.status();
      EXPECT_TRUE(qp->Validate().ok()) << kind.per_channel << ": " << qp->Validate();
      // Channel 1 holds only 2.75: its range must contain it, channel 2 (zeros) gets [0, 0].
      const auto r = o->ComputeRanges(target).value();
      EXPECT_LE(r.mins[1], 2.75f) << kind.per_channel;
      EXPECT_GE(r.maxs[1], 2.75f) << kind.per_channel;
      EXPECT_EQ(r.maxs[2] - r.mins[2], 0.0f) << kind.per_channel;
    }
  }
}

// Histograms of two observers are equal: same range and identical counts.
void ExpectSameHistograms(const Observer& a, const Observer& b, const std::string& trace) {
  const auto* ha = CollectedPerChannelHistograms(a);
  const auto* hb = CollectedPerChannelHistograms(b);
  ASSERT_NE(ha, nullptr) << trace;
  ASSERT_NE(hb, nullptr) << trace;
  ASSERT_EQ(ha->size(), hb->size()) << trace;
  for (size_t c = 0; c < ha->size(); ++c) {
    EXPECT_EQ((*ha)[c].min(), (*hb)[c].min()) << trace << ", channel " << c;
    EXPECT_EQ((*ha)[c].max(), (*hb)[c].max()) << trace << ", channel " << c;
    EXPECT_EQ((*ha)[c].counts(), (*hb)[c].counts()) << trace << ", channel " << c;
  }
}

TEST(PerChannelHistogramTest, MergeIsThePerChannelMergeOfThePerTensorHistograms) {
  const Layout layout = kLayouts[2];  // NHWC
  const int axis = ResolvedAxis(layout);
  for (const KindPair& kind : kKinds) {
    // Different ranges per channel and per shard: re-binning by exact overlap, per channel.
    const Tensor shard1 = MakeBatch(layout, 11, 1.0f), shard2 = MakeBatch(layout, 12, 2.5f);
    auto a = Create(kind.per_channel, layout.axis);
    auto b = Create(kind.per_channel, layout.axis);
    ASSERT_TRUE(a->Observe(shard1).ok());
    ASSERT_TRUE(b->Observe(shard2).ok());
    ASSERT_TRUE(a->Merge(*b).ok());
    EXPECT_EQ(a->num_batches(), 2);
    const auto* merged = CollectedPerChannelHistograms(*a);
    ASSERT_NE(merged, nullptr);
    for (size_t c = 0; c < merged->size(); ++c) {
      auto pa = Create(kind.per_tensor, -1), pb = Create(kind.per_tensor, -1);
      ASSERT_TRUE(pa->Observe(ChannelValues(shard1, axis, c)).ok());
      ASSERT_TRUE(pb->Observe(ChannelValues(shard2, axis, c)).ok());
      ASSERT_TRUE(pa->Merge(*pb).ok());
      const Histogram* expected = CollectedHistogram(*pa);
      EXPECT_EQ((*merged)[c].min(), expected->min()) << kind.per_channel << " channel " << c;
      EXPECT_EQ((*merged)[c].max(), expected->max()) << kind.per_channel << " channel " << c;
      EXPECT_EQ((*merged)[c].counts(), expected->counts()) << kind.per_channel << " channel " << c;
    }
    // Same data in both shards (same ranges): with exact binning, merge equals feeding both to
    // one observer. (PyTorch's binning does not: a batch after a constant one restarts the
    // histogram, and its range adjustment may widen the range on a repeated batch.)
    if (!kind.exact_binning) continue;
    auto c1 = Create(kind.per_channel, layout.axis), c2 = Create(kind.per_channel, layout.axis);
    auto single = Create(kind.per_channel, layout.axis);
    ASSERT_TRUE(c1->Observe(shard1).ok());
    ASSERT_TRUE(c2->Observe(shard1).ok());
    ASSERT_TRUE(single->Observe(shard1).ok());
    ASSERT_TRUE(single->Observe(shard1).ok());
    ASSERT_TRUE(c1->Merge(*c2).ok());
    ExpectSameHistograms(*c1, *single, std::string(kind.per_channel) + " same-range merge");
    EXPECT_EQ(c1->ComputeQParams(kInt8PerChannelAffine).value().scales,
              single->ComputeQParams(kInt8PerChannelAffine).value().scales);
    // Into an empty observer and with itself.
    auto empty = Create(kind.per_channel, layout.axis);
    ASSERT_TRUE(empty->Merge(*c2).ok());
    ExpectSameHistograms(*empty, *c2, std::string(kind.per_channel) + " merge into empty");
    ASSERT_TRUE(c2->Merge(*c2).ok());
    EXPECT_EQ(c2->num_batches(), 2);
  }
}

TEST(PerChannelHistogramTest, MergeRefusesOtherKindsAxesAndChannelCounts) {
  auto a = Create("per_channel_entropy", 1);
  ASSERT_TRUE(a->Observe(MakeBatch(kLayouts[0], 1, 1.0f)).ok());
  auto other_kind = Create("per_channel_mse", 1);
  ASSERT_TRUE(other_kind->Observe(MakeBatch(kLayouts[0], 1, 1.0f)).ok());
  EXPECT_EQ(a->Merge(*other_kind).code(), absl::StatusCode::kInvalidArgument);
  auto per_tensor = Create("entropy", -1);
  ASSERT_TRUE(per_tensor->Observe(MakeBatch(kLayouts[0], 1, 1.0f)).ok());
  EXPECT_EQ(a->Merge(*per_tensor).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(per_tensor->Merge(*a).code(), absl::StatusCode::kInvalidArgument);
  auto other_axis = Create("per_channel_entropy", 0);  // 3 channels along axis 0
  ASSERT_TRUE(other_axis->Observe(MakeBatch(kLayouts[0], 1, 1.0f)).ok());
  const absl::Status s = a->Merge(*other_axis);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("axis"), std::string::npos) << s;
}

TEST(PerChannelHistogramTest, CollectOnceComputeManyPerChannel) {
  const Layout layout = kLayouts[1];
  const int axis = ResolvedAxis(layout);
  const std::vector<Tensor> batches = {MakeBatch(layout, 21, 1.0f), MakeBatch(layout, 22, 1.3f)};
  auto collector = Create("per_channel_entropy", layout.axis);
  auto minmax = Create("per_channel_minmax", layout.axis);
  for (const Tensor& b : batches) {
    ASSERT_TRUE(collector->Observe(b).ok());
    ASSERT_TRUE(minmax->Observe(b).ok());
  }
  // kMax from the histograms is the per-channel min-max range.
  const auto max_ranges =
      ComputePerChannelRanges(*collector, {RangeMethod::kMax}, kInt8PerChannelAffine).value();
  const auto expected = minmax->ComputeRanges(kInt8PerChannelAffine).value();
  EXPECT_EQ(max_ranges.mins, expected.mins);
  EXPECT_EQ(max_ranges.maxs, expected.maxs);
  // Other methods from the same collection equal observers of that method fed the data.
  for (const char* spec : {"per_channel_percentile:99.99", "per_channel_mse",
                           "per_channel_histogram:torch_binning=0"}) {
    auto reused = CreateObserverFromHistogram(spec, *collector);
    ASSERT_TRUE(reused.ok()) << spec << ": " << reused.status();
    auto fed = Create(spec, layout.axis);
    for (const Tensor& b : batches) ASSERT_TRUE(fed->Observe(b).ok());
    for (const QuantTarget& target : kPerChannelTargets) {
      const QuantParams a = (*reused)->ComputeQParams(target).value();
      const QuantParams b = fed->ComputeQParams(target).value();
      EXPECT_EQ(a.scales, b.scales) << spec;
      EXPECT_EQ(a.zero_points, b.zero_points) << spec;
      EXPECT_EQ(a.axis, axis);
    }
  }
  // Per tensor <-> per channel, and another binning, are refused.
  EXPECT_EQ(CreateObserverFromHistogram("mse", *collector).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateObserverFromHistogram("per_channel_histogram", *collector).status().code(),
            absl::StatusCode::kInvalidArgument);  // torch_binning=1 vs 0
  auto per_tensor = Create("entropy", -1);
  ASSERT_TRUE(per_tensor->Observe(batches[0]).ok());
  EXPECT_EQ(CreateObserverFromHistogram("per_channel_mse", *per_tensor).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ComputePerChannelRanges(*per_tensor, {RangeMethod::kMax}, kInt8PerChannelAffine)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PerChannelHistogramTest, NonFiniteValuesAreErrorsOrSkippedAndCounted) {
  const Layout layout = kLayouts[2];  // NHWC, 5 channels on axis 3
  Tensor x = MakeBatch(layout, 31, 1.0f);
  x.data<float>()[17] = kNaN;
  x.data<float>()[40] = -kInf;
  for (const KindPair& kind : kKinds) {
    auto strict = Create(kind.per_channel, layout.axis);
    const absl::Status s = strict->Observe(x);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << kind.per_channel;
    EXPECT_NE(s.message().find("contains 2 non-finite"), std::string::npos) << s;
    EXPECT_NE(s.message().find("17"), std::string::npos) << s;  // the first index
    EXPECT_EQ(strict->num_batches(), 0);

    // Skipped: equal to the per-tensor observer (same option) per channel.
    auto skipping = Create(kind.per_channel, layout.axis, /*skip=*/true);
    ASSERT_TRUE(skipping->Observe(x).ok()) << kind.per_channel;
    EXPECT_EQ(skipping->non_finite_skipped(), 2);
    const QuantParams qp = skipping->ComputeQParams(kInt8PerChannelAffine).value();
    for (size_t c = 0; c < 5; ++c) {
      auto per_tensor = Create(kind.per_tensor, -1, /*skip=*/true);
      ASSERT_TRUE(per_tensor->Observe(ChannelValues(x, 3, c)).ok());
      const QuantParams expected =
          per_tensor->ComputeQParams(PerTensor(kInt8PerChannelAffine)).value();
      EXPECT_EQ(Bits(qp.scales[c]), Bits(expected.scales[0])) << kind.per_channel << " " << c;
      EXPECT_EQ(qp.zero_points[c], expected.zero_points[0]) << kind.per_channel << " " << c;
    }
  }
  // A channel with no finite value at all: skipped, then named when its range is asked for.
  Tensor y = MakeBatch(layout, 32, 1.0f);
  for (int64_t i = 4; i < y.numel(); i += 5) y.data<float>()[i] = kNaN;  // all of channel 4
  auto o = Create("per_channel_mse", layout.axis, /*skip=*/true);
  ASSERT_TRUE(o->Observe(y).ok());
  const auto qp = o->ComputeQParams(kInt8PerChannelAffine);
  EXPECT_EQ(qp.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(qp.status().message().find("channel 4"), std::string::npos) << qp.status();
}

TEST(PerChannelHistogramTest, BadInputsAndTargetsAreNamedErrors) {
  auto o = Create("per_channel_percentile:99", 1);
  // Nothing observed.
  EXPECT_EQ(o->ComputeQParams(kInt8PerChannelAffine).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Empty tensor.
  EXPECT_EQ(o->Observe(Tensor::Create(DType::kFloat32, {2, 0, 3}).value()).code(),
            absl::StatusCode::kInvalidArgument);
  // Axis out of range, named.
  auto bad_axis = Create("per_channel_entropy", 4);
  const absl::Status s = bad_axis->Observe(MakeBatch(kLayouts[0], 1, 1.0f));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4"), std::string::npos) << s;
  EXPECT_NE(s.message().find("axis"), std::string::npos) << s;
  // Channel count changing between batches.
  ASSERT_TRUE(o->Observe(MakeBatch(kLayouts[0], 1, 1.0f)).ok());
  const absl::Status changed = o->Observe(MakeBatch(kLayouts[1], 1, 1.0f));
  EXPECT_EQ(changed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(changed.message().find("channels"), std::string::npos) << changed;
  // A per-tensor target.
  const auto per_tensor = o->ComputeQParams({DType::kInt8, -128, 127, QScheme::kPerTensorAffine});
  EXPECT_EQ(per_tensor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(per_tensor.status().message().find("per_tensor_affine"), std::string::npos)
      << per_tensor.status();
  // Reset forgets the channel count.
  o->Reset();
  EXPECT_EQ(o->num_batches(), 0);
  EXPECT_TRUE(o->Observe(MakeBatch(kLayouts[1], 1, 1.0f)).ok());
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}
std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}
void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(PerChannelHistogramTest, SaveLoadRoundTripKeepsEveryChannel) {
  const Layout layout = kLayouts[2];
  for (const KindPair& kind : kKinds) {
    auto o = Create(kind.per_channel, layout.axis, /*skip=*/true);
    const std::string path = TempPath("per_channel.observer");
    // Never observed: round trip of the empty state.
    ASSERT_TRUE(SaveObserver(*o, path).ok());
    auto empty = LoadObserver(path);
    ASSERT_TRUE(empty.ok()) << empty.status();
    EXPECT_EQ((*empty)->ComputeQParams(kInt8PerChannelAffine).status().code(),
              absl::StatusCode::kFailedPrecondition);

    ASSERT_TRUE(o->Observe(MakeBatch(layout, 41, 1.0f)).ok());
    ASSERT_TRUE(o->Observe(MakeBatch(layout, 42, 1.7f)).ok());
    ASSERT_TRUE(SaveObserver(*o, path).ok());
    auto loaded = LoadObserver(path);
    ASSERT_TRUE(loaded.ok()) << kind.per_channel << ": " << loaded.status();
    EXPECT_EQ((*loaded)->spec(), o->spec());
    EXPECT_EQ((*loaded)->options().channel_axis, layout.axis);
    EXPECT_TRUE((*loaded)->options().skip_non_finite);
    EXPECT_EQ((*loaded)->num_batches(), 2);
    ExpectSameHistograms(**loaded, *o, kind.per_channel);
    for (const QuantTarget& target : kPerChannelTargets) {
      const QuantParams a = (*loaded)->ComputeQParams(target).value();
      const QuantParams b = o->ComputeQParams(target).value();
      EXPECT_EQ(a.scales, b.scales) << kind.per_channel;
      EXPECT_EQ(a.zero_points, b.zero_points) << kind.per_channel;
      EXPECT_EQ(a.axis, b.axis);
    }
    // A loaded observer keeps calibrating: one more batch as on the original.
    ASSERT_TRUE((*loaded)->Observe(MakeBatch(layout, 43, 3.0f)).ok());
    ASSERT_TRUE(o->Observe(MakeBatch(layout, 43, 3.0f)).ok());
    ExpectSameHistograms(**loaded, *o, std::string(kind.per_channel) + " after reload");
  }
}

TEST(PerChannelHistogramTest, DamagedFilesAreErrorsNamingWhatIsWrong) {
  const Layout layout = kLayouts[0];
  auto o = Create("per_channel_entropy:bins=16", layout.axis);
  ASSERT_TRUE(o->Observe(MakeBatch(layout, 51, 1.0f)).ok());
  const std::string path = TempPath("per_channel_damaged_source.observer");
  ASSERT_TRUE(SaveObserver(*o, path).ok());
  const std::string good = ReadFile(path);
  const size_t newline = good.find('\n');
  ASSERT_NE(newline, std::string::npos);
  const nlohmann::json header = nlohmann::json::parse(good.substr(0, newline));
  const std::string payload = good.substr(newline + 1);
  const std::string damaged = TempPath("per_channel_damaged.observer");
  auto expect_error = [&](const std::string& bytes, absl::StatusCode code,
                          const std::string& mention) {
    WriteFile(damaged, bytes);
    const auto loaded = LoadObserver(damaged);
    EXPECT_EQ(loaded.status().code(), code) << mention << ": " << loaded.status();
    EXPECT_NE(loaded.status().message().find(mention), std::string::npos) << loaded.status();
    EXPECT_NE(loaded.status().message().find(damaged), std::string::npos) << loaded.status();
  };
  // Truncated: the file-level check.
  expect_error(good.substr(0, good.size() - 8), absl::StatusCode::kDataLoss, "binary_bytes");
  // A header consistent with a payload of the wrong size: the observer's own check.
  auto with = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& body) {
    nlohmann::json h = header;
    edit(h);
    h["binary_bytes"] = body.size();
    return h.dump() + "\n" + body;
  };
  expect_error(with([](nlohmann::json&) {}, payload.substr(0, payload.size() - 8)),
               absl::StatusCode::kDataLoss, "binary payload");
  expect_error(with([](nlohmann::json& h) { h["state"]["num_channels"] = 6; }, payload),
               absl::StatusCode::kDataLoss, "binary payload");
  expect_error(
      with([](nlohmann::json& h) { h["state"]["num_channels"] = int64_t{1} << 40; }, payload),
      absl::StatusCode::kDataLoss, "num_channels");
  expect_error(with([](nlohmann::json& h) { h["state"]["num_channels"] = "five"; }, payload),
               absl::StatusCode::kDataLoss, "num_channels");
  expect_error(with([](nlohmann::json& h) { h["state"]["bins"] = 32; }, payload),
               absl::StatusCode::kDataLoss, "bins");
  expect_error(with([](nlohmann::json& h) { h["state"]["axis"] = 99; }, payload),
               absl::StatusCode::kDataLoss, "axis");
  expect_error(with([](nlohmann::json& h) { h["state"]["num_batches"] = -1; }, payload),
               absl::StatusCode::kDataLoss, "num_batches");
  expect_error(with([](nlohmann::json& h) { h["spec"] = "per_channel_nonsense"; }, payload),
               absl::StatusCode::kDataLoss, "spec");
  // Impossible contents: a negative count in channel 2, an inverted range in channel 0.
  std::string bad_count = payload;
  const double negative = -3.0;
  const size_t channels = 5, bins = 16;
  std::memcpy(&bad_count[channels * 2 * sizeof(float) + (2 * bins + 3) * sizeof(double)], &negative,
              sizeof(negative));
  expect_error(with([](nlohmann::json&) {}, bad_count), absl::StatusCode::kDataLoss, "channel 2");
  std::string bad_range = payload;
  const float inverted[2] = {5.0f, -5.0f};
  std::memcpy(&bad_range[0], inverted, sizeof(inverted));
  expect_error(with([](nlohmann::json&) {}, bad_range), absl::StatusCode::kDataLoss, "channel 0");
}

TEST(PerChannelHistogramRegistryTest, NamesSpecsAndBadArguments) {
  const std::vector<std::string> names = ObserverNames();
  for (const char* name : {"per_channel_histogram", "per_channel_percentile", "per_channel_entropy",
                           "per_channel_mse"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  const std::vector<std::pair<std::string, std::string>> canonical = {
      {"per_channel_histogram", "per_channel_histogram"},
      {"per_channel_histogram:512", "per_channel_histogram:bins=512"},
      {"per_channel_histogram:torch_binning=0", "per_channel_histogram:torch_binning=0"},
      {"per_channel_percentile:99.99", "per_channel_percentile:99.99"},
      {"per_channel_percentile:p=99.9,bins=512", "per_channel_percentile:99.9,bins=512"},
      {"per_channel_entropy:bins=2048", "per_channel_entropy"},
      {"per_channel_mse:torch_binning=1", "per_channel_mse:torch_binning=1"},
  };
  for (const auto& [spec, expected] : canonical) {
    auto o = CreateObserver(spec);
    ASSERT_TRUE(o.ok()) << spec << ": " << o.status();
    EXPECT_EQ((*o)->spec(), expected);
    EXPECT_TRUE((*o)->per_channel()) << spec;
    EXPECT_EQ(CreateObserver(expected).value()->spec(), expected);
    bool per_channel = false;
    ASSERT_TRUE(ValidateObserverSpec(spec, &per_channel).ok());
    EXPECT_TRUE(per_channel) << spec;
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"per_channel_percentile", "required p"},
      {"per_channel_percentile:0", "p in (0, "},
      {"per_channel_percentile:101", "p in (0, "},
      {"per_channel_entropy:bins=1", "bins in [2, "},
      {"per_channel_mse:bins=2.5", "(integer)"},
      {"per_channel_histogram:torch_binning=2", "torch_binning in [0, 1]"},
      {"per_channel_entropy:axis=1", "per_channel_entropy accepts"},
      {"per_channel_minmax_histogram", "known observers"},
  };
  for (const auto& [spec, mention] : bad) {
    const auto o = CreateObserver(spec);
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(o.status().message().find(mention), std::string::npos) << o.status();
    EXPECT_FALSE(ValidateObserverSpec(spec).ok()) << spec;
  }
}

}  // namespace
}  // namespace qlab::calibration
