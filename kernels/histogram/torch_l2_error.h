// Per-bin quantization errors of PyTorch 1.13's HistogramObserver L2 search: the inner loop of
// `_compute_quantization_error`, which calibration/histogram.cc's TorchL2Range evaluates for
// every candidate range (2048 bins per candidate, a dozen or more candidates per qparams).
//
// Kernel layer: raw pointers, no validation, no Highway types. For source bin i of width bw,
// relative to the candidate's first bin start_bin, and a destination grid of width dbw:
//   src_begin = float(i - start_bin) * bw,  src_end = src_begin + bw
//   dst_begin = clamp(floor_div(src_begin, dbw), 0, last),  dst_end likewise from src_end
//   norm[i]   = 0 + Norm(src_begin - (dst_begin + 0.5) * dbw, half, density[i])
//                 + (dst_end - dst_begin - 1) * (density[i] * middle)
//                 + Norm(neg_half, src_end - (dst_end * dbw + half), density[i])
//   Norm(b, e, dens) = dens * ((e * e * e - b * b * b) / 3)
// all in float32, one IEEE operation at a time in this order (PyTorch's tensor arithmetic), so
// every lane of the SIMD code rounds exactly as the scalar oracle. floor_div(a, b) is torch.div
// (rounding_mode='floor') on the CPU: 0 for a < 0, a / b (rounded) for 0 <= a < b, the exact
// floor of the real quotient otherwise. The caller sums the norms (in a fixed order).
#ifndef QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_H_
#define QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_H_

#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

// One candidate's grid. Preconditions (the caller's): every value finite, bw > 0, dbw > 0,
// |i - start_bin| < 2^24, last = float(dst_nbins - 1) >= 0.
struct TorchL2Grid {
  float bw;        // source bin width
  float dbw;       // destination bin width
  float half;      // float(dst_bin_width / 2), rounded from double as PyTorch's scalar is
  float neg_half;  // float(-dst_bin_width / 2)
  float middle;    // (half^3 - neg_half^3) / 3
  float last;      // float(dst_nbins - 1)
  int32_t start_bin;
};

// norms[i] for i in [0, n), from density[0, n).
void TorchL2BinErrors(const float* density, size_t n, const TorchL2Grid& grid, float* norms);

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_H_
