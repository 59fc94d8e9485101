// The histogram family of observers (see histogram_observers.h): input checks and the NaN/Inf
// policy, then Histogram::Add; ranges from ComputeRange; state as JSON + the counts as doubles.
#include "calibration/histogram_observers.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "calibration/observer_util.h"
#include "core/status_macros.h"

namespace qlab::calibration {
namespace {

class HistogramFamilyObserver final : public Observer {
 public:
  HistogramFamilyObserver(const HistogramObserverConfig& config, const ObserverOptions& options)
      : config_(config), options_(options), histogram_(config.bins, config.binning) {}

  std::string spec() const override { return HistogramObserverSpec(config_, false); }
  bool per_channel() const override { return false; }
  const ObserverOptions& options() const override { return options_; }

  absl::Status Observe(const Tensor& x) override {
    QLAB_RETURN_IF_ERROR(internal::CheckObservable(x, spec()));
    const float* data = x.data<float>();
    const size_t n = static_cast<size_t>(x.numel());
    // One pass when the batch lies inside the range seen so far (NaN/Inf never do).
    if (histogram_.AddIfInsideRange(ValueRuns{data, 1, n, n})) {
      ++num_batches_;
      return absl::OkStatus();
    }
    // Both cores above a size threshold (histogram.h); same result as TensorMinMax.
    BatchMinMax r = ParallelMinMax(data, n);
    if (r.nan_count > 0 || std::isinf(r.min) || std::isinf(r.max)) {
      const internal::NonFiniteScan scan = internal::ScanNonFinite(data, n);
      if (!options_.skip_non_finite) return internal::NonFiniteError(spec(), x, scan);
      non_finite_skipped_ += scan.count;
      if (scan.count == x.numel()) return absl::OkStatus();
      r.min = std::numeric_limits<float>::infinity();
      r.max = -r.min;
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(data[i])) continue;
        r.min = std::min(r.min, data[i]);
        r.max = std::max(r.max, data[i]);
      }
    }
    histogram_.Add(data, n, r.min, r.max);
    ++num_batches_;
    return absl::OkStatus();
  }

  void Reset() override {
    histogram_.Reset();
    num_batches_ = 0;
    non_finite_skipped_ = 0;
  }

  absl::StatusOr<Ranges> ComputeRanges(const QuantTarget& target) const override {
    if (IsPerChannel(target.qscheme)) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec(), " is a per-tensor observer and cannot compute ", QSchemeName(target.qscheme),
          " parameters"));
    }
    if (histogram_.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(spec(), " has observed nothing: calibrate before computing qparams"));
    }
    QLAB_ASSIGN_OR_RETURN(const ClipRange r,
                          ComputeRange(histogram_, {config_.method, config_.percentile}, target));
    return Ranges{{r.min}, {r.max}};
  }

  absl::StatusOr<QuantParams> ComputeQParams(const QuantTarget& target) const override {
    QLAB_ASSIGN_OR_RETURN(const Ranges ranges, ComputeRanges(target));
    return ChooseQParams(ranges.mins[0], ranges.maxs[0], target);
  }

  absl::Status Merge(const Observer& other_base) override {
    const auto* other = dynamic_cast<const HistogramFamilyObserver*>(&other_base);
    if (other == nullptr || other->spec() != spec()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot merge ", other_base.spec(), " into ", spec()));
    }
    const int64_t batches = other->num_batches_, skipped = other->non_finite_skipped_;
    QLAB_RETURN_IF_ERROR(histogram_.Merge(other->histogram_));
    num_batches_ += batches;
    non_finite_skipped_ += skipped;
    return absl::OkStatus();
  }

  std::unique_ptr<Observer> Clone() const override {
    return std::make_unique<HistogramFamilyObserver>(*this);
  }

  ObserverState SaveState() const override {
    const nlohmann::json j = {{"spec", spec()},
                              {"bins", histogram_.bins()},
                              {"num_batches", num_batches_},
                              {"non_finite_skipped", non_finite_skipped_}};
    internal::PayloadWriter payload;
    payload.Floats({histogram_.min(), histogram_.max()});
    payload.Doubles(histogram_.counts());
    return ObserverState{j.dump(), payload.Take()};
  }

  absl::Status RestoreState(const ObserverState& state) override {
    QLAB_ASSIGN_OR_RETURN(const nlohmann::json j, internal::ParseStateJson(state.json, spec()));
    QLAB_ASSIGN_OR_RETURN(const int64_t bins, internal::GetInt(j, "bins"));
    QLAB_ASSIGN_OR_RETURN(const int64_t batches, internal::GetInt(j, "num_batches"));
    QLAB_ASSIGN_OR_RETURN(const int64_t skipped, internal::GetInt(j, "non_finite_skipped"));
    if (bins != config_.bins) {
      return absl::DataLossError(absl::StrCat(spec(), " state: bins = ", bins, ", expected ",
                                              config_.bins));
    }
    if (batches < 0 || skipped < 0) {
      return absl::DataLossError(absl::StrCat(spec(), " state: num_batches = ", batches,
                                              " / non_finite_skipped = ", skipped,
                                              " must not be negative"));
    }
    internal::PayloadReader payload(state.binary);
    QLAB_ASSIGN_OR_RETURN(const std::vector<float> range, payload.Floats(2, "range"));
    QLAB_ASSIGN_OR_RETURN(std::vector<double> counts,
                          payload.Doubles(static_cast<size_t>(bins), "counts"));
    QLAB_RETURN_IF_ERROR(payload.ExpectEnd());
    absl::StatusOr<Histogram> h =
        Histogram::FromParts(config_.binning, range[0], range[1], std::move(counts));
    if (!h.ok()) {
      return absl::DataLossError(absl::StrCat(spec(), " state: ", h.status().message()));
    }
    histogram_ = *std::move(h);
    num_batches_ = batches;
    non_finite_skipped_ = skipped;
    return absl::OkStatus();
  }

  int64_t num_batches() const override { return num_batches_; }
  int64_t non_finite_skipped() const override { return non_finite_skipped_; }

  const Histogram& histogram() const { return histogram_; }
  void Adopt(const HistogramFamilyObserver& source) {
    histogram_ = source.histogram_;
    num_batches_ = source.num_batches_;
    non_finite_skipped_ = source.non_finite_skipped_;
  }

 private:
  HistogramObserverConfig config_;
  ObserverOptions options_;
  Histogram histogram_;
  int64_t num_batches_ = 0;
  int64_t non_finite_skipped_ = 0;
};

}  // namespace

