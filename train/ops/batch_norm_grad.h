// Batch normalization for training: the forward pass in training mode (batch statistics), the
// running-statistics update, the backward pass, and the eval-mode pass (running statistics, used
// once BN statistics are frozen) with its backward, on NHWC activations (`rows` = batch*H*W
// pixels of `channels` channels, channels innermost) or [batch][features] (rows = batch).
//
// Kernel layer of qlab's training engine (//train): raw pointers, no validation (the layer above
// checks shapes once); rows >= 1; every output is overwritten and must not overlap an input (the
// element loops are compiled with __restrict, vector_clones.h). Semantics are PyTorch's
// (torch.nn.functional.batch_norm, tested against PyTorch 1.13 in batch_norm_grad_torch_test):
//   training  mean = sum(x) / rows, var = sum((x - mean)^2) / rows (biased),
//             inv_std = 1 / sqrt(var + eps), y = (x - mean) * inv_std * gamma + beta;
//   running   running = (1 - momentum) * running + momentum * batch, where the batch variance is
//             the unbiased sum((x - mean)^2) / (rows - 1) (var itself when rows == 1);
//   eval      y = x * a + b, a = gamma * inv_std(running_var), b = beta - running_mean * a.
//
// Precision: per-channel sums are accumulated in double (two passes: the mean, then squared
// deviations from it, so no cancellation) and per-element work is float. Threads: `pool` may be
// null. Sums run over fixed blocks of rows added in block order (train/ops/parallel_blocks.h),
// so results are bit-identical for any number of threads.
#ifndef QLAB_TRAIN_OPS_BATCH_NORM_GRAD_H_
#define QLAB_TRAIN_OPS_BATCH_NORM_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>
#include <vector>

namespace qlab::train {

// Training-mode batch norm over `rows` pixels of `channels` channels (NHWC): per-channel batch
// mean and biased variance; y = (x - mean) * inv_std * gamma + beta, inv_std = 1/sqrt(var+eps).
// Writes saved_mean[c], saved_inv_std[c] (for backward) and batch_var_unbiased[c] (for the
// running-variance update, PyTorch uses the unbiased variance there; rows == 1 -> var itself).
void BatchNormTrainForward(size_t rows, size_t channels, const float* x, const float* gamma,
                           const float* beta, float eps, float* y, float* saved_mean,
                           float* saved_inv_std, float* batch_var_unbiased, pthreadpool_t pool);
// BatchNormTrainForward given sums[c] = the per-channel sums of x, added as BatchNormTrainForward
// adds them itself (internal::BlockedSums over kRowsPerBlock-row blocks, each block's rows in
// order, as float-to-double additions): then the results are the same bits. A producer that
// writes x can accumulate these in its own pass (ConvBnOutputForwardWithSums, conv_bn_grad.h)
// and save the batch norm a pass over its input.
void BatchNormTrainForwardWithSums(size_t rows, size_t channels, const float* x, const double* sums,
                                   const float* gamma, const float* beta, float eps, float* y,
                                   float* saved_mean, float* saved_inv_std,
                                   float* batch_var_unbiased, pthreadpool_t pool);

// running = (1 - momentum) * running + momentum * batch (PyTorch's convention), evaluated in
// double and rounded once to float, in place.
void BatchNormUpdateRunningStats(size_t channels, float momentum, const float* batch_mean,
                                 const float* batch_var_unbiased, float* running_mean,
                                 float* running_var);

// Gradients of BatchNormTrainForward given dy, with the mean and inv_std it saved:
//   dbeta = sum dy, dgamma = sum dy * xhat, xhat = (x - mean) * inv_std,
//   dx = gamma * inv_std * (dy - dbeta / rows - xhat * dgamma / rows).
void BatchNormTrainBackward(size_t rows, size_t channels, const float* x, const float* gamma,
                            const float* saved_mean, const float* saved_inv_std, const float* dy,
                            float* dx, float* dgamma, float* dbeta, pthreadpool_t pool);

// One element of BatchNormTrainBackward's dx: k * ((dy - mean_dy) - (x - mean) * slope), with
// the per-channel coefficients below.
inline float BatchNormDx(float x, float dy, float mean, float k, float mean_dy, float slope) {
  const float centered = x - mean;
  return k * ((dy - mean_dy) - centered * slope);
}

// BatchNormTrainBackward in two parts, for a consumer of dx that merges the element pass into
// its own (ConvBnBatchNormBackward, conv_bn_grad.h): Compute runs the sums (writing dgamma and
// dbeta) and fills the coefficients; then each element's dx is BatchNormDx(x, dy, saved_mean[c],
// k[c], mean_dy[c], slope[c]), as in BatchNormTrainBackward.
struct BatchNormDxCoefficients {
  std::vector<float> k, mean_dy, slope;

  void Compute(size_t rows, size_t channels, const float* x, const float* gamma,
               const float* saved_mean, const float* saved_inv_std, const float* dy, float* dgamma,
               float* dbeta, pthreadpool_t pool);
};

// Eval mode (running statistics, no batch stats; used after BN statistics are frozen): y = x *
// a + b with a = gamma * inv_std(running_var), b = beta - running_mean * a; backward gives dx,
// dgamma, dbeta (running stats are constants). a and b are computed in double and rounded once
// to float, and y = x * a + b unfused (kernels::Fp32ChannelAffine), exactly as quant/graph's
// interpreter and the FP32 engine evaluate an unfolded batch norm. (PyTorch's x86 build computes
// a in float and fuses b = fma(-mean, a, beta) and y = fma(x, a, b): its float32 y differs from
// this one in the last bit or two; batch_norm_grad_test compares with PyTorch in float64.)
void BatchNormEvalForward(size_t rows, size_t channels, const float* x, const float* gamma,
                          const float* beta, const float* running_mean, const float* running_var,
                          float eps, float* y, pthreadpool_t pool);
// dx = dy * a, dgamma = sum dy * (x - running_mean) * inv_std, dbeta = sum dy.
void BatchNormEvalBackward(size_t rows, size_t channels, const float* x, const float* gamma,
                           const float* running_mean, const float* running_var, float eps,
                           const float* dy, float* dx, float* dgamma, float* dbeta,
                           pthreadpool_t pool);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_BATCH_NORM_GRAD_H_
