// The per-channel histogram observers (see per_channel_histogram.h): input checks and the NaN/Inf
// policy as the per-tensor observers apply them, the per-channel ranges by the Highway min/max
// kernel (quant/quantize_tensor.h), then one Histogram::Add per channel on both cores; ranges
// from ComputeRange per channel; state as JSON + each channel's range and counts.
#include "calibration/per_channel_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "calibration/observer_util.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "quant/quantize_tensor.h"

namespace qlab::calibration {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// A tensor viewed as [outer, channels, inner] around the channel axis.
struct ChannelView {
  size_t outer = 1;
  size_t channels = 1;
  size_t inner = 1;
};

ChannelView ViewAround(const Tensor& x, int axis) {
  ChannelView v;
  v.channels = static_cast<size_t>(x.dim(axis));
  for (int a = 0; a < axis; ++a) v.outer *= static_cast<size_t>(x.dim(a));
  for (int a = axis + 1; a < x.rank(); ++a) v.inner *= static_cast<size_t>(x.dim(a));
  return v;
}

// The per-tensor scheme a per-channel target applies to each channel.
QuantTarget PerTensorTarget(const QuantTarget& target) {
  QuantTarget t = target;
  t.qscheme =
      IsSymmetric(target.qscheme) ? QScheme::kPerTensorSymmetric : QScheme::kPerTensorAffine;
  return t;
}

// Rows of the [outer, channels * inner] matrix transposed per block: a block's rows (at most
// kTransposeBlockBytes) stay in cache while every channel's part of them is copied out.
constexpr size_t kTransposeBlockBytes = size_t{32} << 10;

// x viewed as `v`, copied channel-major: out[c * (outer * inner) + o * inner + i].
std::vector<float> TransposeToChannels(const float* x, const ChannelView& v) {
  const size_t per_channel = v.outer * v.inner;
  const size_t row = v.channels * v.inner;  // floats per outer index
  std::vector<float> out(per_channel * v.channels);
  const size_t block_rows = std::max<size_t>(1, kTransposeBlockBytes / (row * sizeof(float)));
  const size_t blocks = (v.outer + block_rows - 1) / block_rows;
  ParallelTasks(blocks, out.size(), [&](size_t block) {
    const size_t o_begin = block * block_rows;
    const size_t o_end = std::min(v.outer, o_begin + block_rows);
    if (v.inner == 1) {  // NHWC: a plain strided gather per channel (no per-element copy call)
      for (size_t c = 0; c < v.channels; ++c) {
        float* dst = out.data() + c * per_channel;
        for (size_t o = o_begin; o < o_end; ++o) dst[o] = x[o * row + c];
      }
      return;
    }
    for (size_t c = 0; c < v.channels; ++c) {
      float* dst = out.data() + c * per_channel;
      for (size_t o = o_begin; o < o_end; ++o) {
        const float* src = x + o * row + c * v.inner;
        std::copy(src, src + v.inner, dst + o * v.inner);
      }
    }
  });
  return out;
}

class PerChannelHistogramObserver final : public Observer {
 public:
  PerChannelHistogramObserver(const HistogramObserverConfig& config, const ObserverOptions& options)
      : config_(config), options_(options) {}

  std::string spec() const override { return HistogramObserverSpec(config_, true); }
  bool per_channel() const override { return true; }
  const ObserverOptions& options() const override { return options_; }

  absl::Status Observe(const Tensor& x) override;

  void Reset() override {
    histograms_.clear();
    axis_ = -1;
    num_batches_ = 0;
    non_finite_skipped_ = 0;
  }

  absl::StatusOr<Ranges> ComputeRanges(const QuantTarget& target) const override {
    return RangesBy({config_.method, config_.percentile}, target);
  }

  absl::StatusOr<QuantParams> ComputeQParams(const QuantTarget& target) const override {
    QLAB_ASSIGN_OR_RETURN(const Ranges ranges, ComputeRanges(target));
    return ChooseQParamsPerChannel(ranges.mins, ranges.maxs, axis_, target);
  }

  absl::Status Merge(const Observer& other) override;

  std::unique_ptr<Observer> Clone() const override {
    return std::make_unique<PerChannelHistogramObserver>(*this);
  }

  ObserverState SaveState() const override;
  absl::Status RestoreState(const ObserverState& state) override;

  int64_t num_batches() const override { return num_batches_; }
  int64_t non_finite_skipped() const override { return non_finite_skipped_; }

  const std::vector<Histogram>& histograms() const { return histograms_; }
  const HistogramObserverConfig& config() const { return config_; }

