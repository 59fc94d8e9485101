// Scalar reference implementations (oracles) of kernels/quantize/quantize.h.
//
// Plain loops written straight from the formulas in quantize.h, compiled for the baseline ISA with
// no vectorization tricks. Every Highway target must reproduce them exactly (tests), and the
// benchmarks report the SIMD kernels' speed relative to them. Per-tensor variants are the
// per-channel ones with dims {1, 1, n}.
#ifndef QLAB_KERNELS_QUANTIZE_QUANTIZE_REF_H_
#define QLAB_KERNELS_QUANTIZE_QUANTIZE_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/quantize/quantize.h"

namespace qlab::kernels {

// nearbyint(v) + zero_point, clamped to [quant_min, quant_max]. `rounded_plus_zp` is exact
// whenever it lies in an 8-bit or 16-bit range; beyond +-2^24 it is clamped anyway.
inline int32_t ClampRoundedRef(float scaled, int32_t zero_point, int32_t quant_min,
                               int32_t quant_max) {
  const float rounded_plus_zp = std::nearbyint(scaled) + static_cast<float>(zero_point);
  const float clamped = std::min(std::max(rounded_plus_zp, static_cast<float>(quant_min)),
                                 static_cast<float>(quant_max));
  return static_cast<int32_t>(clamped);
}

// quantize_f32_to_q{s8,u8}_ref
template <typename Q>
void QuantizeRef(const float* x, const ChannelDims& dims, const PerChannelAffineParams& params,
                 Q* y) {
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const float inv_scale = 1.0f / params.scales[c];
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        const float v = std::isnan(x[i]) ? 0.0f : x[i];
        y[i] = static_cast<Q>(ClampRoundedRef(v * inv_scale, params.zero_points[c],
                                              params.quant_min, params.quant_max));
      }
    }
  }
}

// dequantize_q{s8,u8,s32}_to_f32_ref
template <typename Q>
void DequantizeRef(const Q* q, const ChannelDims& dims, const float* scales,
                   const int32_t* zero_points, float* y) {
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        const int32_t centered = static_cast<int32_t>(q[i]) - zero_points[c];
        y[i] = static_cast<float>(centered) * scales[c];
      }
    }
  }
}

// fake_quantize_f32_ref (with straight-through mask)
inline void FakeQuantizeRef(const float* x, const ChannelDims& dims,
                            const PerChannelAffineParams& params, float* y, uint8_t* mask) {
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const float scale = params.scales[c];
      const float inv_scale = 1.0f / scale;
      const int32_t zp = params.zero_points[c];
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        const float v = std::isnan(x[i]) ? 0.0f : x[i];
        const int32_t q = ClampRoundedRef(v * inv_scale, zp, params.quant_min, params.quant_max);
        y[i] = static_cast<float>(q - zp) * scale;
        if (mask != nullptr) {
          const float unclamped = std::nearbyint(x[i] * inv_scale) + static_cast<float>(zp);
          mask[i] = (unclamped >= static_cast<float>(params.quant_min) &&
                     unclamped <= static_cast<float>(params.quant_max))
                        ? 1
                        : 0;
        }
      }
    }
  }
}

// requantize_s32_to_q{s8,u8}_fp32_ref
template <typename Q>
void RequantizeRef(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                   const RequantizeOutput& output, Q* y) {
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        const float scaled = static_cast<float>(acc[i]) * multipliers[c];
        y[i] = static_cast<Q>(
            ClampRoundedRef(scaled, output.zero_point, output.quant_min, output.quant_max));
      }
    }
  }
}

// requantize_s32_to_q{s8,u8}_rndnu_ref
template <typename Q>
void RequantizeFixedPointRef(const int32_t* acc, const ChannelDims& dims,
                             const int32_t* multipliers, const int32_t* shifts,
                             const RequantizeOutput& output, Q* y) {
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const int64_t rounding = int64_t{1} << (shifts[c] - 1);
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        const int64_t product = static_cast<int64_t>(acc[i]) * multipliers[c];
        const int64_t scaled = (product + rounding) >> shifts[c];  // arithmetic shift
        const int64_t q = scaled + output.zero_point;
        y[i] = static_cast<Q>(std::min<int64_t>(std::max<int64_t>(q, output.quant_min),
                                                output.quant_max));
      }
    }
  }
}

// minmax_f32_ref: NaNs skipped and counted.
inline MinMaxResult MinMaxRef(const float* x, size_t n) {
  MinMaxResult result{std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity(), 0};
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) {
      ++result.nan_count;
      continue;
    }
    result.min = std::min(result.min, x[i]);
    result.max = std::max(result.max, x[i]);
  }
  return result;
}

inline size_t MinMaxPerChannelRef(const float* x, const ChannelDims& dims, float* mins,
                                  float* maxs) {
  std::fill(mins, mins + dims.channels, std::numeric_limits<float>::infinity());
  std::fill(maxs, maxs + dims.channels, -std::numeric_limits<float>::infinity());
  size_t nan_count = 0;
  size_t i = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      for (size_t k = 0; k < dims.inner; ++k, ++i) {
        if (std::isnan(x[i])) {
          ++nan_count;
          continue;
        }
        mins[c] = std::min(mins[c], x[i]);
        maxs[c] = std::max(maxs[c], x[i]);
      }
    }
  }
  return nan_count;
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QUANTIZE_QUANTIZE_REF_H_
