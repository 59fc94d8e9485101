// Scalar reference (oracle) of train/ops/eltwise_grad.h for tests, templated on the element
// type (double for the finite-difference tests). Index arithmetic is written per element from
// the definitions (no row copies), independently of the kernels.
#ifndef QLAB_TRAIN_OPS_ELTWISE_GRAD_REF_H_
#define QLAB_TRAIN_OPS_ELTWISE_GRAD_REF_H_

#include <cstddef>

#include "train/ops/eltwise_grad.h"

namespace qlab::train {

template <typename T>
void ReluForwardRef(const T* x, size_t n, T* y) {
  for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : T(0);
}

// The derivative of max(0, x) is 1 for x > 0 and 0 for x < 0 (x == 0: PyTorch's choice, 0).
template <typename T>
void ReluBackwardRef(const T* x, const T* dy, size_t n, T* dx) {
  for (size_t i = 0; i < n; ++i) dx[i] = x[i] > 0 ? dy[i] : T(0);
}

// Every input element's flat index and, when it is sampled, the output element's; -1 if not.
inline long SliceOutputIndex(const SliceGeometry& g, size_t b, size_t h, size_t w) {
  if (h < g.begin_h || w < g.begin_w) return -1;
  if ((h - g.begin_h) % g.step_h != 0 || (w - g.begin_w) % g.step_w != 0) return -1;
  const size_t oh = (h - g.begin_h) / g.step_h, ow = (w - g.begin_w) / g.step_w;
  if (oh >= g.out_h || ow >= g.out_w) return -1;
  return static_cast<long>((b * g.out_h + oh) * g.out_w + ow);
}

template <typename T>
void StridedSliceForwardRef(const SliceGeometry& g, const T* x, T* y) {
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t h = 0; h < g.in_h; ++h)
      for (size_t w = 0; w < g.in_w; ++w) {
        const long o = SliceOutputIndex(g, b, h, w);
        if (o < 0) continue;
        for (size_t c = 0; c < g.channels; ++c) {
          y[o * g.channels + c] = x[((b * g.in_h + h) * g.in_w + w) * g.channels + c];
        }
      }
}

template <typename T>
void StridedSliceBackwardRef(const SliceGeometry& g, const T* dy, T* dx) {
  for (size_t b = 0; b < g.batch; ++b)
    for (size_t h = 0; h < g.in_h; ++h)
      for (size_t w = 0; w < g.in_w; ++w) {
        const long o = SliceOutputIndex(g, b, h, w);
        for (size_t c = 0; c < g.channels; ++c) {
          dx[((b * g.in_h + h) * g.in_w + w) * g.channels + c] =
              o < 0 ? T(0) : dy[o * g.channels + c];
        }
      }
}

template <typename T>
void ChannelPadForwardRef(size_t rows, size_t channels, size_t before, size_t after, const T* x,
                          T* y) {
  const size_t width = before + channels + after;
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < width; ++j) {
      y[r * width + j] = j >= before && j < before + channels ? x[r * channels + j - before] : T(0);
    }
}

template <typename T>
void ChannelPadBackwardRef(size_t rows, size_t channels, size_t before, size_t after, const T* dy,
                           T* dx) {
  const size_t width = before + channels + after;
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < channels; ++c) dx[r * channels + c] = dy[r * width + before + c];
}

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_ELTWISE_GRAD_REF_H_
