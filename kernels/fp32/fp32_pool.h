// fp32 pooling on NHWC tensors: the max pool of ResNet's ImageNet stem, general average pooling,
// and the global average pool before every ResNet classifier, for qlab's FP32 engine (engine/).
//
// Kernel layer: raw pointers, no validation, no Highway types; runtime dispatch to the best
// Highway target. Channels are contiguous in NHWC, so every kernel vectorizes over channels and
// walks the window pixel by pixel. Oracles: fp32_ref.h.
//
// Semantics are PyTorch's (and quant/graph/interpreter.cc's):
//   max: padding never wins (as -inf). NaN propagation is unspecified (SIMD max returns either
//        operand); the engine runs finite data.
//   avg: the window is clipped to the padded input (a ceil-mode window may hang over the right
//        edge); the divisor is that clipped window's area if count_include_pad, else the number of
//        real input pixels in it; a window with no input pixel gives 0. Sums run in (h, w) order
//        in float, then one division: the result equals the interpreter's bit for bit.
// Threads: `pool` may be null; work is split by output rows, which never changes a result.
#ifndef QLAB_KERNELS_FP32_FP32_POOL_H_
#define QLAB_KERNELS_FP32_FP32_POOL_H_

#include <pthreadpool.h>

#include <cstddef>

namespace qlab::kernels {

struct Fp32PoolGeometry {
  size_t batch = 1;
  size_t in_h = 1, in_w = 1, channels = 1;
  size_t kernel_h = 1, kernel_w = 1;
  size_t stride_h = 1, stride_w = 1;
  size_t pad_h = 0, pad_w = 0;
  size_t out_h = 1, out_w = 1;  // the caller's (e.g. quant/graph shape inference, ceil_mode)
  bool count_include_pad = true;  // average pooling only
};

// input [batch][in_h][in_w][channels] -> output [batch][out_h][out_w][channels], contiguous.
void Fp32MaxPool2dNhwc(const Fp32PoolGeometry& geometry, const float* input, float* output,
                       pthreadpool_t pool);
void Fp32AvgPool2dNhwc(const Fp32PoolGeometry& geometry, const float* input, float* output,
                       pthreadpool_t pool);

// output[b][c] = mean over the `pixels` pixels of input[b][pixel][c] (sum in pixel order, then
// one division by float(pixels)).
void Fp32GlobalAvgPoolNhwc(size_t batch, size_t pixels, size_t channels, const float* input,
                           float* output);

const char* Fp32PoolTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_FP32_POOL_H_
