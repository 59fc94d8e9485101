// The batch-norm scaling around a QAT convolution, forward and backward, as PyTorch's QAT ConvBn
// modules compute it (torch.nn.intrinsic.qat.ConvBn2d, `_forward_approximate`): the conv weight
// is scaled per output channel by s = gamma / sqrt(running_var + eps) before it is fake-quantized,
// and the conv output z (computed without bias) is divided back, y = z / s + bias; the batch norm
// that follows then normalizes y with batch statistics.
//
// Kernel layer of qlab's training engine (//train): raw pointers, no validation (the engine
// checks shapes once); every output is overwritten except dgamma, which is accumulated (the
// batch norm's own backward adds its part); outputs must not overlap inputs (the element loops
// are compiled with __restrict, vector_clones.h). Weights are [out_channels][per] (per =
// in_channels * kh * kw, any order); activations are NHWC rows of `channels` channels.
//
// These were serial loops on the training engine's calling thread, over all of a ResNet18's 11 M
// weights and every conv output, twice per step (forward and backward), while the pool's other
// thread waited. Threads: `pool` may be null. Element-wise results are the same float operations
// whatever the split; the per-channel sums run over fixed blocks added in block order
// (train/ops/parallel_blocks.h), so every result is bit-identical for any number of threads.
#ifndef QLAB_TRAIN_OPS_CONV_BN_GRAD_H_
#define QLAB_TRAIN_OPS_CONV_BN_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>
#include <cstdint>

namespace qlab::train {

// scale[o] = gamma[o] / sqrt(running_var[o] + eps) (float), scaled[o, i] = w[o, i] * scale[o].
void ConvBnScaleWeights(size_t out_channels, size_t per, const float* w, const float* gamma,
                        const float* running_var, float eps, float* scale, float* scaled,
                        pthreadpool_t pool);

// y[r, c] = z[r, c] / scale[c] (+ bias[c] when bias is not null), over `rows` rows.
void ConvBnOutputForward(size_t rows, size_t channels, const float* z, const float* scale,
                         const float* bias, float* y, pthreadpool_t pool);

// ConvBnOutputForward that also adds up y per channel in the same pass, y_sums[c] = sum over rows
// of y[r, c], exactly as BatchNormTrainForward adds its input: BatchNormTrainForwardWithSums(y,
// y_sums) then gives BatchNormTrainForward(y)'s bits without reading y for the sums.
void ConvBnOutputForwardWithSums(size_t rows, size_t channels, const float* z, const float* scale,
                                 const float* bias, float* y, double* y_sums, pthreadpool_t pool);

// Backward of ConvBnOutputForward given dy: dz = dy / scale (float), and the per-channel sums
//   dscale[c] = -sum_r dy * z / scale^2   and   dbias[c] = sum_r dy   (double).
void ConvBnOutputBackward(size_t rows, size_t channels, const float* dy, const float* z,
                          const float* scale, float* dz, double* dscale, double* dbias,
                          pthreadpool_t pool);

// The training-mode batch norm reading y (BatchNormTrainBackward, batch_norm_grad.h, given its
// output gradient dy_bn), then ConvBnOutputBackward on the dy that gives, with the two element
// passes merged into one: dy of y is never stored. Writes dgamma and dbeta of the batch norm
// (overwritten, as BatchNormTrainBackward) and dz, dscale, dbias as ConvBnOutputBackward, the
// same bits as the two calls.
void ConvBnBatchNormBackward(size_t rows, size_t channels, const float* y, const float* gamma,
                             const float* saved_mean, const float* saved_inv_std,
                             const float* dy_bn, const float* z, const float* scale, float* dz,
                             float* dgamma, float* dbeta, double* dscale, double* dbias,
                             pthreadpool_t pool);

// Backward of ConvBnScaleWeights given d(scaled): dw = dscaled * scale[o], and through scale's
// dependence on gamma, dgamma[o] += (sum_i dscaled[o, i] * w[o, i]) / sqrt(running_var[o] + eps)
// (the sum in double: four partial sums over i mod 4, then (s0 + s1) + (s2 + s3)).
// With ste_mask (not null), dscaled first goes through the weight fake quantizer's
// straight-through estimator (kept where ste_mask is non-zero, else 0: FakeQuantSteBackward,
// fake_quant_grad.h), in the same pass and with the same bits as the two calls.
void ConvBnWeightBackward(size_t out_channels, size_t per, const float* dscaled,
                          const uint8_t* ste_mask, const float* w, const float* scale,
                          const float* running_var, float eps, float* dw, float* dgamma,
                          pthreadpool_t pool);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_CONV_BN_GRAD_H_
