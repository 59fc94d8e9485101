// Backward passes of fake quantization for quantization-aware training: the straight-through
// estimator (STE) of fixed-parameter fake quantization, and LSQ (learned step size, Esser et al.
// 2020), whose scale and zero point are trained as well.
//
// Kernel layer of qlab's training engine (//train): raw pointers, no validation; x finite;
// scale > 0; quant_min < quant_max within [-2^24, 2^24] (2-, 4-, 8-bit ranges, signed or not).
// The forward passes are kernels::FakeQuantize / FakeQuantizePerChannel
// (kernels/quantize/quantize.h), which already compute PyTorch's forward and STE mask bit for
// bit; LSQ only adds PyTorch's rounding of the learned float zero point in front of them.
//
// LSQ follows PyTorch 1.13's torch._fake_quantize_learnable_per_tensor_affine and
// _fake_quantize_learnable_per_channel_affine (aten/src/ATen/native/quantized/
// FakeQuantPerTensorAffine.cpp, FakeQuantPerChannelAffine.cpp and the CPU kernels in
// cpu/kernels/QuantizedOpKernels.cpp), including two quirks a trainer must know about:
//   * zero point, forward (both):         zp = clamp(nearbyint(zero_point), qmin, qmax)
//     zero point, backward (per tensor):  zp = (int)clamp(zero_point + 0.5f, qmin, qmax)
//     zero point, backward (per channel): the forward's.
//     So for a per-tensor zero point of e.g. 2.5 the forward uses 2 and the backward 3.
//   * the backward re-quantizes as xq = nearbyint(zp + x * inv_scale), inv_scale = 1.0f / scale
//     (not nearbyint(x * inv_scale) + zp as the forward does), and PyTorch's x86 build contracts
//     zp + x * inv_scale and (xq - zp) * scale - x into fused multiply-adds (measured: with FMA
//     every per-element gradient in fake_quant_grad_test equals PyTorch's; without it 1/3 to 9/10
//     of the dscale terms differ in their last bits, and inputs on exact half-steps can round xq
//     the other way). This file calls std::fma there explicitly; nothing else is fused.
// Per element, with xq as above, s = scale, g = grad_factor:
//   inside (qmin <= xq <= qmax): dx = dy, dscale = ((dy * fma(xq - zp, s, -x)) * (1/s)) * g,
//                                dzero_point = 0;
//   below / above:               dx = 0,  dscale = (dy * (qmin|qmax - zp)) * g,
//                                dzero_point = ((-dy) * s) * g.
// dscale and dzero_point are these per-element float terms summed (per channel) in double over
// fixed blocks in block order and rounded once: bit-identical for any thread count, and within
// float summation error of PyTorch's own float sums. dx is zero outside the clip range (PyTorch
// multiplies dy by the mask and writes -0 for a negative dy there; equal as values).
#ifndef QLAB_TRAIN_OPS_FAKE_QUANT_GRAD_H_
#define QLAB_TRAIN_OPS_FAKE_QUANT_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>
#include <cstdint>

#include "kernels/quantize/quantize.h"

namespace qlab::train {

// kernels::FakeQuantize over fixed blocks of elements on `pool` (may be null); same results.
void ParallelFakeQuantize(const float* x, size_t n, const kernels::AffineParams& params, float* y,
                          uint8_t* mask, pthreadpool_t pool);

// kernels::FakeQuantizePerChannel on `pool` (may be null); same results. Tasks take whole
// [channels, inner] slabs of the outer axis or, for a single slab (a weight, outer == 1), blocks
// of channels: a weight's fake quantization is one of a QAT step's largest element passes.
void ParallelFakeQuantizePerChannel(const float* x, const kernels::ChannelDims& dims,
                                    const kernels::PerChannelAffineParams& params, float* y,
                                    uint8_t* mask, pthreadpool_t pool);

// Straight-through estimator backward: dx = mask ? dy : 0 (mask from kernels::FakeQuantize*),
// over fixed blocks on `pool` (may be null).
void FakeQuantSteBackward(const uint8_t* mask, const float* dy, size_t n, float* dx,
                          pthreadpool_t pool);
// FakeQuantSteBackward of a fake quantizer reading a ReLU's output relu_y, then the ReLU's
// backward, in one pass: dx = (mask && relu_y > 0) ? dy : 0, the same bits as the two passes.
void FakeQuantSteReluBackward(const uint8_t* mask, const float* relu_y, const float* dy, size_t n,
                              float* dx, pthreadpool_t pool);

// PACT (Choi et al., 2018, "PACT: Parameterized Clipping Activation for Quantized Neural
// Networks"): an activation is clipped to [0, alpha] with alpha a trained parameter, then
// quantized uniformly over that range (scale alpha / (quant_max - quant_min), zero point
// quant_min: the caller fake-quantizes with those). Backward with the straight-through estimator
// through the rounding, as in the paper: dx = dy where 0 <= x < alpha, else 0; dalpha = the sum
// of dy where x >= alpha (in double: fixed blocks of elements added in block order, so the same
// bits for any pool). *dalpha is overwritten.
void PactBackward(const float* x, const float* dy, size_t n, float alpha, float* dx, double* dalpha,
                  pthreadpool_t pool);

// LSQ's learned parameters: scales[c] and zero_points[c] for c in [0, channels) (one each per
// tensor), the integer range, and the gradient scale LSQ applies to dscale and dzero_point
// (1 / sqrt(numel * quant_max) in the paper; chosen by the caller; unused by the forward).
struct LsqParams {
  const float* scales;
  const float* zero_points;  // learned, float
  int32_t quant_min;
  int32_t quant_max;
  float grad_factor;
};

// The integer zero point LSQ's forward quantizes with: clamp(nearbyint(zero_point), qmin, qmax)
// (round half to even).
int32_t LsqForwardZeroPoint(float zero_point, int32_t quant_min, int32_t quant_max);

// Per tensor (scales[0], zero_points[0]): y = fake_quantize(x) with LsqForwardZeroPoint.
void LsqPerTensorForward(const float* x, size_t n, const LsqParams& params, float* y,
                         pthreadpool_t pool);
// dx[n], *dscale and *dzero_point (overwritten), from x and dy (see the formulas above).
void LsqPerTensorBackward(const float* x, const float* dy, size_t n, const LsqParams& params,
                          float* dx, float* dscale, float* dzero_point, pthreadpool_t pool);

// Per channel: x viewed as `dims` ([outer, channels, inner]: OIHW weights along axis 0 are
// {1, O, I*kh*kw}; NHWC activations {N*H*W, C, 1}), channel c using scales[c], zero_points[c].
void LsqPerChannelForward(const float* x, const kernels::ChannelDims& dims, const LsqParams& params,
                          float* y, pthreadpool_t pool);
// dx[dims.size()], dscales[channels], dzero_points[channels] (overwritten).
void LsqPerChannelBackward(const float* x, const float* dy, const kernels::ChannelDims& dims,
                           const LsqParams& params, float* dx, float* dscales, float* dzero_points,
                           pthreadpool_t pool);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_FAKE_QUANT_GRAD_H_
