// Double-precision reference implementations (oracles) of the kernels in kernels/fp32/.
//
// Plain loops written from each op's definition on unpacked data (OIHW conv weights, NHWC
// activations), accumulated in double, sharing nothing with the kernels (no packing, no
// indirection, no tiles). Besides each result, the GEMM/conv references return the magnitude the
// error bound scales with, sum_k |a_k * b_k| + |bias| + |residual|, so that tests can state a
// rigorous float32 tolerance (see Fp32SumTolerance).
#ifndef QLAB_KERNELS_FP32_FP32_REF_H_
#define QLAB_KERNELS_FP32_FP32_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace qlab::kernels {

// Fp32SumTolerance: the largest error a float32 evaluation of a sum of `terms` rounded
// operations can have, for a sum whose terms have absolute values summing to `magnitude`.
// Recursive summation (with or without FMA) of n products satisfies
//   |fl(sum) - sum| <= gamma_n * sum |a_k b_k|,   gamma_n = n u / (1 - n u),  u = 2^-24
// (Higham, Accuracy and Stability of Numerical Algorithms, (3.5)); a non-fused multiply adds one
// rounding per term, covered by counting 2 roundings per term. The bias, the residual and the
// ReLU add at most 2 more. A wrong index or a missed tap changes an output by a whole term, orders
// of magnitude above this bound for the K <= 4608 the tests use (gamma <= 5.5e-4 there).
inline double Fp32SumTolerance(size_t terms, double magnitude) {
  const double u = std::ldexp(1.0, -24);
  const double n = 2.0 * static_cast<double>(terms) + 2.0;
  return n * u / (1.0 - n * u) * magnitude + std::numeric_limits<float>::denorm_min();
}

// Fp32GemmRef: out[m][n] = act(sum_k a[m][k] * b[k][n] + bias[n] + residual[m][n]) in double;
// magnitude[m][n] = sum_k |a b| + |bias| + |residual|. bias/residual may be null. Outputs have
// row stride n (dense).
inline void Fp32GemmRef(const float* a, size_t m, size_t k, size_t lda, const float* b, size_t n,
                        size_t ldb, const float* bias, const float* residual, size_t ldr,
                        bool relu, double* out, double* magnitude) {
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      double sum = 0.0, mag = 0.0;
      for (size_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(a[i * lda + p]) * b[p * ldb + j];
        sum += t;
        mag += std::fabs(t);
      }
      if (bias != nullptr) {
        sum += bias[j];
        mag += std::fabs(bias[j]);
      }
      if (residual != nullptr) {
        sum += residual[i * ldr + j];
        mag += std::fabs(residual[i * ldr + j]);
      }
      out[i * n + j] = relu ? std::max(sum, 0.0) : sum;
      magnitude[i * n + j] = mag;
    }
  }
}

