// Scalar reference (oracle) of train/ops/pool_grad.h for tests, templated on the element type
// (double for the finite-difference tests). The backward passes are written as gathers (each
// input element collects the outputs whose window holds it), the transpose of the kernels'
// scatters, from the window definitions of kernels/fp32/fp32_pool.h.
#ifndef QLAB_TRAIN_OPS_POOL_GRAD_REF_H_
#define QLAB_TRAIN_OPS_POOL_GRAD_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/fp32/fp32_pool.h"

namespace qlab::train {

// Output position o's window along one axis: [start, padded_end) including padding, [lo, hi)
// of real positions.
struct RefWindow {
  int64_t start, padded_end, lo, hi;
};
inline RefWindow RefAxisWindow(size_t o, size_t stride, size_t pad, size_t kernel, size_t size) {
  RefWindow w;
  w.start = static_cast<int64_t>(o * stride) - static_cast<int64_t>(pad);
  w.padded_end =
      std::min<int64_t>(w.start + static_cast<int64_t>(kernel), static_cast<int64_t>(size + pad));
  w.lo = std::max<int64_t>(w.start, 0);
  w.hi = std::min<int64_t>(w.padded_end, static_cast<int64_t>(size));
  return w;
}

// The divisor of output (oh, ow) of an average pool; 0 for a window without input pixels.
inline int64_t RefAvgDivisor(const kernels::Fp32PoolGeometry& g, size_t oh, size_t ow) {
  const RefWindow h = RefAxisWindow(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
  const RefWindow w = RefAxisWindow(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
  if (h.lo >= h.hi || w.lo >= w.hi) return 0;
  return g.count_include_pad ? (h.padded_end - h.start) * (w.padded_end - w.start)
                             : (h.hi - h.lo) * (w.hi - w.lo);
}

inline bool RefInWindow(const kernels::Fp32PoolGeometry& g, size_t oh, size_t ow, int64_t h,
                        int64_t w) {
  const RefWindow wh = RefAxisWindow(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
  const RefWindow ww = RefAxisWindow(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
  return h >= wh.lo && h < wh.hi && w >= ww.lo && w < ww.hi;
}

// Max pool with the flat NHWC index of the first maximum in (kh, kw) order (finite inputs).
template <typename T>
void MaxPoolForwardRef(const kernels::Fp32PoolGeometry& g, const T* x, T* y, int32_t* argmax) {
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t oh = 0; oh < g.out_h; ++oh)
      for (size_t ow = 0; ow < g.out_w; ++ow)
        for (size_t c = 0; c < g.channels; ++c) {
          T best = -std::numeric_limits<T>::infinity();
          int64_t where = -1;
          for (int64_t h = 0; h < static_cast<int64_t>(g.in_h); ++h)
            for (int64_t w = 0; w < static_cast<int64_t>(g.in_w); ++w) {
              if (!RefInWindow(g, oh, ow, h, w)) continue;
              const int64_t i =
                  ((static_cast<int64_t>(b * g.in_h) + h) * static_cast<int64_t>(g.in_w) + w) *
                      static_cast<int64_t>(g.channels) +
                  static_cast<int64_t>(c);
              if (where < 0 || x[i] > best) {
                best = x[i];
                where = i;
              }
            }
          const size_t o = ((b * g.out_h + oh) * g.out_w + ow) * g.channels + c;
          y[o] = best;
          argmax[o] = static_cast<int32_t>(where);
        }
}

// dx[i] = sum of dy[o] over the outputs o whose argmax is i.
template <typename T>
void MaxPoolBackwardRef(const kernels::Fp32PoolGeometry& g, const int32_t* argmax, const T* dy,
                        T* dx) {
  const size_t inputs = g.batch * g.in_h * g.in_w * g.channels;
  const size_t outputs = g.batch * g.out_h * g.out_w * g.channels;
  for (size_t i = 0; i < inputs; ++i) {
    T sum = 0;
    for (size_t o = 0; o < outputs; ++o) {
      if (argmax[o] == static_cast<int32_t>(i)) sum += dy[o];
    }
    dx[i] = sum;
  }
}

template <typename T>
void AvgPoolForwardRef(const kernels::Fp32PoolGeometry& g, const T* x, T* y) {
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t oh = 0; oh < g.out_h; ++oh)
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t divisor = RefAvgDivisor(g, oh, ow);
        for (size_t c = 0; c < g.channels; ++c) {
          T sum = 0;
          for (size_t h = 0; h < g.in_h; ++h)
            for (size_t w = 0; w < g.in_w; ++w) {
              if (RefInWindow(g, oh, ow, static_cast<int64_t>(h), static_cast<int64_t>(w))) {
                sum += x[((b * g.in_h + h) * g.in_w + w) * g.channels + c];
              }
            }
          y[((b * g.out_h + oh) * g.out_w + ow) * g.channels + c] =
              divisor == 0 ? T(0) : sum / static_cast<T>(divisor);
        }
      }
}

// dx[b][h][w][c] = sum over outputs (oh, ow) whose window holds (h, w) of dy / divisor.
template <typename T>
void AvgPoolBackwardRef(const kernels::Fp32PoolGeometry& g, const T* dy, T* dx) {
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t h = 0; h < g.in_h; ++h)
      for (size_t w = 0; w < g.in_w; ++w)
        for (size_t c = 0; c < g.channels; ++c) {
          T sum = 0;
          for (size_t oh = 0; oh < g.out_h; ++oh)
            for (size_t ow = 0; ow < g.out_w; ++ow) {
              if (!RefInWindow(g, oh, ow, static_cast<int64_t>(h), static_cast<int64_t>(w))) {
                continue;
              }
              sum += dy[((b * g.out_h + oh) * g.out_w + ow) * g.channels + c] /
                     static_cast<T>(RefAvgDivisor(g, oh, ow));
            }
          dx[((b * g.in_h + h) * g.in_w + w) * g.channels + c] = sum;
        }
}

template <typename T>
void GlobalAvgPoolForwardRef(size_t batch, size_t pixels, size_t channels, const T* x, T* y) {
  for (size_t b = 0; b < batch; ++b)
    for (size_t c = 0; c < channels; ++c) {
      T sum = 0;
      for (size_t p = 0; p < pixels; ++p) sum += x[(b * pixels + p) * channels + c];
      y[b * channels + c] = sum / static_cast<T>(pixels);
    }
}

template <typename T>
void GlobalAvgPoolBackwardRef(size_t batch, size_t pixels, size_t channels, const T* dy, T* dx) {
  for (size_t b = 0; b < batch; ++b)
    for (size_t p = 0; p < pixels; ++p)
      for (size_t c = 0; c < channels; ++c) {
        dx[(b * pixels + p) * channels + c] = dy[b * channels + c] / static_cast<T>(pixels);
      }
}

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_POOL_GRAD_REF_H_
