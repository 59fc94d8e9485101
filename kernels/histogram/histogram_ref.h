// Scalar oracle of kernels/histogram/histogram.h: the torch.histc bin rule written as the plain
// loop it is. Tests demand identical counts from every Highway target.
#ifndef QLAB_KERNELS_HISTOGRAM_HISTOGRAM_REF_H_
#define QLAB_KERNELS_HISTOGRAM_HISTOGRAM_REF_H_

#include <cstddef>
#include <cstdint>

#include "kernels/histogram/histogram.h"

namespace qlab::kernels {

// The bin of x, or -1 when x is not counted.
inline int64_t HistogramBinRef(float x, const HistogramBinning& b) {
  if (!(x >= b.lo && x <= b.hi)) return -1;
  const float width = b.hi - b.lo;
  const float scaled = ((x - b.lo) * static_cast<float>(b.bins)) / width;
  int64_t bin = static_cast<int64_t>(scaled);
  if (bin >= static_cast<int64_t>(b.bins)) bin = static_cast<int64_t>(b.bins) - 1;
  return bin;
}

inline size_t HistogramAccumulateRef(const float* x, size_t n, const HistogramBinning& b,
                                     int64_t* counts) {
  size_t counted = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t bin = HistogramBinRef(x[i], b);
    if (bin < 0) continue;
    ++counts[bin];
    ++counted;
  }
  return counted;
}

inline bool HistogramAccumulateIfInsideRef(const float* x, size_t n, const HistogramBinning& b,
                                           float inside_lo, float inside_hi, int64_t* counts) {
  for (size_t i = 0; i < n; ++i) {
    if (!(x[i] >= inside_lo && x[i] <= inside_hi)) return false;
  }
  HistogramAccumulateRef(x, n, b, counts);
  return true;
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_HISTOGRAM_HISTOGRAM_REF_H_
