// Batch norm forward/backward kernels (see batch_norm_grad.h): per-channel double sums over
// fixed row blocks, then one float pass over the elements, both split over the same blocks.

#include "train/ops/batch_norm_grad.h"

#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/fp32/fp32_eltwise.h"
#include "train/ops/parallel_blocks.h"
#include "train/ops/vector_clones.h"

namespace qlab::train {
namespace {

using internal::BlockedSums;
using internal::kRowsPerBlock;
using internal::ParallelForRowBlocks;

// The element loops, over rows [begin, end) of `channels` values (vector_clones.h).
QLAB_VECTOR_CLONES void AddRows(size_t begin, size_t end, size_t channels,
                                const float* __restrict x, double* __restrict acc) {
  for (size_t r = begin; r < end; ++r) {
    const float* row = x + r * channels;
    for (size_t c = 0; c < channels; ++c) acc[c] += row[c];
  }
}

QLAB_VECTOR_CLONES void AddSquaredDeviationRows(size_t begin, size_t end, size_t channels,
                                                const float* __restrict x,
                                                const double* __restrict mean,
                                                double* __restrict acc) {
  for (size_t r = begin; r < end; ++r) {
    const float* row = x + r * channels;
    for (size_t c = 0; c < channels; ++c) {
      const double d = static_cast<double>(row[c]) - mean[c];
      acc[c] += d * d;
    }
  }
}

QLAB_VECTOR_CLONES void NormalizeRows(size_t begin, size_t end, size_t channels,
                                      const float* __restrict x, const float* __restrict mean,
                                      const float* __restrict scale, const float* __restrict beta,
                                      float* __restrict y) {
  for (size_t r = begin; r < end; ++r) {
    const float* x_row = x + r * channels;
    float* y_row = y + r * channels;
    for (size_t c = 0; c < channels; ++c) y_row[c] = (x_row[c] - mean[c]) * scale[c] + beta[c];
  }
}

QLAB_VECTOR_CLONES void AddGradientRows(size_t begin, size_t end, size_t channels,
                                        const float* __restrict x, const float* __restrict dy,
                                        const double* __restrict center, double* __restrict sum_dy,
                                        double* __restrict sum_dy_xc) {
  for (size_t r = begin; r < end; ++r) {
    const float* x_row = x + r * channels;
    const float* dy_row = dy + r * channels;
    for (size_t c = 0; c < channels; ++c) {
      const double g = dy_row[c];
      sum_dy[c] += g;
      sum_dy_xc[c] += g * (static_cast<double>(x_row[c]) - center[c]);
    }
  }
}

QLAB_VECTOR_CLONES void DxRows(size_t begin, size_t end, size_t channels, const float* __restrict x,
                               const float* __restrict dy, const float* __restrict mean,
                               const float* __restrict k, const float* __restrict mean_dy,
                               const float* __restrict slope, float* __restrict dx) {
  for (size_t r = begin; r < end; ++r) {
    const float* x_row = x + r * channels;
    const float* dy_row = dy + r * channels;
    float* dx_row = dx + r * channels;
    for (size_t c = 0; c < channels; ++c) {
      dx_row[c] = BatchNormDx(x_row[c], dy_row[c], mean[c], k[c], mean_dy[c], slope[c]);
    }
  }
}

// sum[c] = sum over rows of x[row][c].
void ChannelSums(size_t rows, size_t channels, const float* x, double* sum, pthreadpool_t pool) {
  BlockedSums(
      rows, kRowsPerBlock, channels,
      [&](size_t begin, size_t end, double* acc) { AddRows(begin, end, channels, x, acc); }, sum,
      pool);
}

// sums[c] = sum dy, sums[channels + c] = sum dy * (x - center[c]), over rows, in double.
void GradientSums(size_t rows, size_t channels, const float* x, const double* center,
                  const float* dy, double* sums, pthreadpool_t pool) {
  BlockedSums(
      rows, kRowsPerBlock, 2 * channels,
      [&](size_t begin, size_t end, double* acc) {
        AddGradientRows(begin, end, channels, x, dy, center, acc, acc + channels);
      },
      sums, pool);
}

}  // namespace

void BatchNormTrainForward(size_t rows, size_t channels, const float* x, const float* gamma,
                           const float* beta, float eps, float* y, float* saved_mean,
                           float* saved_inv_std, float* batch_var_unbiased, pthreadpool_t pool) {
  std::vector<double> sums(channels);
  ChannelSums(rows, channels, x, sums.data(), pool);
  BatchNormTrainForwardWithSums(rows, channels, x, sums.data(), gamma, beta, eps, y, saved_mean,
                                saved_inv_std, batch_var_unbiased, pool);
}

void BatchNormTrainForwardWithSums(size_t rows, size_t channels, const float* x, const double* sums,
                                   const float* gamma, const float* beta, float eps, float* y,
                                   float* saved_mean, float* saved_inv_std,
                                   float* batch_var_unbiased, pthreadpool_t pool) {
  std::vector<double> mean(sums, sums + channels), squares(channels);
  for (double& m : mean) m /= static_cast<double>(rows);
  // Second pass over deviations from the mean: sum(x^2) - rows * mean^2 would cancel
  // catastrophically for activations whose mean is large next to their spread.
  BlockedSums(
      rows, kRowsPerBlock, channels,
      [&](size_t begin, size_t end, double* acc) {
        AddSquaredDeviationRows(begin, end, channels, x, mean.data(), acc);
      },
      squares.data(), pool);
  std::vector<float> scale(channels);
  for (size_t c = 0; c < channels; ++c) {
    const double var = squares[c] / static_cast<double>(rows);
    const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(eps));
    saved_mean[c] = static_cast<float>(mean[c]);
    saved_inv_std[c] = static_cast<float>(inv_std);
    batch_var_unbiased[c] =
        static_cast<float>(rows > 1 ? squares[c] / static_cast<double>(rows - 1) : var);
    scale[c] = static_cast<float>(gamma[c] * inv_std);
  }
  ParallelForRowBlocks(
      rows, kRowsPerBlock,
      [&](size_t begin, size_t end) {
        NormalizeRows(begin, end, channels, x, saved_mean, scale.data(), beta, y);
      },
      pool);
}

