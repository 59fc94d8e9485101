// The max pool's training forward (values and argmax) on Highway vectors of channels: the body
// of pool_grad.h's MaxPoolForward, which splits the output rows over the pool and calls this.
//
// Kernel layer: raw pointers, no validation, no Highway types here (max_pool_forward.cc holds
// the per-target code and dispatches at run time). Semantics are pool_grad.h's: per channel the
// window is scanned in (kh, kw) order from -inf at its first real pixel, and a strictly greater
// value or a NaN takes over; a vector of channels does exactly the per-channel comparisons, so
// results are the same on every target, and the channels left over after the last whole vector
// take the same rule one at a time.
#ifndef QLAB_TRAIN_OPS_MAX_POOL_FORWARD_H_
#define QLAB_TRAIN_OPS_MAX_POOL_FORWARD_H_

#include <cstddef>
#include <cstdint>

#include "kernels/fp32/fp32_pool.h"

namespace qlab::train::internal {

// Output rows [row_begin, row_end) of the flattened (batch, out_h) rows: y and argmax (flat NHWC
// input index, int32; inputs must have < 2^31 elements).
void MaxPoolForwardRows(const kernels::Fp32PoolGeometry& g, const float* x, size_t row_begin,
                        size_t row_end, float* y, int32_t* argmax);

}  // namespace qlab::train::internal

#endif  // QLAB_TRAIN_OPS_MAX_POOL_FORWARD_H_
