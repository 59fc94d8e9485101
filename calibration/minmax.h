// The min-max family of observers: min-max and moving-average min-max, per tensor and per
// channel, with PyTorch 1.13's arithmetic (torch.ao.quantization.observer):
//
//   minmax                      MinMaxObserver: the running min and max of everything seen.
//   moving_average:c=<c>        MovingAverageMinMaxObserver: the first batch sets [min, max];
//                               every later batch moves them by min += c * (batch_min - min)
//                               (likewise max), in float32 with c rounded to float32 as PyTorch
//                               does.
//   per_channel_minmax          PerChannelMinMaxObserver: one range per slice along the channel
//   per_channel_moving_average  axis (ObserverOptions::channel_axis), reducing over every other
//                               axis; MovingAveragePerChannelMinMaxObserver for the second.
//
// Merge semantics (a.Merge(b) = "a's data, then b's"):
//   - min-max: exact and order-independent (min of mins, max of maxs).
//   - moving average: an EMA depends on batch order, and it is affine in its starting point, so
//     b keeps its first batch's range and its update count k. Feeding a's data then b's would
//     have started b's recursion from a's value instead of b's first batch, which changes the
//     result by exactly (1 - c)^k * (a - b_first). Merge applies that correction (in double,
//     rounded once to float32), so the merged range equals sequential feeding up to float32
//     rounding (a few ulps; sequential feeding rounds at every step) — not bit for bit.
// Channels that saw no finite value (skip_non_finite) keep their previous range.
#ifndef QLAB_CALIBRATION_MINMAX_H_
#define QLAB_CALIBRATION_MINMAX_H_

#include <memory>
#include <optional>

#include "calibration/observer.h"

namespace qlab::calibration {

struct MinMaxObserverConfig {
  bool per_channel = false;
  // Set for the moving-average variants: PyTorch's averaging_constant, in (0, 1].
  std::optional<double> averaging_constant;
};

// The registry's factory for the four specs above; `config` is assumed validated (the registry
// checks c's range when parsing the spec).
std::unique_ptr<Observer> MakeMinMaxObserver(const MinMaxObserverConfig& config,
                                             const ObserverOptions& options);

}  // namespace qlab::calibration

#endif  // QLAB_CALIBRATION_MINMAX_H_