  // Every channel's range by `request` (ComputeRanges with the observer's own method;
  // ComputePerChannelRanges with any).
  absl::StatusOr<Ranges> RangesBy(const RangeRequest& request, const QuantTarget& target) const;

  void Adopt(const PerChannelHistogramObserver& source) {
    histograms_ = source.histograms_;
    axis_ = source.axis_;
    num_batches_ = source.num_batches_;
    non_finite_skipped_ = source.non_finite_skipped_;
  }

 private:
  // The finite range of every channel (the scalar pass of skip_non_finite); +Inf/-Inf for a
  // channel without a finite value.
  static void FiniteRanges(const float* x, const ChannelView& v, std::vector<float>& mins,
                           std::vector<float>& maxs);

  HistogramObserverConfig config_;
  ObserverOptions options_;
  std::vector<Histogram> histograms_;  // one per channel; empty before the first batch
  int axis_ = -1;                      // the resolved channel axis, fixed by the first batch
  int64_t num_batches_ = 0;
  int64_t non_finite_skipped_ = 0;
};

void PerChannelHistogramObserver::FiniteRanges(const float* x, const ChannelView& v,
                                               std::vector<float>& mins, std::vector<float>& maxs) {
  mins.assign(v.channels, kInf);
  maxs.assign(v.channels, -kInf);
  for (size_t o = 0; o < v.outer; ++o) {
    for (size_t c = 0; c < v.channels; ++c) {
      const float* run = x + (o * v.channels + c) * v.inner;
      for (size_t i = 0; i < v.inner; ++i) {
        if (!std::isfinite(run[i])) continue;
        mins[c] = std::min(mins[c], run[i]);
        maxs[c] = std::max(maxs[c], run[i]);
      }
    }
  }
}

absl::Status PerChannelHistogramObserver::Observe(const Tensor& x) {
  QLAB_RETURN_IF_ERROR(internal::CheckObservable(x, spec()));
  QLAB_ASSIGN_OR_RETURN(const int axis,
                        internal::ResolveAxis(options_.channel_axis, x.rank(), spec()));
  const ChannelView v = ViewAround(x, axis);
  if (!histograms_.empty() && (histograms_.size() != v.channels || axis != axis_)) {
    return absl::InvalidArgumentError(
        absl::StrCat(spec(), ": ", x.DebugString(), " has ", v.channels, " channels along axis ",
                     axis, ", earlier tensors had ", histograms_.size(), " along axis ", axis_));
  }
  QLAB_ASSIGN_OR_RETURN(ChannelRanges ranges, TensorMinMaxPerChannel(x, axis));
  bool non_finite = ranges.nan_count > 0;
  for (size_t c = 0; c < v.channels && !non_finite; ++c) {
    non_finite = std::isinf(ranges.mins[c]) || std::isinf(ranges.maxs[c]);
  }
  const float* data = x.data<float>();
  const size_t n = static_cast<size_t>(x.numel());
  if (non_finite) {
    const internal::NonFiniteScan scan = internal::ScanNonFinite(data, n);
    if (!options_.skip_non_finite) return internal::NonFiniteError(spec(), x, scan);
    non_finite_skipped_ += scan.count;
    if (scan.count == x.numel()) return absl::OkStatus();  // nothing to add
    FiniteRanges(data, v, ranges.mins, ranges.maxs);
  }
  if (histograms_.empty()) {
    axis_ = axis;
    histograms_.assign(v.channels, Histogram(config_.bins, config_.binning));
  }
  // Where channel c's values are: in place (runs of `inner` values, one per outer index), or in
  // a channel-major copy when the runs are too short to bin one by one (NHWC).
  const size_t per_channel = v.outer * v.inner;
  std::vector<float> transposed;
  if (v.outer > 1 && v.inner < kMinRunLength) transposed = TransposeToChannels(data, v);
  auto values_of = [&](size_t c) {
    if (!transposed.empty()) {
      return ValueRuns{transposed.data() + c * per_channel, 1, per_channel, per_channel};
    }
    return ValueRuns{data + c * v.inner, v.outer, v.inner, v.channels * v.inner};
  };
  auto add_channel = [&](size_t c) {
    if (ranges.mins[c] > ranges.maxs[c]) return;  // no finite value in this channel
    histograms_[c].Add(values_of(c), ranges.mins[c], ranges.maxs[c]);
  };
  if (per_channel >= kParallelMinElements && values_of(0).runs == 1) {
    // Few large channels: one after the other, each split over the cores by Histogram::Add.
    for (size_t c = 0; c < v.channels; ++c) add_channel(c);
  } else {
    ParallelTasks(v.channels, n, add_channel);
  }
  ++num_batches_;
  return absl::OkStatus();
}

absl::StatusOr<Observer::Ranges> PerChannelHistogramObserver::RangesBy(
    const RangeRequest& request, const QuantTarget& target) const {
  if (!IsPerChannel(target.qscheme)) {
    return absl::InvalidArgumentError(absl::StrCat(spec(),
                                                   " is a per-channel observer and cannot compute ",
                                                   QSchemeName(target.qscheme), " parameters"));
  }
  QLAB_RETURN_IF_ERROR(target.Validate());
  if (histograms_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(spec(), " has observed nothing: calibrate before computing qparams"));
  }
  const QuantTarget per_tensor = PerTensorTarget(target);
  const size_t channels = histograms_.size();
  Ranges ranges{std::vector<float>(channels), std::vector<float>(channels)};
  std::vector<absl::Status> errors(channels);
  // The range searches (entropy, MSE: O(bins^2) per channel) run channel by channel on both
  // cores; each channel's result is computed by one thread, whichever.
  const size_t work = channels * static_cast<size_t>(config_.bins) * 64;
  ParallelTasks(channels, work, [&](size_t c) {
    const Histogram& h = histograms_[c];
    if (h.empty()) {
      errors[c] = absl::FailedPreconditionError(
          absl::StrCat(spec(), ": channel ", c, " never held a finite value: no range to compute"));
      return;
    }
    absl::StatusOr<ClipRange> r = ComputeRange(h, request, per_tensor);
    if (!r.ok()) {
      errors[c] = absl::Status(r.status().code(),
                               absl::StrCat(spec(), ", channel ", c, ": ", r.status().message()));
      return;
    }
    ranges.mins[c] = r->min;
    ranges.maxs[c] = r->max;
  });
  for (const absl::Status& s : errors) QLAB_RETURN_IF_ERROR(s);
  return ranges;
}

