// Forward and backward of the two GEMM-shaped training layers, Conv2d and Linear, on
// kernels/fp32's packed-weight GEMM: the gradient kernels under qlab's native training and
// quantization-aware training (issue 8; the training engine in //train calls them).
//
// Kernel layer (like kernels/fp32): raw pointers, no validation (the training engine validates
// shapes once), no Highway types. Layouts are the engine's: activations NHWC, conv weights OIHW
// and linear weights [out][in] as PyTorch stores them, so that parameters and optimizer state
// are PyTorch's tensors element for element.
//
// How each product is computed (M = batch * out_h * out_w output pixels, K = kh * kw * in_c):
//   ConvForward    weights packed each call (they change every step), Fp32Conv2dNhwc.
//   dx, stride 1   a stride-1 convolution of dy with the flipped, transposed weights
//                  (Fp32Conv2dNhwc, padding dilation * (k - 1) - pad): no im2col, no scatter.
//   dx, stride > 1 dcol[M][K] = dy[M][out_c] x W[out_c][K] (Fp32Gemm), then col2im, gathered:
//                  each dx element adds its taps' dcol entries in tap order. Chunked by image.
//   dw             conv_filter_grad.h's Highway kernel on the zero-padded input: register tiles
//                  of (kh, kw, ic) rows x output-channel vectors accumulate x * dy over the
//                  output pixels in increasing order (no im2col); then reordered to OIHW.
//   dbias          column sums of dy, m in increasing order.
//   Linear         Fp32Gemm for y and dx; dw = dy^T x via the same GEMM with x packed.
//
// Determinism: every output element is computed by exactly one thread as a sum whose order
// depends only on the shape, never on the thread count: results are bit-identical for pool =
// null, 1 thread or 2 threads. Rounding: float32 with recursive summation (FMA where the target
// has it), within fp32_ref.h's Fp32SumTolerance of the exact result.
//
// Threads: `pool` may be null (the calling thread does everything).
#ifndef QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_H_
#define QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_H_

#include <pthreadpool.h>

#include <cstddef>
#include <memory>

#include "kernels/fp32/fp32_gemm.h"

namespace qlab::train {

// GemmLayerScratch: buffers reused across calls (packed weights, im2col columns, padded inputs,
// transposes). Each grows on demand to the largest size asked for and never shrinks. One per
// calling thread or per engine (calls sharing one scratch must not overlap). Move-only.
class GemmLayerScratch {
 public:
  GemmLayerScratch();
  ~GemmLayerScratch();
  GemmLayerScratch(GemmLayerScratch&&) noexcept;
  GemmLayerScratch& operator=(GemmLayerScratch&&) noexcept;
  GemmLayerScratch(const GemmLayerScratch&) = delete;
  GemmLayerScratch& operator=(const GemmLayerScratch&) = delete;

  // Floats held in all buffers together (memory accounting, tests).
  size_t CapacityFloats() const;

  struct Buffers;  // defined in gemm_layers.cc

 private:
  friend Buffers& ScratchBuffers(GemmLayerScratch& scratch);
  std::unique_ptr<Buffers> buffers_;
};

// ConvLayerShape: a 2-D convolution (groups = 1) with out_channels filters.
struct ConvLayerShape {
  kernels::Fp32ConvGeometry geometry;  // from kernels/fp32/fp32_gemm.h; groups = 1
  size_t out_channels = 1;
};

// y NHWC [batch][out_h][out_w][out_channels] = conv(x NHWC [batch][in_h][in_w][in_c],
// w OIHW [out_c][in_c][kh][kw]) + bias[out_c] (bias may be null).
void ConvForward(const ConvLayerShape& shape, const float* x, const float* w_oihw,
                 const float* bias, float* y, GemmLayerScratch& scratch, pthreadpool_t pool);

// Given dy (NHWC, y's shape), OVERWRITES dx (x's shape; null = not needed, e.g. the first layer),
// dw (OIHW; null = not needed) and dbias ([out_c]; null = not needed).
void ConvBackward(const ConvLayerShape& shape, const float* x, const float* w_oihw, const float* dy,
                  float* dx, float* dw, float* dbias, GemmLayerScratch& scratch,
                  pthreadpool_t pool);

// Linear: x [batch][in], w [out][in] (PyTorch's layout), bias [out] (nullable), y [batch][out].
void LinearForward(size_t batch, size_t in, size_t out, const float* x, const float* w,
                   const float* bias, float* y, GemmLayerScratch& scratch, pthreadpool_t pool);

// Given dy [batch][out], OVERWRITES dx [batch][in], dw [out][in] and dbias [out] (each nullable).
void LinearBackward(size_t batch, size_t in, size_t out, const float* x, const float* w,
                    const float* dy, float* dx, float* dw, float* dbias, GemmLayerScratch& scratch,
                    pthreadpool_t pool);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_GEMM_LAYERS_GEMM_LAYERS_H_