std::string HistogramObserverSpec(const HistogramObserverConfig& config, bool per_channel) {
  std::string s = per_channel ? "per_channel_" : "";
  std::vector<std::string> args;
  switch (config.method) {
    case RangeMethod::kPercentile:
      s += "percentile";
      args.push_back(internal::FormatNumber(config.percentile));
      break;
    case RangeMethod::kEntropy:
      s += "entropy";
      break;
    case RangeMethod::kMse:
      s += "mse";
      break;
    default:
      s += "histogram";
  }
  if (config.bins != 2048) args.push_back(absl::StrCat("bins=", config.bins));
  const HistogramBinning default_binning = config.method == RangeMethod::kTorchL2
                                               ? HistogramBinning::kTorch113
                                               : HistogramBinning::kExact;
  if (config.binning != default_binning) {
    args.push_back(
        absl::StrCat("torch_binning=", config.binning == HistogramBinning::kTorch113 ? 1 : 0));
  }
  for (size_t i = 0; i < args.size(); ++i) absl::StrAppend(&s, i == 0 ? ":" : ",", args[i]);
  return s;
}
std::unique_ptr<Observer> MakeHistogramObserver(const HistogramObserverConfig& config,
                                                const ObserverOptions& options) {
  return std::make_unique<HistogramFamilyObserver>(config, options);
}

const Histogram* CollectedHistogram(const Observer& observer) {
  const auto* h = dynamic_cast<const HistogramFamilyObserver*>(&observer);
  return h != nullptr ? &h->histogram() : nullptr;
}

absl::Status AdoptHistogram(const Observer& source, Observer& target) {
  const auto* from = dynamic_cast<const HistogramFamilyObserver*>(&source);
  auto* to = dynamic_cast<HistogramFamilyObserver*>(&target);
  if (from == nullptr || to == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reuse the statistics of ",
                                                   source.spec(), " for ", target.spec(),
                                                   ": both must be histogram observers"));
  }
  if (from->histogram().bins() != to->histogram().bins() ||
      from->histogram().binning() != to->histogram().binning()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot reuse the histogram of ", source.spec(), " for ", target.spec(),
        ": bins and torch_binning must match (", from->histogram().bins(), " vs ",
        to->histogram().bins(), " bins)"));
  }
  to->Adopt(*from);
  return absl::OkStatus();
}

}  // namespace qlab::calibration
