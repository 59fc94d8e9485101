// Pooling for training: max pool forward with the argmax its backward needs, and the backward
// passes of max, average and global average pooling, on NHWC activations.
//
// Kernel layer of qlab's training engine (//train): raw pointers, no validation. The geometry is
// kernels::Fp32PoolGeometry (kernels/fp32/fp32_pool.h), out_h/out_w given by the caller, with
// PyTorch's semantics: max-pool padding never wins (as -inf); average pooling divides by the
// padded window clipped to input + padding (count_include_pad) or by the number of real input
// pixels; the average forward passes are kernels::Fp32AvgPool2dNhwc / Fp32GlobalAvgPoolNhwc.
//
// Backward passes overwrite dx (zero, then scatter). Each input gradient receives its
// contributions in increasing output position (oh, ow), as PyTorch's CPU kernels add them, and
// average pooling adds dy / divisor rounded to float as PyTorch does: the results equal
// PyTorch 1.13's float32 results bit for bit (pool_grad_test). Threads: `pool` may be null;
// work is split by images (backward) or output rows (forward), which never changes a result.
#ifndef QLAB_TRAIN_OPS_POOL_GRAD_H_
#define QLAB_TRAIN_OPS_POOL_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>
#include <cstdint>

#include "kernels/fp32/fp32_pool.h"

namespace qlab::train {

// Writes the output and, per output element, the flat NHWC input index of its max
// (argmax[...] int32; the first max in (kh, kw) scan order, as PyTorch picks). As in PyTorch, a
// NaN in the window wins (the last NaN in scan order). Inputs must have < 2^31 elements.
void MaxPoolForward(const kernels::Fp32PoolGeometry& g, const float* x, float* y, int32_t* argmax,
                    pthreadpool_t pool);
// dx zeroed, then dx[argmax[o]] += dy[o] for every output o of the image, in output order.
void MaxPoolBackward(const kernels::Fp32PoolGeometry& g, const int32_t* argmax, const float* dy,
                     float* dx, pthreadpool_t pool);
// dx zeroed, then every input pixel of each output's window receives float(dy / divisor).
// Forward: kernels::Fp32AvgPool2dNhwc.
void AvgPoolBackward(const kernels::Fp32PoolGeometry& g, const float* dy, float* dx,
                     pthreadpool_t pool);
// dx[b][p][c] = dy[b][c] / float(pixels). Forward: kernels::Fp32GlobalAvgPoolNhwc.
void GlobalAvgPoolBackward(size_t batch, size_t pixels, size_t channels, const float* dy,
                           float* dx);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_POOL_GRAD_H_
