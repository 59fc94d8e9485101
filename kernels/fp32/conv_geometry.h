// The geometry of a 2-D NHWC convolution as kernels/fp32's convolutions take it, and where each
// filter tap of one output pixel reads: the indirection that the float convolution
// (fp32_gemm.h) and the double-accumulation one (fp32_gemm_double.h, on a double copy of the
// input) both walk, so that the two can only differ in their arithmetic.
#ifndef QLAB_KERNELS_FP32_CONV_GEOMETRY_H_
#define QLAB_KERNELS_FP32_CONV_GEOMETRY_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qlab::kernels {

// Geometry of a 2-D convolution on NHWC tensors (groups = 1). Output sizes are the caller's
// (validated against the input size, e.g. by quant/graph's shape inference):
//   out = (in + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1.
struct Fp32ConvGeometry {
  size_t batch = 1;
  size_t in_h = 1, in_w = 1, in_channels = 1;
  size_t kernel_h = 1, kernel_w = 1;
  size_t stride_h = 1, stride_w = 1;
  size_t pad_h = 0, pad_w = 0;  // zero padding on both sides
  size_t dilation_h = 1, dilation_w = 1;
  size_t out_h = 1, out_w = 1;
};

// Output pixel m's (m = (image * out_h + oh) * out_w + ow) filter taps, in (kh, kw) order:
// taps[kh * kernel_w + kw] points at the input pixel's in_channels values in `input`
// (NHWC [batch][in_h][in_w][in_channels]), or at `zeros` (>= in_channels zeros) where the tap
// falls in the padding.
template <typename T>
inline void ConvTapPointers(const Fp32ConvGeometry& g, const T* input, const T* zeros, size_t m,
                            const T** taps) {
  const size_t ow = m % g.out_w;
  const size_t oh = (m / g.out_w) % g.out_h;
  const size_t image = m / (g.out_w * g.out_h);
  const T* base = input + image * g.in_h * g.in_w * g.in_channels;
  for (size_t kh = 0; kh < g.kernel_h; ++kh) {
    // Signed: a tap in the top/left padding has a negative input coordinate.
    const int64_t ih =
        static_cast<int64_t>(oh * g.stride_h + kh * g.dilation_h) - static_cast<int64_t>(g.pad_h);
    const bool row_inside = ih >= 0 && ih < static_cast<int64_t>(g.in_h);
    for (size_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t iw = static_cast<int64_t>(ow * g.stride_w + kw * g.dilation_w) -
                         static_cast<int64_t>(g.pad_w);
      const bool inside = row_inside && iw >= 0 && iw < static_cast<int64_t>(g.in_w);
      taps[kh * g.kernel_w + kw] =
          inside ? base + (static_cast<size_t>(ih) * g.in_w + static_cast<size_t>(iw)) *
                              g.in_channels
                 : zeros;
    }
  }
}

// One row of a column-padded NHWC input: dst[0, padded_w * channels) = pad_left zero pixels,
// then the row's in_w pixels from src, then zero pixels up to padded_w (>= pad_left + in_w). The
// float convolution's row-run mode (fp32_gemm.cc) and the training filter gradient's padded
// input (train/gemm_layers) write their rows with it.
inline void PadRowColumns(const float* src, size_t in_w, size_t channels, size_t pad_left,
                          size_t padded_w, float* dst) {
  std::memset(dst, 0, pad_left * channels * sizeof(float));
  std::memcpy(dst + pad_left * channels, src, in_w * channels * sizeof(float));
  std::memset(dst + (pad_left + in_w) * channels, 0,
              (padded_w - pad_left - in_w) * channels * sizeof(float));
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_CONV_GEOMETRY_H_
