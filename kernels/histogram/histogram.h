// Histogram accumulation: the hot loop of histogram calibration (calibration/histogram.h).
//
// Kernel layer: raw pointers, no validation, no allocation visible to callers, no Highway types.
// The bin of an element follows PyTorch's torch.histc (1.13, CPU, linear bin selection), so that
// qlab's HistogramObserver sees bit-identical counts:
//   counted  iff lo <= x <= hi (NaN never is),
//   bin      = int((x - lo) * float(bins) / (hi - lo)), all in float32, one IEEE operation at a
//              time, and the last bin includes its right edge (bin == bins -> bins - 1).
// SIMD computes the bin indices of a block (the float arithmetic is identical lane by lane to
// the scalar formula); the increments are scalar, spread over several partial histograms so
// that runs of equal bins do not serialize on one memory location, and run while the next
// block's indices are computed (see histogram.cc for the measurements behind the choices).
#ifndef QLAB_KERNELS_HISTOGRAM_HISTOGRAM_H_
#define QLAB_KERNELS_HISTOGRAM_HISTOGRAM_H_

#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

// The bins: `bins` equal bins over [lo, hi]. Preconditions (checked by callers): lo and hi
// finite, lo < hi, 1 <= bins <= 2^24 (so bin indices are exact in float).
struct HistogramBinning {
  float lo;
  float hi;
  uint32_t bins;
};

// Adds the number of elements of x[0, n) falling in each bin to counts[0, bins). Returns how
// many elements were counted (the rest were outside [lo, hi] or NaN).
size_t HistogramAccumulate(const float* x, size_t n, const HistogramBinning& binning,
                           int64_t* counts);

// Steady-state calibration in one pass: as HistogramAccumulate, but only if every element of
// x[0, n) lies in [inside_lo, inside_hi] (NaN never does). Returns true after adding the counts,
// or false, leaving `counts` unchanged, as soon as a block holds an element outside: a caller
// that speculated that a batch lies inside the range it has seen then computes the batch's range
// and bins it again (calibration/histogram.h).
bool HistogramAccumulateIfInside(const float* x, size_t n, const HistogramBinning& binning,
                                 float inside_lo, float inside_hi, int64_t* counts);

// Name of the Highway target the kernel dispatches to on this CPU.
const char* HistogramKernelTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_HISTOGRAM_HISTOGRAM_H_
