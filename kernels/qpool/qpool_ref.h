// Scalar references (oracles) of kernels/qpool/qpool.h: plain loops straight from the formulas
// in qpool.h, sharing no code with the kernels except kernels/quantize's reference requantization.
// Every Highway target must reproduce them bit for bit.
#ifndef QLAB_KERNELS_QPOOL_QPOOL_REF_H_
#define QLAB_KERNELS_QPOOL_QPOOL_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/qpool/qpool.h"
#include "kernels/quantize/quantize.h"
#include "kernels/quantize/quantize_ref.h"

namespace qlab::kernels {

// maxpool_nhwc_u8_ref: window taps outside the input are skipped.
inline void QMaxPoolU8_NHWC_Ref(const QPoolShape& s, const uint8_t* x, uint8_t* y) {
  const size_t out_h = s.output_height(), out_w = s.output_width();
  for (size_t b = 0; b < s.batch; ++b) {
    for (size_t oy = 0; oy < out_h; ++oy) {
      for (size_t ox = 0; ox < out_w; ++ox) {
        for (size_t c = 0; c < s.channels; ++c) {
          int best = -1;
          for (size_t ky = 0; ky < s.kernel_height; ++ky) {
            for (size_t kx = 0; kx < s.kernel_width; ++kx) {
              const long iy =
                  static_cast<long>(oy * s.stride_height + ky) - static_cast<long>(s.padding_top);
              const long ix =
                  static_cast<long>(ox * s.stride_width + kx) - static_cast<long>(s.padding_left);
              if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.input_height) ||
                  ix >= static_cast<long>(s.input_width)) {
                continue;
              }
              const size_t i = ((b * s.input_height + static_cast<size_t>(iy)) * s.input_width +
                                static_cast<size_t>(ix)) *
                                   s.channels +
                               c;
              best = std::max(best, int{x[i]});
            }
          }
          y[((b * out_h + oy) * out_w + ox) * s.channels + c] = static_cast<uint8_t>(best);
        }
      }
    }
  }
}

// global_avgpool_nhwc_u8_ref: int64 sums of (x - zp), then kernels/quantize's RequantizeRef; or
// the float form's loops (qpool.h).
inline void QGlobalAvgPoolU8_NHWC_Ref(const uint8_t* x, size_t batch, size_t pixels,
                                      size_t channels, const QGlobalAvgPoolParams& p, uint8_t* y) {
  if (p.input_scale > 0.0f) {  // float form: dequantize, average as kernels/fp32, quantize
    for (size_t b = 0; b < batch; ++b) {
      for (size_t c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (size_t q = 0; q < pixels; ++q) {
          const float dequantized =
              static_cast<float>(int32_t{x[(b * pixels + q) * channels + c]} - p.input_zero_point) *
              p.input_scale;
          sum = sum + dequantized;
        }
        const float mean = sum / static_cast<float>(pixels);
        y[b * channels + c] = static_cast<uint8_t>(
            ClampRoundedRef(mean * p.output_inverse_scale, p.output_zero_point, p.min, p.max));
      }
    }
    return;
  }
  std::vector<int32_t> acc(batch * channels);
  for (size_t b = 0; b < batch; ++b) {
    for (size_t c = 0; c < channels; ++c) {
      int64_t sum = 0;
      for (size_t q = 0; q < pixels; ++q) {
        sum += int64_t{x[(b * pixels + q) * channels + c]} - p.input_zero_point;
      }
      acc[b * channels + c] = static_cast<int32_t>(sum);
    }
  }
  RequantizeRef(acc.data(), ChannelDims{1, 1, batch * channels}, &p.multiplier,
                RequantizeOutput{p.output_zero_point, p.min, p.max}, y);
}

// add_u8_ref
inline void QAddU8Ref(const uint8_t* a, const uint8_t* b, size_t n, const QAddParams& p,
                      uint8_t* y) {
  for (size_t i = 0; i < n; ++i) {
    const float fa = static_cast<float>(int32_t{a[i]} - p.a_zero_point);
    const float fb = static_cast<float>(int32_t{b[i]} - p.b_zero_point);
    const float scaled_a = fa * p.a_multiplier;
    const float scaled_b = fb * p.b_multiplier;
    const float sum = scaled_a + scaled_b;
    const float rounded = std::nearbyint(sum * p.output_multiplier);
    const float q = rounded + static_cast<float>(p.output_zero_point);
    y[i] = static_cast<uint8_t>(
        std::min(std::max(q, static_cast<float>(p.min)), static_cast<float>(p.max)));
  }
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QPOOL_QPOOL_REF_H_
