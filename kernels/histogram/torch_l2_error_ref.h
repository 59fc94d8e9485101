// Scalar oracle of kernels/histogram/torch_l2_error.h: PyTorch's per-bin error as the plain loop
// it is, the floor division as one double division (exact: a non-integer quotient of two floats
// lies at least 2^-24 from an integer, far more than double's rounding error for the quotients
// below 2^29 that occur). Tests demand bit-identical norms from every Highway target.
#ifndef QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_REF_H_
#define QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/histogram/torch_l2_error.h"

namespace qlab::kernels {

inline float TorchFloorDivideRef(float a, float b, float last) {
  if (a < 0.0f) return 0.0f;
  if (a < b) return std::min(a / b, last);
  return static_cast<float>(
      std::min(std::floor(static_cast<double>(a) / static_cast<double>(b)),
               static_cast<double>(last)));
}

inline float TorchNormRef(float begin, float end, float density) {
  return density * ((end * end * end - begin * begin * begin) / 3.0f);
}

inline void TorchL2BinErrorsRef(const float* density, size_t n, const TorchL2Grid& g,
                                float* norms) {
  for (size_t i = 0; i < n; ++i) {
    const float src_begin = static_cast<float>(static_cast<int32_t>(i) - g.start_bin) * g.bw;
    const float src_end = src_begin + g.bw;
    const float dst_begin = TorchFloorDivideRef(src_begin, g.dbw, g.last);
    const float dst_end = TorchFloorDivideRef(src_end, g.dbw, g.last);
    float norm = 0.0f;
    norm += TorchNormRef(src_begin - (dst_begin + 0.5f) * g.dbw, g.half, density[i]);
    norm += (dst_end - dst_begin - 1.0f) * (density[i] * g.middle);
    norm += TorchNormRef(g.neg_half, src_end - (dst_end * g.dbw + g.half), density[i]);
    norms[i] = norm;
  }
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_HISTOGRAM_TORCH_L2_ERROR_REF_H_
