// Double-precision reference (oracle) of train/gemm_layers: Conv2d and Linear forward and
// backward as the plain loops of their definitions, in double, on unpacked data (NHWC
// activations, OIHW / [out][in] weights), sharing nothing with the float kernels.
//
// Backward is written as the scatter of each forward product's contributions, the most direct
// transcription of the chain rule: for y[m][o] += x[pixel(m, tap)][i] * w[o][i][tap],
//   dx[pixel(m, tap)][i] += dy[m][o] * w[o][i][tap],   dw[o][i][tap] += dy[m][o] * x[..][i].
// Each function also returns, per output, the magnitude its float error bound scales with:
// sum |term| over the products (and bias) summed into it (see kernels/fp32/fp32_ref.h,
// Fp32SumTolerance). Outputs and magnitudes are overwritten; magnitude pointers may be null.
#ifndef QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_REF_H_
#define QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "train/gemm_layers/gemm_layers.h"

namespace qlab::train {

// Calls visit(m, o, x_index, w_index) for every product x[x_index] * w[w_index] summed into
// y[m * out_c + o] (taps in the padding contribute nothing and are skipped).
template <class Visit>
void ForEachConvProductRef(const ConvLayerShape& shape, Visit&& visit) {
  const kernels::Fp32ConvGeometry& g = shape.geometry;
  const size_t c = g.in_channels, oc = shape.out_channels;
  for (size_t n = 0; n < g.batch; ++n) {
    for (size_t oh = 0; oh < g.out_h; ++oh) {
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const size_t m = (n * g.out_h + oh) * g.out_w + ow;
        for (size_t kh = 0; kh < g.kernel_h; ++kh) {
          const int64_t ih = static_cast<int64_t>(oh * g.stride_h + kh * g.dilation_h) -
                             static_cast<int64_t>(g.pad_h);
          if (ih < 0 || ih >= static_cast<int64_t>(g.in_h)) continue;
          for (size_t kw = 0; kw < g.kernel_w; ++kw) {
            const int64_t iw = static_cast<int64_t>(ow * g.stride_w + kw * g.dilation_w) -
                               static_cast<int64_t>(g.pad_w);
            if (iw < 0 || iw >= static_cast<int64_t>(g.in_w)) continue;
            const size_t pixel =
                (n * g.in_h + static_cast<size_t>(ih)) * g.in_w + static_cast<size_t>(iw);
            for (size_t o = 0; o < oc; ++o) {
              for (size_t i = 0; i < c; ++i) {
                visit(m, o, pixel * c + i, ((o * c + i) * g.kernel_h + kh) * g.kernel_w + kw);
              }
            }
          }
        }
      }
    }
  }
}

inline size_t ConvInputSizeRef(const ConvLayerShape& s) {
  const kernels::Fp32ConvGeometry& g = s.geometry;
  return g.batch * g.in_h * g.in_w * g.in_channels;
}
inline size_t ConvOutputSizeRef(const ConvLayerShape& s) {
  const kernels::Fp32ConvGeometry& g = s.geometry;
  return g.batch * g.out_h * g.out_w * s.out_channels;
}
inline size_t ConvWeightSizeRef(const ConvLayerShape& s) {
  const kernels::Fp32ConvGeometry& g = s.geometry;
  return s.out_channels * g.in_channels * g.kernel_h * g.kernel_w;
}

// y = conv(x, w) + bias (bias nullable).
inline void ConvForwardRef(const ConvLayerShape& shape, const double* x, const double* w,
                           const double* bias, double* y, double* y_magnitude) {
  const size_t oc = shape.out_channels, outputs = ConvOutputSizeRef(shape);
  for (size_t j = 0; j < outputs; ++j) {
    y[j] = bias != nullptr ? bias[j % oc] : 0.0;
    if (y_magnitude != nullptr) y_magnitude[j] = std::fabs(y[j]);
  }
  ForEachConvProductRef(shape, [&](size_t m, size_t o, size_t xi, size_t wi) {
    const double t = x[xi] * w[wi];
    y[m * oc + o] += t;
    if (y_magnitude != nullptr) y_magnitude[m * oc + o] += std::fabs(t);
  });
}

