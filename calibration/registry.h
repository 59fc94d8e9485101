// The calibrator registry: observers by name with arguments, and observer files.
//
// A spec is "<name>[:<arg>[,<key>=<value>...]]":
//   minmax                         MinMaxObserver
//   moving_average:c=0.01          MovingAverageMinMaxObserver (averaging_constant)
//   per_channel_minmax             PerChannelMinMaxObserver (axis from ObserverOptions)
//   per_channel_moving_average:c=0.01
//   histogram[:bins=2048]          HistogramObserver (PyTorch's L2 search)
//                                  (histogram-family observers also take torch_binning=0|1,
//                                  see histogram.h)
//   percentile:99.99[,bins=2048]   percentile of |x| (symmetric) or of x (affine)
//   entropy[:bins=2048]            TensorRT's KL-divergence calibration
//   mse[:bins=2048]                the clip minimizing expected squared error
//   per_channel_histogram[:bins=2048], per_channel_percentile:99.99[,bins=2048],
//   per_channel_entropy[:bins=2048], per_channel_mse[:bins=2048]
//                                  the four above with one histogram per channel (axis from
//                                  ObserverOptions), see per_channel_histogram.h
// Unknown names and bad arguments are InvalidArgument listing what exists / what is accepted.
// Specs, quantizers, experiment flags and config files all go through CreateObserver.
#ifndef QLAB_CALIBRATION_REGISTRY_H_
#define QLAB_CALIBRATION_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "calibration/observer.h"

namespace qlab::calibration {

absl::StatusOr<std::unique_ptr<Observer>> CreateObserver(absl::string_view spec,
                                                         const ObserverOptions& options = {});

// Checks a spec without creating an observer (QuantizationSpec validates its observer name on
// construction). `per_channel` is set to whether the named observer is a per-channel one.
absl::Status ValidateObserverSpec(absl::string_view spec, bool* per_channel = nullptr);

// Collect once, compute many: an observer of `spec` (a histogram-family one: histogram,
// percentile, entropy, mse, or their per_channel_ variants) holding the histogram(s) `source`
// collected, so another method's range needs no second pass over the data. InvalidArgument unless
// both are histogram observers, both per tensor or both per channel, with the same bins and
// torch_binning (e.g. "percentile:99.9" from "entropy", both exact binning).
absl::StatusOr<std::unique_ptr<Observer>> CreateObserverFromHistogram(absl::string_view spec,
                                                                      const Observer& source);

// Registered names, sorted.
std::vector<std::string> ObserverNames();

// One file per observer: the JSON state header, a newline, the binary payload; written to a
// temporary file and renamed into place so that an interrupted save never leaves a torn file.
absl::Status SaveObserver(const Observer& observer, const std::string& path);
// DataLoss / InvalidArgument naming the path and the field for malformed files.
absl::StatusOr<std::unique_ptr<Observer>> LoadObserver(const std::string& path);

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_REGISTRY_H_
