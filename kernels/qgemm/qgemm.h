// Integer GEMM kernels: the inner product of every quantized linear and (im2col'ed or implicit)
// convolution layer in qlab's int8 engine.
//
// This is the kernel layer (in XNNPACK's terms, microkernels plus their packing): raw pointers,
// no validation, no Highway types. Callers validate once; the kernels assume what each comment
// states. Each entry point dispatches at run time to the best Highway target the CPU supports:
// AVX3_DL runs an AVX-512 VNNI micro-kernel (vpdpbusd: u8 x s8 -> s32 on groups of 4 bytes of
// K), every other target a portable Highway path (PromoteTo to int16 +
// ReorderWidenMulAccumulate), and SCALAR plain loops. On AVX3_DL CPUs with AMX-INT8 (detected at
// run time, amx_support.h), GEMMs with M >= 16 and K >= 64 run AMX tiles instead (TDPBUSD, 32 x 32
// output blocks; qgemm_amx-inl.h), with the same output stage. The scalar oracle all of them must
// match bit for bit lives in qgemm_ref.h.
//
// Arithmetic. With activations A[M x K] (zero point a_zp) and weights B[K x N] (symmetric, zero
// point 0), the int32 output is
//   C[m][n] = sum_k (A[m][k] - a_zp) * B[k][n] = sum_k A[m][k] * B[k][n] - a_zp * colsum(B)[n].
// The kernels compute the first sum on the raw 8-bit activations and subtract a_zp * colsum once
// per output, with colsum precomputed at packing time: activations are never widened or shifted
// by their zero point in the hot loop.
//
// Signed activations (s8 x s8) take the same u8 x s8 path: the kernel flips the sign bit of each
// activation byte (a + 128, now in [0, 255]) and uses the effective zero point a_zp + 128, since
// (a - a_zp) = ((a + 128) - (a_zp + 128)). The correction folds into the same colsum term.
//
// Range: every term |A - a_zp| * |B| <= 255 * 128, so for K <= 65536 the exact result and every
// partial sum the kernels form fit in int32 (65536 * 255 * 128 < 2^31); vpdpbusd's non-saturating
// form is used, so there is no saturation anywhere and no tolerance in the tests.
#ifndef QLAB_KERNELS_QGEMM_QGEMM_H_
#define QLAB_KERNELS_QGEMM_QGEMM_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/qgemm/output_stage.h"

