// Elementwise and data-movement ops of ResNet training, forward and backward: ReLU, gradient
// accumulation (a residual branch joining its shortcut), and the option-A shortcut of He et
// al.'s CIFAR ResNets (x[:, :, ::2, ::2] then zero channels around it).
//
// Kernel layer of qlab's training engine (//train): raw pointers, no validation; NHWC
// activations (channels innermost). Outputs are overwritten (Accumulate is the one that adds).
// Every output element is computed from its own inputs, so threads (`pool`, may be null) never
// change a result.
#ifndef QLAB_TRAIN_OPS_ELTWISE_GRAD_H_
#define QLAB_TRAIN_OPS_ELTWISE_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>

namespace qlab::train {

// y = max(0, x) (kernels::Fp32Relu).
void ReluForward(const float* x, size_t n, float* y, pthreadpool_t pool);
// dx = y > 0 ? dy : 0, from ReLU's output y (so x need not be kept); may run in place (dx == dy).
void ReluBackward(const float* y, const float* dy, size_t n, float* dx, pthreadpool_t pool);
// dst += src.
void Accumulate(const float* src, size_t n, float* dst, pthreadpool_t pool);

// NHWC strided slice of the spatial axes, all channels: y[b][oh][ow][c] = x[b][begin_h + oh *
// step_h][begin_w + ow * step_w][c] for oh < out_h, ow < out_w (the caller keeps the positions
// inside the input; steps >= 1). x[:, :, ::2, ::2] is begin 0, step 2, out = ceil(in / 2).
struct SliceGeometry {
  size_t batch, in_h, in_w, channels;
  size_t begin_h, step_h, begin_w, step_w;
  size_t out_h, out_w;
};
void StridedSliceForward(const SliceGeometry& g, const float* x, float* y);
// dx = 0 everywhere, then dx at the sliced positions = dy.
void StridedSliceBackward(const SliceGeometry& g, const float* dy, float* dx);

// y [rows][before + channels + after] with zero channels around x [rows][channels]; backward
// takes the middle channels of dy.
void ChannelPadForward(size_t rows, size_t channels, size_t before, size_t after, const float* x,
                       float* y);
void ChannelPadBackward(size_t rows, size_t channels, size_t before, size_t after, const float* dy,
                        float* dx);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_ELTWISE_GRAD_H_
