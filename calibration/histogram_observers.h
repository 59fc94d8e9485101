// The histogram family of observers: one collected histogram (calibration/histogram.h) per
// tensor, turned into a range by one method.
//
//   histogram[:bins=2048]          PyTorch 1.13 HistogramObserver: L2-error search over bin
//                                  ranges, collection bit-identical to PyTorch's (torch_binning=1)
//   percentile:<p>[,bins=2048]     percentile of |x| (symmetric targets) or [P(100-p), P(p)] of x
//   entropy[:bins=2048]            TensorRT's KL-divergence threshold
//   mse[:bins=2048]                the clip minimizing expected squared quantization error
// All accept torch_binning=0|1 (PyTorch 1.13's collection quirks, see histogram.h; default 1 for
// `histogram`, 0 for the others).
//
// Collect once, compute many: CollectedHistogram() gives the histogram an observer holds, and
// registry.h's CreateObserverFromHistogram() makes an observer of another method from it, so a
// single calibration pass answers for every method. Merge re-bins by exact overlap (histogram.h).
// The per-channel variants (per_channel_histogram, ...) are in per_channel_histogram.h.
#ifndef QLAB_CALIBRATION_HISTOGRAM_OBSERVERS_H_
#define QLAB_CALIBRATION_HISTOGRAM_OBSERVERS_H_

#include <memory>
#include <string>

#include "calibration/histogram.h"
#include "calibration/observer.h"

namespace qlab::calibration {

struct HistogramObserverConfig {
  RangeMethod method = RangeMethod::kTorchL2;
  int bins = 2048;
  double percentile = 99.99;  // kPercentile only
  HistogramBinning binning = HistogramBinning::kTorch113;
};

// The canonical spec of `config` ("percentile:99.9,bins=512"; default arguments omitted),
// prefixed with "per_channel_" for the per-channel variants.
std::string HistogramObserverSpec(const HistogramObserverConfig& config, bool per_channel);

// The registry's factory; `config` is assumed validated (the registry checks it).
std::unique_ptr<Observer> MakeHistogramObserver(const HistogramObserverConfig& config,
                                                const ObserverOptions& options);

// The histogram a histogram-family observer collected; nullptr for other observers.
const Histogram* CollectedHistogram(const Observer& observer);

// Replaces `target`'s statistics with `source`'s (histogram, batch and skip counts).
// InvalidArgument unless both are histogram-family observers with the same bins and binning.
absl::Status AdoptHistogram(const Observer& source, Observer& target);

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_HISTOGRAM_OBSERVERS_H_
