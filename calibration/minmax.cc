// The min-max family (see minmax.h): one class handles per-tensor (one channel) and per-channel
// statistics, plain min-max and moving averages. The batch reduction is the Highway min/max
// kernel behind quant/quantize_tensor.h; a scalar pass runs only when that kernel reports NaN or
// an infinite bound, to name the offending element or to skip non-finite values.
#include "calibration/minmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calibration/observer_util.h"
#include "core/status_macros.h"
#include "kernels/quantize/quantize.h"
#include "quant/quantize_tensor.h"

namespace qlab::calibration {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

class MinMaxFamilyObserver final : public Observer {
 public:
  MinMaxFamilyObserver(const MinMaxObserverConfig& config, const ObserverOptions& options)
      : config_(config), options_(options) {
    Reset();
  }

  std::string spec() const override {
    std::string s = config_.per_channel ? "per_channel_" : "";
    if (config_.averaging_constant.has_value()) {
      absl::StrAppend(&s, "moving_average:c=", internal::FormatNumber(*config_.averaging_constant));
    } else {
      absl::StrAppend(&s, "minmax");
    }
    return s;
  }
  bool per_channel() const override { return config_.per_channel; }
  const ObserverOptions& options() const override { return options_; }

  absl::Status Observe(const Tensor& x) override;

  void Reset() override {
    const size_t channels = config_.per_channel ? 0 : 1;
    mins_.assign(channels, kInf);
    maxs_.assign(channels, -kInf);
    first_mins_.assign(channels, kInf);
    first_maxs_.assign(channels, -kInf);
    updates_.assign(channels, 0);
    axis_ = -1;
    num_batches_ = 0;
    non_finite_skipped_ = 0;
  }

  absl::StatusOr<QuantParams> ComputeQParams(const QuantTarget& target) const override {
    QLAB_ASSIGN_OR_RETURN(const Ranges ranges, ComputeRanges(target));
    if (config_.per_channel) {
      return ChooseQParamsPerChannel(ranges.mins, ranges.maxs, axis_, target);
    }
    return ChooseQParams(ranges.mins[0], ranges.maxs[0], target);
  }

  absl::StatusOr<Ranges> ComputeRanges(const QuantTarget& target) const override {
    if (IsPerChannel(target.qscheme) != config_.per_channel) {
      return absl::InvalidArgumentError(absl::StrCat(spec(), " cannot compute ",
                                                     QSchemeName(target.qscheme),
                                                     " parameters"));
    }
    if (num_batches_ == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(spec(), " has observed nothing: calibrate before computing qparams"));
    }
    return Ranges{mins_, maxs_};
  }

  absl::Status Merge(const Observer& other) override;

  std::unique_ptr<Observer> Clone() const override {
    return std::make_unique<MinMaxFamilyObserver>(*this);
  }

  ObserverState SaveState() const override;
  absl::Status RestoreState(const ObserverState& state) override;

  int64_t num_batches() const override { return num_batches_; }
  int64_t non_finite_skipped() const override { return non_finite_skipped_; }

 private:
  // Folds one batch's per-channel range in; channels whose batch range is empty (+Inf, -Inf:
  // every value was skipped) are left alone.
  void Update(const std::vector<float>& batch_mins, const std::vector<float>& batch_maxs);

  // Scalar fallback: the range of the finite values of x viewed as [outer, channels, inner].
  void FiniteRanges(const float* x, const kernels::ChannelDims& dims, std::vector<float>& mins,
                    std::vector<float>& maxs) const;

  MinMaxObserverConfig config_;
  ObserverOptions options_;
  std::vector<float> mins_, maxs_;
  // Moving averages only (kept for all, cheap): each channel's first batch range and number of
  // updates, which make Merge of two EMAs exact up to rounding (see minmax.h).
  std::vector<float> first_mins_, first_maxs_;
  std::vector<int64_t> updates_;
  int axis_;  // the resolved channel axis, fixed by the first Observe; -1 per tensor
  int64_t num_batches_;
  int64_t non_finite_skipped_;
};

void MinMaxFamilyObserver::FiniteRanges(const float* x, const kernels::ChannelDims& dims,
                                        std::vector<float>& mins,
                                        std::vector<float>& maxs) const {
  mins.assign(dims.channels, kInf);
  maxs.assign(dims.channels, -kInf);
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const float* run = x + (o * dims.channels + c) * dims.inner;
      for (size_t i = 0; i < dims.inner; ++i) {
        if (!std::isfinite(run[i])) continue;
        mins[c] = std::min(mins[c], run[i]);
        maxs[c] = std::max(maxs[c], run[i]);
      }
    }
  }
}

