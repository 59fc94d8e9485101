// fp32 GEMM and NHWC convolution: the inner product of every float conv and linear layer that
// qlab's FP32 engine (engine/) runs, for FP32 baselines and, later, QAT training.
//
// Kernel layer (XNNPACK's microkernels plus packing): raw pointers, no validation, no Highway
// types; callers (engine/) validate once. Each entry point dispatches at run time to the best
// Highway target: AVX3 and AVX3_DL run a 14-row x 32-column AVX-512 FMA tile (28 zmm
// accumulators, weights loaded as two vectors per K step, activations broadcast), the other
// targets a portable Highway MulAdd tile (4 rows x 16 columns), SCALAR a one-row loop. The
// double-precision oracles live in fp32_ref.h.
//
// One driver serves GEMM and convolution. A convolution is a GEMM whose A rows are im2col rows;
// instead of materializing them, the driver hands the micro-kernel, for every output pixel, one
// pointer per filter tap (kh, kw) to the input pixel's channel vector (or to a zero vector where
// the tap falls in the padding): an indirect GEMM with K = taps x in_channels, consumed tap by
// tap. A 1x1 stride-1 unpadded convolution is the plain GEMM on the NHWC input (no copies at all);
// layers with fewer than 16 input channels (the RGB stem) take one pointer per filter row instead
// of per tap, into a copy of the input padded with zero columns (kernel_w * in_channels
// contiguous floats per filter row), because a 3-float tap is too short to amortize the loop;
// with dilation_w > 1 (no contiguous filter rows) they gather each tile's im2col rows.
//
// Summation order. Every output is acc = 0; acc = fma(a_k, b_k, acc) for k = 0 .. K-1 in
// increasing order (K ordered (kh, kw, ic) for convs); then acc + bias, then + residual, then
// ReLU. The order depends on nothing but K, so results are bit-identical across thread counts and
// tilings (threads split the output into tiles; each output is computed by exactly one thread).
// Targets differ only in rounding: AVX2/AVX3 fuse the multiply-add, SSE4 and SCALAR (no FMA
// instruction; -ffp-contract=off) round the product first. Both stay within fp32_ref.h's bound.
//
// Threads: `pool` may be null (the calling thread does everything); otherwise the output is cut
// into tasks of one row tile by a chunk of columns sized so the chunk's packed weights stay in L2,
// and pthreadpool distributes the tasks.
#ifndef QLAB_KERNELS_FP32_FP32_GEMM_H_
#define QLAB_KERNELS_FP32_FP32_GEMM_H_

#include <pthreadpool.h>

#include <cstddef>

#include "kernels/fp32/aligned_floats.h"
#include "kernels/fp32/conv_geometry.h"  // Fp32ConvGeometry

namespace qlab::kernels {

// Columns per packed panel: one 512-bit vector of floats. The layout is the same for every target
// (packing happens before dispatch); narrower targets cover a panel with several vectors.
inline constexpr size_t kFp32PanelColumns = 16;

// Fp32PackedWeights: B[K x N] (and the bias) rearranged once for the micro-kernels.
//
// Layout: N is split into panels of 16 columns (the last zero-padded); within panel p, K rows of
// 16 consecutive floats:
//   data[(p * k + kk) * 16 + c] = B[kk][16 * p + c]
// so one K step of one panel is one aligned 64-byte vector. bias[16 * p + c] likewise (zero
// padded; zero when the layer has no bias).
//
// Example: K = 5, N = 20 gives panels = 2, data.size() = 2 * 5 * 16, bias.size() = 32.
struct Fp32PackedWeights {
  size_t k = 0;
  size_t n = 0;
  size_t panels = 0;  // ceil(n / 16)
  AlignedFloats data;
  AlignedFloats bias;
};

// Packing (scalar, once per layer). `bias` may be null (zeros). Preconditions: k, n >= 1.
// B row-major K x N with row stride ldb >= n.
Fp32PackedWeights PackFp32Weights(const float* b, size_t k, size_t n, size_t ldb,
                                  const float* bias);
// B given transposed, as a linear layer stores it: weight[N = out][K = in], row stride ldw >= k.
Fp32PackedWeights PackFp32WeightsTransposed(const float* weight, size_t n, size_t k, size_t ldw,
                                            const float* bias);
// A convolution's OIHW weight [out_c][in_c][kh][kw] as B[K = (kh, kw, ic)][N = out_c], the K
// order in which the convolution walks an NHWC input (tap by tap, channels innermost).
Fp32PackedWeights PackFp32ConvWeights(const float* oihw, size_t out_channels, size_t in_channels,
                                      size_t kernel_h, size_t kernel_w, const float* bias);

// What happens to acc = A * B after the K loop: + bias (always, from the packed weights), then
// + residual[m][n] if `residual` is non-null (row stride residual_stride), then max(0, .) if
// relu. The residual is the fused skip connection of a ResNet block (add, then ReLU).
struct Fp32Epilogue {
  const float* residual = nullptr;
  size_t residual_stride = 0;
  bool relu = false;
};

// Fp32Gemm: C[M x N] = epilogue(A[M x K] * B) with A row-major (row stride lda >= K) and B packed.
// C has row stride ldc >= N; exactly the M x N outputs are written. C may alias the residual
// (same element, same stride: each output reads its residual before writing) but not A.
// m == 0 is a no-op.
void Fp32Gemm(const float* a, size_t m, size_t lda, const Fp32PackedWeights& b,
              const Fp32Epilogue& epilogue, float* c, size_t ldc, pthreadpool_t pool);

// Fp32Conv2dNhwc: output[batch][out_h][out_w][N] = epilogue(conv(input, weights)), with input
// NHWC [batch][in_h][in_w][in_channels] (contiguous), weights packed by PackFp32ConvWeights
// (K = kernel_h * kernel_w * in_channels), the output and residual NHWC contiguous with
// N = weights.n channels. The output must not alias the input; it may alias the residual.
void Fp32Conv2dNhwc(const Fp32ConvGeometry& geometry, const float* input,
                    const Fp32PackedWeights& weights, const Fp32Epilogue& epilogue,
                    float* output, pthreadpool_t pool);

// Name of the Highway target these kernels dispatch to on this CPU ("AVX3_DL", "AVX2", ...).
const char* Fp32GemmTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_FP32_GEMM_H_
