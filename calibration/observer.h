// Observer: the one interface behind which every qlab calibrator turns observed values into
// quantization parameters.
//
// An observer is fed float32 tensors (Observe), keeps statistics (a range, running averages, a
// histogram), and computes QuantParams for a requested target (dtype, range, qscheme) with
// ChooseQParams' rules (quant/qparams.h), so one observer can answer for int8 and for uint8.
// Per-channel observers keep statistics per slice along a channel axis fixed at construction.
//
// Observers are mergeable (calibration can run over threads or data shards and combine: merging
// A fed D1 with B fed D2 gives what one observer fed D1 then D2 gives) and serializable (state to
// and from a JSON header + binary payload), and are created by name through the registry
// (calibration/registry.h): "minmax", "moving_average:c=0.01", "histogram", "percentile:99.99", ...
//
// Bad data never yields silent garbage: a NaN or Inf in observed data is InvalidArgument naming
// the count and the first index, unless the observer was created with `skip_non_finite`, in which
// case such values are skipped and counted (non_finite_skipped()).
#ifndef QLAB_CALIBRATION_OBSERVER_H_
#define QLAB_CALIBRATION_OBSERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/qparams.h"

namespace qlab::calibration {

// Options every observer shares, given at creation (the registry fills them from the spec).
struct ObserverOptions {
  // Per-channel observers: the channel axis (negative counts from the end). -1 with
  // `per_channel` false for per-tensor observers.
  int channel_axis = -1;
  // Skip and count NaN/Inf instead of failing.
  bool skip_non_finite = false;
};

// Serialized observer state: a JSON object (kind, spec, options, scalar statistics) and a binary
// payload (histogram bins, per-channel vectors), written to disk by SaveObserver/LoadObserver
// (calibration/registry.h) as one file.
struct ObserverState {
  std::string json;
  std::string binary;
};

class Observer {
 public:
  virtual ~Observer() = default;

  // The registry spec that recreates this observer with its arguments, e.g.
  // "moving_average:c=0.01" or "per_channel_minmax".
  virtual std::string spec() const = 0;
  virtual bool per_channel() const = 0;
  // The options it was created with (SaveObserver stores them beside the spec).
  virtual const ObserverOptions& options() const = 0;

  // Feeds a float32 tensor. InvalidArgument for a non-float tensor, an empty tensor, a channel
  // axis out of range or a channel count different from earlier calls, and (unless skipped) for
  // NaN/Inf.
  virtual absl::Status Observe(const Tensor& x) = 0;

  // Forgets everything observed.
  virtual void Reset() = 0;

  // Quantization parameters for `target` from the statistics so far. FailedPrecondition if
  // nothing was observed; InvalidArgument if the target's qscheme is per-channel and the
  // observer is not (or the other way round).
  virtual absl::StatusOr<QuantParams> ComputeQParams(const QuantTarget& target) const = 0;

  // The range ComputeQParams would quantize (per tensor: one entry; per channel: one per
  // channel), before ChooseQParams widens it to include zero. For reports and tests.
  struct Ranges {
    std::vector<float> mins;
    std::vector<float> maxs;
  };
  virtual absl::StatusOr<Ranges> ComputeRanges(const QuantTarget& target) const = 0;

  // Adds `other`'s statistics to this one's. InvalidArgument if `other` is of another kind or
  // has incompatible arguments (different axis, channel count, averaging constant ...).
  virtual absl::Status Merge(const Observer& other) = 0;

  virtual std::unique_ptr<Observer> Clone() const = 0;

  // State for SaveObserver; RestoreState is its inverse on a freshly created observer of the
  // same spec (DataLoss naming the field for malformed state).
  virtual ObserverState SaveState() const = 0;
  virtual absl::Status RestoreState(const ObserverState& state) = 0;

  // Number of Observe calls that added data, and NaN/Inf values skipped (skip_non_finite).
  virtual int64_t num_batches() const = 0;
  virtual int64_t non_finite_skipped() const = 0;
};

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_OBSERVER_H_