namespace qlab::kernels {

// Columns per packed panel: one 512-bit vector of int32 accumulators. The layout is the same for
// every target (packing happens once, before the dispatch target is known); narrower targets cover
// a panel with several vectors.
inline constexpr size_t kQGemmPanelColumns = 16;
// K is consumed in groups of 4 bytes (vpdpbusd's dot-product width).
inline constexpr size_t kQGemmKGroup = 4;

// PackedWeights: int8 weights B[K x N] rearranged once for the micro-kernels.
//
// Layout: N is split into panels of kQGemmPanelColumns columns (the last one zero-padded), K into
// groups of 4 (the last one zero-padded). Within a panel, groups follow each other; within a
// group, the 4 consecutive K values of column 0, then of column 1, ..., i.e.
//   data[((panel * k_groups + g) * 16 + c) * 4 + j] = B[4 * g + j][16 * panel + c]
// so one group of one panel is 64 contiguous bytes: exactly the vpdpbusd operand that, with 4
// broadcast activation bytes, adds 4 products into each of 16 int32 column accumulators.
// Padding is zero, so it contributes nothing whatever the activations hold.
//
// Example: K = 5, N = 3 gives k_groups = 2, panels = 1, data.size() = 2 * 64, and
// column_sums.size() = 16 (entries 3..15 are 0).
struct PackedWeights {
  size_t k = 0;          // logical K
  size_t n = 0;          // logical N
  size_t k_groups = 0;   // ceil(k / 4)
  size_t panels = 0;     // ceil(n / 16)
  std::vector<int8_t> data;          // panels * k_groups * 64 bytes
  std::vector<int32_t> column_sums;  // panels * 16: sum_k B[k][n], 0 in the padding
};

// PackWeights: B is row-major K x N with row stride ldb >= n (elements). Scalar; run once per
// layer, so its speed does not matter. Precondition: 1 <= k <= 65536, n >= 1.
PackedWeights PackWeights(const int8_t* b, size_t k, size_t n, size_t ldb);

// PackWeightsStrided: the same for B[k][n] at b[k * k_stride + n * n_stride], e.g. weights stored
// output-channel-major (OHWI convolution filters, [out, in] linear weights) with k_stride = 1 and
// n_stride = K. Same preconditions.
PackedWeights PackWeightsStrided(const int8_t* b, size_t k, size_t n, size_t k_stride,
                                 size_t n_stride);

// QGemmU8S8S32: C[M x N] (int32, row stride ldc >= N) = (A - a_zero_point) * B for uint8
// activations A[M x K] (row stride lda >= K) and packed int8 weights.
// Preconditions: 0 <= a_zero_point <= 255; b built by PackWeights (K <= 65536); A, C do not
// overlap. Reads exactly the M x K activations (no over-read past a row's K bytes) and writes
// exactly the M x N outputs. m == 0 is a no-op.
void QGemmU8S8S32(const uint8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc);

// QGemmS8S8S32: the same for int8 activations; -128 <= a_zero_point <= 127. Runs the u8 x s8
// kernels on a + 128 with zero point a_zero_point + 128 (see above).
void QGemmS8S8S32(const int8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc);

// QGemmU8S8_OutputStage / QGemmS8S8_OutputStage: the same GEMMs with the output stage of
// output_stage.h fused into the store of each tile: C (row stride ldc, in elements of
// stage.type) receives stage(C_int32). The stage's preconditions apply (output_stage.h).
void QGemmU8S8_OutputStage(const uint8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                           const PackedWeights& b, const QOutputStage& stage, void* c,
                           size_t ldc);
void QGemmS8S8_OutputStage(const int8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                           const PackedWeights& b, const QOutputStage& stage, void* c,
                           size_t ldc);

// QIGemmU8S8_OutputStage: indirect (implicit) GEMM, the convolution form. Row m of A is the
// concatenation of `taps` segments of tap_k = K / taps bytes, segment t at
// indirection[m * taps + t] (for a convolution: the input pixel under kernel tap t, or a row of
// zero-point bytes where the tap falls into the padding). Only the output columns of panels
// [panel_begin, panel_end) are computed (a thread's share); C points at element (0, 0).
// Preconditions: K % taps == 0 and, if taps > 1, tap_k % 4 == 0 (segments hold whole K groups);
// panel_begin <= panel_end <= b.panels; 0 <= a_zero_point <= 255.
void QIGemmU8S8_OutputStage(const uint8_t* const* indirection, size_t m, size_t taps,
                            int32_t a_zero_point, const PackedWeights& b, size_t panel_begin,
                            size_t panel_end, const QOutputStage& stage, void* c, size_t ldc);

// Name of the Highway target these kernels dispatch to on this CPU (e.g. "AVX3_DL", which means
// the VNNI micro-kernel runs).
const char* QGemmKernelsTargetName();

// Whether the GEMMs run the AMX-INT8 tile path (amx_support.h) for shapes where it pays
// (M >= 16 rows and K >= 64); the others, and every call when this is false, run the target's
// micro-kernels. True only on the AVX3_DL target of a CPU with AMX, unless AMX is switched off
// (QLAB_DISABLE_AMX=1 or SetAmxEnabledForTesting(false)).
bool QGemmUsesAmx();

// For labels: QGemmKernelsTargetName(), or "AVX3_DL+AMX" when QGemmUsesAmx().
const char* QGemmKernelsName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QGEMM_QGEMM_H_