absl::Status MinMaxFamilyObserver::Observe(const Tensor& x) {
  QLAB_RETURN_IF_ERROR(internal::CheckObservable(x, spec()));
  std::vector<float> batch_mins, batch_maxs;
  size_t nan_count = 0;
  kernels::ChannelDims dims{1, 1, static_cast<size_t>(x.numel())};
  int axis = -1;
  if (config_.per_channel) {
    QLAB_ASSIGN_OR_RETURN(axis, internal::ResolveAxis(options_.channel_axis, x.rank(), spec()));
    dims.channels = static_cast<size_t>(x.dim(axis));
    dims.outer = dims.inner = 1;
    for (int a = 0; a < axis; ++a) dims.outer *= static_cast<size_t>(x.dim(a));
    for (int a = axis + 1; a < x.rank(); ++a) dims.inner *= static_cast<size_t>(x.dim(a));
    if (!mins_.empty() && (mins_.size() != dims.channels || axis != axis_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec(), ": ", x.DebugString(), " has ", dims.channels, " channels along axis ", axis,
          ", earlier tensors had ", mins_.size(), " along axis ", axis_));
    }
    QLAB_ASSIGN_OR_RETURN(ChannelRanges r, TensorMinMaxPerChannel(x, axis));
    batch_mins = std::move(r.mins);
    batch_maxs = std::move(r.maxs);
    nan_count = r.nan_count;
  } else {
    QLAB_ASSIGN_OR_RETURN(const Range r, TensorMinMax(x));
    batch_mins = {r.min};
    batch_maxs = {r.max};
    nan_count = r.nan_count;
  }
  bool non_finite = nan_count > 0;
  for (size_t c = 0; c < batch_mins.size() && !non_finite; ++c) {
    non_finite = std::isinf(batch_mins[c]) || std::isinf(batch_maxs[c]);
  }
  if (non_finite) {
    const internal::NonFiniteScan scan =
        internal::ScanNonFinite(x.data<float>(), static_cast<size_t>(x.numel()));
    if (!options_.skip_non_finite) return internal::NonFiniteError(spec(), x, scan);
    non_finite_skipped_ += scan.count;
    if (scan.count == x.numel()) return absl::OkStatus();  // nothing to add
    FiniteRanges(x.data<float>(), dims, batch_mins, batch_maxs);
  }
  if (config_.per_channel && mins_.empty()) {
    axis_ = axis;
    mins_.assign(dims.channels, kInf);
    maxs_.assign(dims.channels, -kInf);
    first_mins_.assign(dims.channels, kInf);
    first_maxs_.assign(dims.channels, -kInf);
    updates_.assign(dims.channels, 0);
  }
  Update(batch_mins, batch_maxs);
  ++num_batches_;
  return absl::OkStatus();
}

void MinMaxFamilyObserver::Update(const std::vector<float>& batch_mins,
                                  const std::vector<float>& batch_maxs) {
  // PyTorch multiplies a float32 tensor by the Python float c: c is rounded to float32 first.
  const float c = static_cast<float>(config_.averaging_constant.value_or(1.0));
  for (size_t ch = 0; ch < mins_.size(); ++ch) {
    if (batch_mins[ch] > batch_maxs[ch]) continue;  // no finite value in this channel
    if (updates_[ch] == 0) {
      mins_[ch] = first_mins_[ch] = batch_mins[ch];
      maxs_[ch] = first_maxs_[ch] = batch_maxs[ch];
    } else if (config_.averaging_constant.has_value()) {
      const float dmin = batch_mins[ch] - mins_[ch];
      const float dmax = batch_maxs[ch] - maxs_[ch];
      mins_[ch] = mins_[ch] + c * dmin;
      maxs_[ch] = maxs_[ch] + c * dmax;
    } else {
      mins_[ch] = std::min(batch_mins[ch], mins_[ch]);
      maxs_[ch] = std::max(batch_maxs[ch], maxs_[ch]);
    }
    ++updates_[ch];
  }
}

absl::Status MinMaxFamilyObserver::Merge(const Observer& other_base) {
  const auto* other_ptr = dynamic_cast<const MinMaxFamilyObserver*>(&other_base);
  if (other_ptr == nullptr || other_base.spec() != spec()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot merge ", other_base.spec(), " into ", spec()));
  }
  const MinMaxFamilyObserver other = *other_ptr;  // a copy: merging an observer into itself
  if (other.num_batches_ == 0 && other.non_finite_skipped_ == 0) return absl::OkStatus();
  if (config_.per_channel && !other.mins_.empty()) {
    if (mins_.empty()) {
      axis_ = other.axis_;
      mins_.assign(other.mins_.size(), kInf);
      maxs_.assign(other.mins_.size(), -kInf);
      first_mins_.assign(other.mins_.size(), kInf);
      first_maxs_.assign(other.mins_.size(), -kInf);
      updates_.assign(other.mins_.size(), 0);
    } else if (mins_.size() != other.mins_.size() || axis_ != other.axis_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot merge ", spec(), " with ", other.mins_.size(), " channels along axis ",
          other.axis_, " into one with ", mins_.size(), " channels along axis ", axis_));
    }
  }
  const double c = config_.averaging_constant.value_or(1.0);
  for (size_t ch = 0; ch < other.mins_.size(); ++ch) {
    const int64_t k = other.updates_[ch];
    if (k == 0) continue;
    if (updates_[ch] == 0) {
      mins_[ch] = other.mins_[ch];
      maxs_[ch] = other.maxs_[ch];
      first_mins_[ch] = other.first_mins_[ch];
      first_maxs_[ch] = other.first_maxs_[ch];
    } else if (config_.averaging_constant.has_value()) {
      // other's recursion, restarted from our value instead of its first batch (minmax.h).
      const double w = std::pow(1.0 - static_cast<double>(static_cast<float>(c)),
                                static_cast<double>(k));
      mins_[ch] = static_cast<float>(double{other.mins_[ch]} +
                                     w * (double{mins_[ch]} - double{other.first_mins_[ch]}));
      maxs_[ch] = static_cast<float>(double{other.maxs_[ch]} +
                                     w * (double{maxs_[ch]} - double{other.first_maxs_[ch]}));
    } else {
      mins_[ch] = std::min(mins_[ch], other.mins_[ch]);
      maxs_[ch] = std::max(maxs_[ch], other.maxs_[ch]);
    }
    updates_[ch] += k;
  }
  num_batches_ += other.num_batches_;
  non_finite_skipped_ += other.non_finite_skipped_;
  return absl::OkStatus();
}

