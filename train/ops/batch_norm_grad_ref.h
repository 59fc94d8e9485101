// Scalar reference (oracle) of train/ops/batch_norm_grad.h for tests, templated on the element
// type: instantiated with double it is the exact-arithmetic stand-in the float kernels are
// compared with, and its forward is what the finite-difference tests differentiate.
//
// Written from the definitions, sharing nothing with the kernels: plain loops, statistics in
// one sweep per quantity, and the backward pass by the textbook chain rule through xhat, var and
// mean (Ioffe & Szegedy 2015, Algorithm 1's gradients) rather than the kernel's folded formula.
#ifndef QLAB_TRAIN_OPS_BATCH_NORM_GRAD_REF_H_
#define QLAB_TRAIN_OPS_BATCH_NORM_GRAD_REF_H_

#include <cmath>
#include <cstddef>

namespace qlab::train {

template <typename T>
void BatchNormTrainForwardRef(size_t rows, size_t channels, const T* x, const T* gamma,
                              const T* beta, T eps, T* y, T* mean, T* inv_std, T* var_unbiased) {
  for (size_t c = 0; c < channels; ++c) {
    T sum = 0;
    for (size_t r = 0; r < rows; ++r) sum += x[r * channels + c];
    const T m = sum / static_cast<T>(rows);
    T squares = 0;
    for (size_t r = 0; r < rows; ++r) {
      const T d = x[r * channels + c] - m;
      squares += d * d;
    }
    const T var = squares / static_cast<T>(rows);
    const T s = T(1) / std::sqrt(var + eps);
    for (size_t r = 0; r < rows; ++r) {
      y[r * channels + c] = (x[r * channels + c] - m) * s * gamma[c] + beta[c];
    }
    mean[c] = m;
    inv_std[c] = s;
    var_unbiased[c] = rows > 1 ? squares / static_cast<T>(rows - 1) : var;
  }
}

template <typename T>
void BatchNormUpdateRunningStatsRef(size_t channels, T momentum, const T* batch_mean,
                                    const T* batch_var_unbiased, T* running_mean, T* running_var) {
  for (size_t c = 0; c < channels; ++c) {
    running_mean[c] = (1 - momentum) * running_mean[c] + momentum * batch_mean[c];
    running_var[c] = (1 - momentum) * running_var[c] + momentum * batch_var_unbiased[c];
  }
}

// Chain rule: dxhat = dy * gamma; dvar = sum dxhat * (x - mean) * (-1/2) * inv_std^3;
// dmean = -sum dxhat * inv_std + dvar * sum(-2 (x - mean)) / rows;
// dx = dxhat * inv_std + dvar * 2 (x - mean) / rows + dmean / rows.
template <typename T>
void BatchNormTrainBackwardRef(size_t rows, size_t channels, const T* x, const T* gamma,
                               const T* mean, const T* inv_std, const T* dy, T* dx, T* dgamma,
                               T* dbeta) {
  const T n = static_cast<T>(rows);
  for (size_t c = 0; c < channels; ++c) {
    const T s = inv_std[c];
    T dvar = 0, dmean = 0, sum_centered = 0, dg = 0, db = 0;
    for (size_t r = 0; r < rows; ++r) {
      const size_t i = r * channels + c;
      const T centered = x[i] - mean[c];
      const T dxhat = dy[i] * gamma[c];
      dvar += dxhat * centered * T(-0.5) * s * s * s;
      dmean -= dxhat * s;
      sum_centered += centered;
      dg += dy[i] * centered * s;
      db += dy[i];
    }
    dmean += dvar * T(-2) * sum_centered / n;
    for (size_t r = 0; r < rows; ++r) {
      const size_t i = r * channels + c;
      dx[i] = dy[i] * gamma[c] * s + dvar * T(2) * (x[i] - mean[c]) / n + dmean / n;
    }
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}

template <typename T>
void BatchNormEvalForwardRef(size_t rows, size_t channels, const T* x, const T* gamma,
                             const T* beta, const T* running_mean, const T* running_var, T eps,
                             T* y) {
  for (size_t c = 0; c < channels; ++c) {
    const T s = T(1) / std::sqrt(running_var[c] + eps);
    for (size_t r = 0; r < rows; ++r) {
      const size_t i = r * channels + c;
      y[i] = (x[i] - running_mean[c]) * s * gamma[c] + beta[c];
    }
  }
}

template <typename T>
void BatchNormEvalBackwardRef(size_t rows, size_t channels, const T* x, const T* gamma,
                              const T* running_mean, const T* running_var, T eps, const T* dy,
                              T* dx, T* dgamma, T* dbeta) {
  for (size_t c = 0; c < channels; ++c) {
    const T s = T(1) / std::sqrt(running_var[c] + eps);
    T dg = 0, db = 0;
    for (size_t r = 0; r < rows; ++r) {
      const size_t i = r * channels + c;
      dx[i] = dy[i] * gamma[c] * s;
      dg += dy[i] * (x[i] - running_mean[c]) * s;
      db += dy[i];
    }
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}

}  // namespace qlab::train

#endif  // QLAB_TRAIN_OPS_BATCH_NORM_GRAD_REF_H_