// Fp32Conv2dNhwcRef: direct convolution, NHWC input [batch][in_h][in_w][in_c], OIHW weight
// [out_c][in_c][kh][kw], zero padding; out/magnitude NHWC [batch][out_h][out_w][out_c]; the
// residual (nullable) has the output's layout.
inline void Fp32Conv2dNhwcRef(const float* input, size_t batch, size_t in_h, size_t in_w,
                              size_t in_c, const float* weight, size_t out_c, size_t kernel_h,
                              size_t kernel_w, size_t stride_h, size_t stride_w, size_t pad_h,
                              size_t pad_w, size_t dilation_h, size_t dilation_w, size_t out_h,
                              size_t out_w, const float* bias, const float* residual, bool relu,
                              double* out, double* magnitude) {
  for (size_t b = 0; b < batch; ++b) {
    for (size_t oh = 0; oh < out_h; ++oh) {
      for (size_t ow = 0; ow < out_w; ++ow) {
        const size_t pixel = (b * out_h + oh) * out_w + ow;
        for (size_t o = 0; o < out_c; ++o) {
          double sum = 0.0, mag = 0.0;
          for (size_t kh = 0; kh < kernel_h; ++kh) {
            const int64_t ih = static_cast<int64_t>(oh * stride_h + kh * dilation_h) -
                               static_cast<int64_t>(pad_h);
            if (ih < 0 || ih >= static_cast<int64_t>(in_h)) continue;
            for (size_t kw = 0; kw < kernel_w; ++kw) {
              const int64_t iw = static_cast<int64_t>(ow * stride_w + kw * dilation_w) -
                                 static_cast<int64_t>(pad_w);
              if (iw < 0 || iw >= static_cast<int64_t>(in_w)) continue;
              const float* x = input + ((b * in_h + ih) * in_w + iw) * in_c;
              for (size_t i = 0; i < in_c; ++i) {
                const double t =
                    static_cast<double>(x[i]) * weight[((o * in_c + i) * kernel_h + kh) * kernel_w + kw];
                sum += t;
                mag += std::fabs(t);
              }
            }
          }
          if (bias != nullptr) {
            sum += bias[o];
            mag += std::fabs(bias[o]);
          }
          if (residual != nullptr) {
            sum += residual[pixel * out_c + o];
            mag += std::fabs(residual[pixel * out_c + o]);
          }
          out[pixel * out_c + o] = relu ? std::max(sum, 0.0) : sum;
          magnitude[pixel * out_c + o] = mag;
        }
      }
    }
  }
}


// Fp32Pool2dNhwcRef: max (exact: a max is a float of the input) or average pooling in double,
// with PyTorch's windows (see fp32_pool.h); magnitude = sum |x| / divisor for averages (0 for
// max). Output [batch][out_h][out_w][channels].
inline void Fp32Pool2dNhwcRef(bool max, const float* input, size_t batch, size_t in_h, size_t in_w,
                              size_t channels, size_t kernel_h, size_t kernel_w, size_t stride_h,
                              size_t stride_w, size_t pad_h, size_t pad_w, size_t out_h,
                              size_t out_w, bool count_include_pad, double* out,
                              double* magnitude) {
  for (size_t b = 0; b < batch; ++b) {
    for (size_t oh = 0; oh < out_h; ++oh) {
      const int64_t h0 = static_cast<int64_t>(oh * stride_h) - static_cast<int64_t>(pad_h);
      const int64_t h_pad_end = std::min<int64_t>(h0 + kernel_h, in_h + pad_h);
      for (size_t ow = 0; ow < out_w; ++ow) {
        const int64_t w0 = static_cast<int64_t>(ow * stride_w) - static_cast<int64_t>(pad_w);
        const int64_t w_pad_end = std::min<int64_t>(w0 + kernel_w, in_w + pad_w);
        for (size_t c = 0; c < channels; ++c) {
          double best = -std::numeric_limits<double>::infinity(), sum = 0.0, mag = 0.0;
          int64_t count = 0;
          for (int64_t h = std::max<int64_t>(h0, 0); h < std::min<int64_t>(h_pad_end, in_h); ++h) {
            for (int64_t w = std::max<int64_t>(w0, 0); w < std::min<int64_t>(w_pad_end, in_w);
                 ++w) {
              const double v = input[((b * in_h + h) * in_w + w) * channels + c];
              best = std::max(best, v);
              sum += v;
              mag += std::fabs(v);
              ++count;
            }
          }
          const size_t o = ((b * out_h + oh) * out_w + ow) * channels + c;
          if (max) {
            out[o] = best;
            magnitude[o] = 0.0;
            continue;
          }
          const double divisor = count_include_pad
                                     ? static_cast<double>((h_pad_end - h0) * (w_pad_end - w0))
                                     : static_cast<double>(count);
          out[o] = count == 0 ? 0.0 : sum / divisor;
          magnitude[o] = count == 0 ? 0.0 : mag / divisor;
        }
      }
    }
  }
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_FP32_REF_H_
