// NCHW <-> NHWC conversion at the engines' edges.
//
// qlab's graphs and users speak PyTorch's NCHW; the engines compute in NHWC (channels innermost,
// what the kernels vectorize over). Each engine converts its input once on the way in and its
// outputs once on the way out, with these two loops.
#ifndef QLAB_ENGINE_LAYOUT_H_
#define QLAB_ENGINE_LAYOUT_H_

#include <cstdint>

namespace qlab {

// `n` images of `c` channels x `hw` pixels.
template <typename T>
void NchwToNhwc(const T* in, int64_t n, int64_t c, int64_t hw, T* out) {
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const T* plane = in + (b * c + ch) * hw;
      T* dst = out + b * hw * c + ch;
      for (int64_t p = 0; p < hw; ++p) dst[p * c] = plane[p];
    }
  }
}

template <typename T>
void NhwcToNchw(const T* in, int64_t n, int64_t c, int64_t hw, T* out) {
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const T* src = in + b * hw * c + ch;
      T* plane = out + (b * c + ch) * hw;
      for (int64_t p = 0; p < hw; ++p) plane[p] = src[p * c];
    }
  }
}

}  // namespace qlab

#endif  // QLAB_ENGINE_LAYOUT_H_