ObserverState MinMaxFamilyObserver::SaveState() const {
  nlohmann::json j = {{"spec", spec()},
                      {"num_channels", mins_.size()},
                      {"axis", axis_},
                      {"num_batches", num_batches_},
                      {"non_finite_skipped", non_finite_skipped_}};
  internal::PayloadWriter payload;
  payload.Floats(mins_);
  payload.Floats(maxs_);
  payload.Floats(first_mins_);
  payload.Floats(first_maxs_);
  payload.Int64s(updates_);
  return ObserverState{j.dump(), payload.Take()};
}

absl::Status MinMaxFamilyObserver::RestoreState(const ObserverState& state) {
  QLAB_ASSIGN_OR_RETURN(const nlohmann::json j, internal::ParseStateJson(state.json, spec()));
  QLAB_ASSIGN_OR_RETURN(const int64_t channels, internal::GetInt(j, "num_channels"));
  QLAB_ASSIGN_OR_RETURN(const int64_t axis, internal::GetInt(j, "axis"));
  QLAB_ASSIGN_OR_RETURN(const int64_t batches, internal::GetInt(j, "num_batches"));
  QLAB_ASSIGN_OR_RETURN(const int64_t skipped, internal::GetInt(j, "non_finite_skipped"));
  const bool channels_ok = config_.per_channel
                               ? channels >= 0 && channels <= internal::kMaxChannels
                               : channels == 1;
  if (!channels_ok) {
    return absl::DataLossError(absl::StrCat(spec(), " state: num_channels = ", channels,
                                            " is impossible for this observer"));
  }
  const bool axis_ok = config_.per_channel && channels > 0 ? axis >= 0 && axis < kMaxRank
                                                           : axis == -1;
  if (!axis_ok) {
    return absl::DataLossError(absl::StrCat(spec(), " state: axis = ", axis,
                                            " is impossible with ", channels, " channels"));
  }
  if (batches < 0 || skipped < 0) {
    return absl::DataLossError(absl::StrCat(spec(), " state: num_batches = ", batches,
                                            " / non_finite_skipped = ", skipped,
                                            " must not be negative"));
  }
  internal::PayloadReader payload(state.binary);
  const size_t n = static_cast<size_t>(channels);
  QLAB_ASSIGN_OR_RETURN(std::vector<float> mins, payload.Floats(n, "mins"));
  QLAB_ASSIGN_OR_RETURN(std::vector<float> maxs, payload.Floats(n, "maxs"));
  QLAB_ASSIGN_OR_RETURN(std::vector<float> first_mins, payload.Floats(n, "first_mins"));
  QLAB_ASSIGN_OR_RETURN(std::vector<float> first_maxs, payload.Floats(n, "first_maxs"));
  QLAB_ASSIGN_OR_RETURN(std::vector<int64_t> updates, payload.Int64s(n, "updates"));
  QLAB_RETURN_IF_ERROR(payload.ExpectEnd());
  for (size_t c = 0; c < n; ++c) {
    const bool empty = updates[c] == 0 && mins[c] == kInf && maxs[c] == -kInf;
    const bool valid = updates[c] > 0 && std::isfinite(mins[c]) && std::isfinite(maxs[c]) &&
                       mins[c] <= maxs[c] && std::isfinite(first_mins[c]) &&
                       std::isfinite(first_maxs[c]);
    if (!empty && !valid) {
      return absl::DataLossError(absl::StrCat(spec(), " state: channel ", c, " has mins = ",
                                              mins[c], ", maxs = ", maxs[c], " after ",
                                              updates[c], " updates"));
    }
  }
  mins_ = std::move(mins);
  maxs_ = std::move(maxs);
  first_mins_ = std::move(first_mins);
  first_maxs_ = std::move(first_maxs);
  updates_ = std::move(updates);
  axis_ = static_cast<int>(axis);
  num_batches_ = batches;
  non_finite_skipped_ = skipped;
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Observer> MakeMinMaxObserver(const MinMaxObserverConfig& config,
                                             const ObserverOptions& options) {
  return std::make_unique<MinMaxFamilyObserver>(config, options);
}

}  // namespace qlab::calibration
