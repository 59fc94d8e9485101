// The per-channel histogram observers: one histogram (calibration/histogram.h) per slice along a
// channel axis, each turned into that channel's range by one method, giving per-channel qparams.
//
//   per_channel_histogram[:bins=2048]        PyTorch's L2-error search, per channel
//   per_channel_percentile:<p>[,bins=2048]   percentile of |x| (symmetric) or [P(100-p), P(p)]
//   per_channel_entropy[:bins=2048]          TensorRT's KL-divergence threshold, per channel
//   per_channel_mse[:bins=2048]              the clip minimizing expected squared error
// with the arguments (and torch_binning defaults) of their per-tensor counterparts and the axis
// from ObserverOptions::channel_axis, as per_channel_minmax. Channel c's range is exactly what the
// per-tensor observer of the same kind would give fed only channel c's values (same counts, same
// range arithmetic, bit-identical qparams); the tests check that on NCHW, NHWC and weight axes.
// The counterpart is pytorch-quantization's HistogramCalibrator with `axis` (its compute_amax
// methods per channel).
//
// Collect once, compute many, per channel: ComputePerChannelRanges() gives every channel's range
// by any RangeMethod (max, L2, percentile, entropy, MSE) from one collection, and
// CreateObserverFromHistogram (registry.h) makes another per-channel method's observer from it.
//
// Accumulation: a channel whose values lie in runs of at least kMinRunLength (NCHW activations:
// H*W per image; weights [O, ...] on axis 0: one run) is binned in place run by run; channels
// interleaved more finely (NHWC, axis last) are first transposed by blocks into one contiguous
// array per channel. Channels are spread over both cores (histogram.h ParallelTasks); each
// channel's histogram is computed by one thread, so results do not depend on the thread count.
#ifndef QLAB_CALIBRATION_PER_CHANNEL_HISTOGRAM_H_
#define QLAB_CALIBRATION_PER_CHANNEL_HISTOGRAM_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calibration/histogram.h"
#include "calibration/histogram_observers.h"
#include "calibration/observer.h"

namespace qlab::calibration {

// Runs shorter than this are transposed into per-channel arrays before binning (one kernel call
// per run costs more than the copy below it).
inline constexpr size_t kMinRunLength = 64;

// The registry's factory; `config` is assumed validated (the registry checks it).
std::unique_ptr<Observer> MakePerChannelHistogramObserver(const HistogramObserverConfig& config,
                                                          const ObserverOptions& options);

// The histograms a per-channel histogram observer collected, one per channel (empty before the
// first Observe); nullptr for other observers.
const std::vector<Histogram>* CollectedPerChannelHistograms(const Observer& observer);

// Collect once, compute many: each channel's range by `request` for `target` (per-channel
// scheme) from the histograms `observer` collected. InvalidArgument unless `observer` is a
// per-channel histogram observer and the target per channel; FailedPrecondition before any
// data, or for a channel that never held a finite value (named).
absl::StatusOr<Observer::Ranges> ComputePerChannelRanges(const Observer& observer,
                                                         const RangeRequest& request,
                                                         const QuantTarget& target);

// Replaces `target`'s statistics with `source`'s (histograms, axis, batch and skip counts).
// InvalidArgument unless both are per-channel histogram observers with the same bins and
// binning.
absl::Status AdoptPerChannelHistograms(const Observer& source, Observer& target);

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_PER_CHANNEL_HISTOGRAM_H_