// dx, dw, dbias of loss(y) given dy = dloss/dy. Any output pointer may be null.
inline void ConvBackwardRef(const ConvLayerShape& shape, const double* x, const double* w,
                            const double* dy, double* dx, double* dx_magnitude, double* dw,
                            double* dw_magnitude, double* dbias, double* dbias_magnitude) {
  const size_t oc = shape.out_channels;
  const auto zero = [](double* p, size_t n) {
    if (p != nullptr) std::fill(p, p + n, 0.0);
  };
  zero(dx, ConvInputSizeRef(shape));
  zero(dx_magnitude, ConvInputSizeRef(shape));
  zero(dw, ConvWeightSizeRef(shape));
  zero(dw_magnitude, ConvWeightSizeRef(shape));
  zero(dbias, oc);
  zero(dbias_magnitude, oc);
  ForEachConvProductRef(shape, [&](size_t m, size_t o, size_t xi, size_t wi) {
    const double g = dy[m * oc + o];
    if (dx != nullptr) dx[xi] += g * w[wi];
    if (dx_magnitude != nullptr) dx_magnitude[xi] += std::fabs(g * w[wi]);
    if (dw != nullptr) dw[wi] += g * x[xi];
    if (dw_magnitude != nullptr) dw_magnitude[wi] += std::fabs(g * x[xi]);
  });
  for (size_t j = 0; j < ConvOutputSizeRef(shape); ++j) {
    if (dbias != nullptr) dbias[j % oc] += dy[j];
    if (dbias_magnitude != nullptr) dbias_magnitude[j % oc] += std::fabs(dy[j]);
  }
}

// y[b][o] = sum_i x[b][i] w[o][i] + bias[o].
inline void LinearForwardRef(size_t batch, size_t in, size_t out, const double* x, const double* w,
                             const double* bias, double* y, double* y_magnitude) {
  for (size_t b = 0; b < batch; ++b) {
    for (size_t o = 0; o < out; ++o) {
      double sum = bias != nullptr ? bias[o] : 0.0;
      double magnitude = std::fabs(sum);
      for (size_t i = 0; i < in; ++i) {
        sum += x[b * in + i] * w[o * in + i];
        magnitude += std::fabs(x[b * in + i] * w[o * in + i]);
      }
      y[b * out + o] = sum;
      if (y_magnitude != nullptr) y_magnitude[b * out + o] = magnitude;
    }
  }
}

inline void LinearBackwardRef(size_t batch, size_t in, size_t out, const double* x, const double* w,
                              const double* dy, double* dx, double* dx_magnitude, double* dw,
                              double* dw_magnitude, double* dbias, double* dbias_magnitude) {
  const auto zero = [](double* p, size_t n) {
    if (p != nullptr) std::fill(p, p + n, 0.0);
  };
  zero(dx, batch * in);
  zero(dx_magnitude, batch * in);
  zero(dw, out * in);
  zero(dw_magnitude, out * in);
  zero(dbias, out);
  zero(dbias_magnitude, out);
  for (size_t b = 0; b < batch; ++b) {
    for (size_t o = 0; o < out; ++o) {
      const double g = dy[b * out + o];
      for (size_t i = 0; i < in; ++i) {
        if (dx != nullptr) dx[b * in + i] += g * w[o * in + i];
        if (dx_magnitude != nullptr) dx_magnitude[b * in + i] += std::fabs(g * w[o * in + i]);
        if (dw != nullptr) dw[o * in + i] += g * x[b * in + i];
        if (dw_magnitude != nullptr) dw_magnitude[o * in + i] += std::fabs(g * x[b * in + i]);
      }
      if (dbias != nullptr) dbias[o] += g;
      if (dbias_magnitude != nullptr) dbias_magnitude[o] += std::fabs(g);
    }
  }
}

}  // namespace qlab::train

#endif  // QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_REF_H_
