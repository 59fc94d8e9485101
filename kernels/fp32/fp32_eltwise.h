// fp32 elementwise kernels for qlab's FP32 engine (engine/): the residual add (+ ReLU) of a
// ResNet block when it is not fused into the conv, standalone ReLU, and the per-channel affine
// y = x * scale[c] + shift[c] of a batch norm that could not be folded into a conv.
//
// Kernel layer: raw pointers, no validation, no Highway types; runtime dispatch. Each output is
// one or two float operations on its own inputs, evaluated exactly as the interpreter does
// (add then max; multiply then add, unfused): results equal quant/graph's interpreter bit for
// bit. Outputs may alias inputs element for element (in place). Threads split the elements into
// large contiguous chunks (these kernels are memory-bound; small tensors run on the caller).
#ifndef QLAB_KERNELS_FP32_FP32_ELTWISE_H_
#define QLAB_KERNELS_FP32_FP32_ELTWISE_H_

#include <pthreadpool.h>

#include <cstddef>

namespace qlab::kernels {

// out[i] = a[i] + b[i], then max(0, .) if relu.
void Fp32Add(const float* a, const float* b, size_t n, bool relu, float* out,
             pthreadpool_t pool);

// out[i] = max(0, x[i]).
void Fp32Relu(const float* x, size_t n, float* out, pthreadpool_t pool);

// NHWC (or [N, C]) per-channel affine: out[p][c] = x[p][c] * scale[c] + shift[c] (multiply, then
// add: two roundings), then max(0, .) if relu; `pixels` rows of `channels`.
void Fp32ChannelAffine(const float* x, size_t pixels, size_t channels, const float* scale,
                       const float* shift, bool relu, float* out, pthreadpool_t pool);

const char* Fp32EltwiseTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_FP32_ELTWISE_H_