void BatchNormUpdateRunningStats(size_t channels, float momentum, const float* batch_mean,
                                 const float* batch_var_unbiased, float* running_mean,
                                 float* running_var) {
  const double keep = 1.0 - static_cast<double>(momentum);
  for (size_t c = 0; c < channels; ++c) {
    running_mean[c] = static_cast<float>(keep * running_mean[c] + momentum * batch_mean[c]);
    running_var[c] = static_cast<float>(keep * running_var[c] + momentum * batch_var_unbiased[c]);
  }
}

void BatchNormDxCoefficients::Compute(size_t rows, size_t channels, const float* x,
                                      const float* gamma, const float* saved_mean,
                                      const float* saved_inv_std, const float* dy, float* dgamma,
                                      float* dbeta, pthreadpool_t pool) {
  std::vector<double> center(saved_mean, saved_mean + channels);
  std::vector<double> sums(2 * channels);
  GradientSums(rows, channels, x, center.data(), dy, sums.data(), pool);
  // The per-channel coefficients in double, each rounded once to float for the element pass.
  k.resize(channels);
  mean_dy.resize(channels);
  slope.resize(channels);
  const double n = static_cast<double>(rows);
  for (size_t c = 0; c < channels; ++c) {
    const double inv_std = saved_inv_std[c];
    const double sum_dy = sums[c];
    const double sum_dy_xhat = sums[channels + c] * inv_std;
    dbeta[c] = static_cast<float>(sum_dy);
    dgamma[c] = static_cast<float>(sum_dy_xhat);
    k[c] = static_cast<float>(gamma[c] * inv_std);
    mean_dy[c] = static_cast<float>(sum_dy / n);
    slope[c] = static_cast<float>(sum_dy_xhat * inv_std / n);
  }
}

void BatchNormTrainBackward(size_t rows, size_t channels, const float* x, const float* gamma,
                            const float* saved_mean, const float* saved_inv_std, const float* dy,
                            float* dx, float* dgamma, float* dbeta, pthreadpool_t pool) {
  BatchNormDxCoefficients coefficients;
  coefficients.Compute(rows, channels, x, gamma, saved_mean, saved_inv_std, dy, dgamma, dbeta,
                       pool);
  ParallelForRowBlocks(
      rows, kRowsPerBlock,
      [&](size_t begin, size_t end) {
        DxRows(begin, end, channels, x, dy, saved_mean, coefficients.k.data(),
               coefficients.mean_dy.data(), coefficients.slope.data(), dx);
      },
      pool);
}

namespace {

// Eval-mode coefficients as quant/graph's interpreter, the FP32 engine and FoldBatchNorm compute
// them: inv_std = 1 / sqrt(var + eps) and alpha = gamma * inv_std in double, alpha and
// shift = beta - mean * alpha each rounded once to float.
void EvalCoefficients(size_t channels, const float* gamma, const float* beta,
                      const float* running_mean, const float* running_var, float eps,
                      double* inv_std, float* alpha, float* shift) {
  for (size_t c = 0; c < channels; ++c) {
    inv_std[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    const double a = gamma[c] * inv_std[c];
    alpha[c] = static_cast<float>(a);
    if (shift != nullptr) shift[c] = static_cast<float>(beta[c] - running_mean[c] * a);
  }
}

}  // namespace

void BatchNormEvalForward(size_t rows, size_t channels, const float* x, const float* gamma,
                          const float* beta, const float* running_mean, const float* running_var,
                          float eps, float* y, pthreadpool_t pool) {
  std::vector<double> inv_std(channels);
  std::vector<float> a(channels), b(channels);
  EvalCoefficients(channels, gamma, beta, running_mean, running_var, eps, inv_std.data(), a.data(),
                   b.data());
  kernels::Fp32ChannelAffine(x, rows, channels, a.data(), b.data(), /*relu=*/false, y, pool);
}

void BatchNormEvalBackward(size_t rows, size_t channels, const float* x, const float* gamma,
                           const float* running_mean, const float* running_var, float eps,
                           const float* dy, float* dx, float* dgamma, float* dbeta,
                           pthreadpool_t pool) {
  std::vector<double> inv_std(channels);
  std::vector<float> a(channels);
  EvalCoefficients(channels, gamma, /*beta=*/nullptr, running_mean, running_var, eps,
                   inv_std.data(), a.data(), /*b=*/nullptr);
  std::vector<double> center(running_mean, running_mean + channels);
  std::vector<double> sums(2 * channels);
  GradientSums(rows, channels, x, center.data(), dy, sums.data(), pool);
  for (size_t c = 0; c < channels; ++c) {
    dbeta[c] = static_cast<float>(sums[c]);
    dgamma[c] = static_cast<float>(sums[channels + c] * inv_std[c]);
  }
  ParallelForRowBlocks(
      rows, kRowsPerBlock,
      [&](size_t begin, size_t end) {
        for (size_t r = begin; r < end; ++r) {
          const float* dy_row = dy + r * channels;
          float* dx_row = dx + r * channels;
          for (size_t c = 0; c < channels; ++c) dx_row[c] = dy_row[c] * a[c];
        }
      },
      pool);
}

}  // namespace qlab::train
