// fp32 GEMM and NHWC convolution with double-precision accumulation: the arithmetic of the
// fake-quant (Q/DQ) reference that the int8 engine is checked against (issue 7).
//
// Fp32Gemm / Fp32Conv2dNhwc sum an output's K products in float, so their result carries a
// rounding error of up to ~K ulps that depends on the summation order. That is right for FP32
// baselines but wrong for a reference: when the int8 engine (exact int32 sums) and the fake-quant
// model disagree on one quantized output, the cause should be the engine, not the reference's
// own choice of order. Here every product of two floats is formed exactly in double (24 + 24
// significant bits fit in 53) and summed in double in increasing K order; the sum is rounded to
// float once, then the epilogue runs in float exactly as Fp32Gemm's does:
//   out = relu?(float(sum_k double(a_k) * double(b_k)) + bias [+ residual])
// The double sum's own error (<= K * 2^-53 relative to sum |a_k b_k|) is ~2^29 times smaller than
// float summation's, so the float result is the correctly rounded sum except in rare exact ties.
//
// Same packed weights (fp32_gemm.h's Fp32PackedWeights), same geometry, epilogue and aliasing
// rules as Fp32Gemm / Fp32Conv2dNhwc. Every Highway target computes the same double operations in
// the same order, so results are bit-identical across targets, thread counts and the scalar
// oracle Fp32GemmDoubleRef (fp32_ref.h). Raw pointers, no validation (the FP32 engine validates).
#ifndef QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_H_
#define QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_H_

#include <pthreadpool.h>

#include <cstddef>

#include "kernels/fp32/fp32_gemm.h"

namespace qlab::kernels {

// C[M x N] = epilogue(A[M x K] * B) as Fp32Gemm, accumulated in double. A row-major with row
// stride lda >= K; C row stride ldc >= N. m == 0 is a no-op.
void Fp32GemmDoubleAccumulation(const float* a, size_t m, size_t lda, const Fp32PackedWeights& b,
                                const Fp32Epilogue& epilogue, float* c, size_t ldc,
                                pthreadpool_t pool);

// The convolution of Fp32Conv2dNhwc (NHWC input, weights from PackFp32ConvWeights, K ordered
// (kh, kw, ic)), accumulated in double. The output must not alias the input.
void Fp32Conv2dNhwcDoubleAccumulation(const Fp32ConvGeometry& geometry, const float* input,
                                      const Fp32PackedWeights& weights,
                                      const Fp32Epilogue& epilogue, float* output,
                                      pthreadpool_t pool);

// Name of the Highway target these kernels dispatch to on this CPU.
const char* Fp32GemmDoubleTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_H_