absl::Status PerChannelHistogramObserver::Merge(const Observer& other_base) {
  const auto* other_ptr = dynamic_cast<const PerChannelHistogramObserver*>(&other_base);
  if (other_ptr == nullptr || other_base.spec() != spec()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot merge ", other_base.spec(), " into ", spec()));
  }
  const PerChannelHistogramObserver other = *other_ptr;  // a copy: merging an observer into itself
  if (!other.histograms_.empty()) {
    if (histograms_.empty()) {
      histograms_ = other.histograms_;
      axis_ = other.axis_;
    } else if (histograms_.size() != other.histograms_.size() || axis_ != other.axis_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot merge ", spec(), " with ", other.histograms_.size(), " channels along axis ",
          other.axis_, " into one with ", histograms_.size(), " channels along axis ", axis_));
    } else {
      for (size_t c = 0; c < histograms_.size(); ++c) {
        QLAB_RETURN_IF_ERROR(histograms_[c].Merge(other.histograms_[c]));
      }
    }
  }
  num_batches_ += other.num_batches_;
  non_finite_skipped_ += other.non_finite_skipped_;
  return absl::OkStatus();
}

// State: {"spec", "bins", "num_channels", "axis", "num_batches", "non_finite_skipped"}; payload:
// every channel's [min, max] (float32 pairs, channel order), then every channel's counts
// (float64, `bins` per channel, channel order).
ObserverState PerChannelHistogramObserver::SaveState() const {
  const nlohmann::json j = {
      {"spec", spec()}, {"bins", config_.bins},        {"num_channels", histograms_.size()},
      {"axis", axis_},  {"num_batches", num_batches_}, {"non_finite_skipped", non_finite_skipped_}};
  internal::PayloadWriter payload;
  std::vector<float> ranges;
  ranges.reserve(2 * histograms_.size());
  for (const Histogram& h : histograms_) {
    ranges.push_back(h.min());
    ranges.push_back(h.max());
  }
  payload.Floats(ranges);
  for (const Histogram& h : histograms_) payload.Doubles(h.counts());
  return ObserverState{j.dump(), payload.Take()};
}

