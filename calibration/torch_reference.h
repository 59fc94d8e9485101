// Test-only bridge to PyTorch 1.13: feeds the same batches to PyTorch's observers (through
// torch_observers.py run by /usr/bin/python3, Debian's python3-torch) and returns their qparams
// and ranges, so conformance tests can compare qlab's observers against them bit for bit.
//
// Floats cross the process boundary as IEEE bit patterns inside JSON: nothing is lost in decimal.
// One Python process runs every case of a test (importing torch takes about a second).
#ifndef QLAB_CALIBRATION_TORCH_REFERENCE_H_
#define QLAB_CALIBRATION_TORCH_REFERENCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor.h"
#include "quant/qparams.h"

namespace qlab::calibration::testing {

struct TorchCase {
  // torch_observers.py's names: minmax, moving_average, per_channel_minmax,
  // per_channel_moving_average, histogram.
  std::string observer;
  double averaging_constant = 0.01;
  int axis = 0;
  int bins = 2048;
  QuantTarget target;
  std::vector<Tensor> batches;
};

struct TorchResult {
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
  std::vector<float> mins;
  std::vector<float> maxs;
};

absl::StatusOr<std::vector<TorchResult>> RunTorchObservers(const std::vector<TorchCase>& cases);

uint32_t FloatBits(float v);

// Test inputs: the distributions the issue names. Batch b of a series is drawn with its own
// seed and a slightly different spread (1 + b/4), so that moving averages and histogram
// re-binning have something to do.
enum class Distribution { kNormal, kHeavyTailed, kPostRelu, kConstant, kTiny, kHuge };
const char* DistributionName(Distribution d);
std::vector<Distribution> AllDistributions();
std::vector<Tensor> MakeBatches(Distribution d, uint32_t seed, const Shape& shape, int count);

}  // namespace qlab::calibration::testing

#endif  // QLAB_CALIBRATION_TORCH_REFERENCE_H_