absl::Status PerChannelHistogramObserver::RestoreState(const ObserverState& state) {
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json j, internal::ParseStateJson(state.json, spec()));
  QLAB_ASSIGN_OR_RETURN(const int64_t bins, internal::GetInt(j, "bins"));
  QLAB_ASSIGN_OR_RETURN(const int64_t channels, internal::GetInt(j, "num_channels"));
  QLAB_ASSIGN_OR_RETURN(const int64_t axis, internal::GetInt(j, "axis"));
  QLAB_ASSIGN_OR_RETURN(const int64_t batches, internal::GetInt(j, "num_batches"));
  QLAB_ASSIGN_OR_RETURN(const int64_t skipped, internal::GetInt(j, "non_finite_skipped"));
  if (bins != config_.bins) {
    return absl::DataLossError(
        absl::StrCat(spec(), " state: bins = ", bins, ", expected ", config_.bins));
  }
  if (channels < 0 || channels > internal::kMaxChannels) {
    return absl::DataLossError(absl::StrCat(spec(), " state: num_channels = ", channels,
                                            " is out of range [0, ", internal::kMaxChannels, "]"));
  }
  const bool axis_ok = channels > 0 ? axis >= 0 && axis < kMaxRank : axis == -1;
  if (!axis_ok) {
    return absl::DataLossError(absl::StrCat(spec(), " state: axis = ", axis, " is impossible with ",
                                            channels, " channels"));
  }
  if (batches < 0 || skipped < 0) {
    return absl::DataLossError(absl::StrCat(spec(), " state: num_batches = ", batches,
                                            " / non_finite_skipped = ", skipped,
                                            " must not be negative"));
  }
  // The payload's size follows from the header: checked before anything is allocated for it.
  const size_t n = static_cast<size_t>(channels);
  const size_t expected_bytes =
      n * (2 * sizeof(float) + static_cast<size_t>(bins) * sizeof(double));
  if (state.binary.size() != expected_bytes) {
    return absl::DataLossError(absl::StrCat(
        spec(), " state: binary payload holds ", state.binary.size(), " bytes, but ", channels,
        " channels of ", bins, " bins need ", expected_bytes, " (ranges and counts)"));
  }
  internal::PayloadReader payload(state.binary);
  QLAB_ASSIGN_OR_RETURN(const std::vector<float> ranges, payload.Floats(2 * n, "ranges"));
  std::vector<Histogram> histograms;
  histograms.reserve(n);
  for (size_t c = 0; c < n; ++c) {
    QLAB_ASSIGN_OR_RETURN(std::vector<double> counts,
                          payload.Doubles(static_cast<size_t>(bins), "counts"));
    absl::StatusOr<Histogram> h =
        Histogram::FromParts(config_.binning, ranges[2 * c], ranges[2 * c + 1], std::move(counts));
    if (!h.ok()) {
      return absl::DataLossError(
          absl::StrCat(spec(), " state: channel ", c, ": ", h.status().message()));
    }
    histograms.push_back(*std::move(h));
  }
  QLAB_RETURN_IF_ERROR(payload.ExpectEnd());
  histograms_ = std::move(histograms);
  axis_ = static_cast<int>(axis);
  num_batches_ = batches;
  non_finite_skipped_ = skipped;
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Observer> MakePerChannelHistogramObserver(const HistogramObserverConfig& config,
                                                          const ObserverOptions& options) {
  return std::make_unique<PerChannelHistogramObserver>(config, options);
}

const std::vector<Histogram>* CollectedPerChannelHistograms(const Observer& observer) {
  const auto* o = dynamic_cast<const PerChannelHistogramObserver*>(&observer);
  return o != nullptr ? &o->histograms() : nullptr;
}

absl::StatusOr<Observer::Ranges> ComputePerChannelRanges(const Observer& observer,
                                                         const RangeRequest& request,
                                                         const QuantTarget& target) {
  const auto* o = dynamic_cast<const PerChannelHistogramObserver*>(&observer);
  if (o == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("per-channel ranges by method need a per-channel histogram observer, got ",
                     observer.spec()));
  }
  return o->RangesBy(request, target);
}

absl::Status AdoptPerChannelHistograms(const Observer& source, Observer& target) {
  const auto* from = dynamic_cast<const PerChannelHistogramObserver*>(&source);
  auto* to = dynamic_cast<PerChannelHistogramObserver*>(&target);
  if (from == nullptr || to == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot reuse the statistics of ", source.spec(), " for ", target.spec(),
                     ": both must be per-channel histogram observers"));
  }
  if (from->config().bins != to->config().bins || from->config().binning != to->config().binning) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot reuse the histograms of ", source.spec(), " for ", target.spec(),
                     ": bins and torch_binning must match (", from->config().bins, " vs ",
                     to->config().bins, " bins)"));
  }
  to->Adopt(*from);
  return absl::OkStatus();
}

}  // namespace qlab::calibration
