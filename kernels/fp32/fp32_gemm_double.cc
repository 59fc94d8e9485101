// Highway implementation of kernels/fp32/fp32_gemm_double.h, compiled once per target (Highway's
// skeleton: this file re-includes itself through foreach_target.h; the public functions at the
// bottom dispatch with HWY_DYNAMIC_DISPATCH).
//
// The activations are converted to double once per call (an NHWC input or A, both far smaller
// than the work), so that the inner loop broadcasts a double straight from memory instead of
// converting each one. A tile is kRows output rows x one 16-column panel of the packed weights:
// per K step the panel's 16 floats are loaded and widened to 16 / lanes double vectors, and each
// row's activation is broadcast and multiplied-added into its accumulators. Products of widened
// floats are exact in double, so MulAdd and Mul-then-Add round identically and every target
// (FMA or not) produces the same bits. Threads split the rows into tiles.

#include "kernels/fp32/fp32_gemm_double.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/fp32/conv_geometry.h"
#include "kernels/threadpool/pool_flags.h"

#ifndef QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_CC_SHARED_
#define QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_CC_SHARED_
namespace qlab::kernels::fp32_gemm_double_internal {

// One call as every target sees it. Row m of the GEMM reads `taps` segments of `tap_k` doubles:
// for a plain GEMM one segment at a + m * lda; for a convolution, output pixel m's filter taps
// in (kh, kw) order, each the input pixel's channel vector or `zeros` in the padding.
struct Problem {
  const double* a = nullptr;  // GEMM: A in double, row stride lda
  size_t lda = 0;
  const Fp32ConvGeometry* conv = nullptr;
  const double* input = nullptr;  // convolution: the NHWC input in double
  const double* zeros = nullptr;  // tap_k zeros
  size_t m = 0;
  size_t taps = 1;
  size_t tap_k = 0;
  const Fp32PackedWeights* weights = nullptr;
  const float* residual = nullptr;
  size_t ldr = 0;
  bool relu = false;
  float* c = nullptr;
  size_t ldc = 0;
};

// Segment pointers of row m: out[t] for t < taps.
inline void RowSegments(const Problem& p, size_t m, const double** out) {
  if (p.conv == nullptr) {
    out[0] = p.a + m * p.lda;
    return;
  }
  ConvTapPointers(*p.conv, p.input, p.zeros, m, out);
}

}  // namespace qlab::kernels::fp32_gemm_double_internal
#endif  // QLAB_KERNELS_FP32_FP32_GEMM_DOUBLE_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fp32/fp32_gemm_double.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using fp32_gemm_double_internal::Problem;

using DD = hn::ScalableTag<double>;
using DF = hn::Rebind<float, DD>;  // as many floats as DD has doubles
using VD = hn::Vec<DD>;
// Double vectors per 16-column panel; rows per tile chosen so that the accumulators
// (kRows x kVectors) and one panel's widened weights fit the register file: 8 x 2 of 32 zmm on
// AVX-512, 2 x 4 of 16 ymm on AVX2, 1 x 8 of 16 xmm on SSE4, 1 x 16 on SCALAR.
constexpr size_t kVectors = kFp32PanelColumns / hn::MaxLanes(DD());
constexpr size_t kRows = HWY_MAX_BYTES >= 64 ? 8 : HWY_MAX_BYTES >= 32 ? 2 : 1;

#define QLAB_FP32_DOUBLE_UNROLL _Pragma("GCC unroll 16")

// Rows m0 .. m0 + rows - 1 (rows <= kRows) against panel `panel`; seg[r * taps + t] is row r's
// segment t (rows beyond `rows` point at zeros and are not stored).
void DoubleTile(const Problem& p, const double* const* seg, size_t m0, size_t rows, size_t panel) {
  const DD dd;
  const DF df;
  constexpr size_t kLanes = hn::MaxLanes(DD());
  const Fp32PackedWeights& w = *p.weights;
  const float* b = w.data.data() + panel * w.k * kFp32PanelColumns;
  VD acc[kRows][kVectors];
  QLAB_FP32_DOUBLE_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_FP32_DOUBLE_UNROLL
    for (size_t v = 0; v < kVectors; ++v) acc[r][v] = hn::Zero(dd);
  }
  for (size_t t = 0; t < p.taps; ++t) {
    const double* row[kRows];
    QLAB_FP32_DOUBLE_UNROLL
    for (size_t r = 0; r < kRows; ++r) row[r] = seg[r * p.taps + t];
    for (size_t i = 0; i < p.tap_k; ++i, b += kFp32PanelColumns) {
      VD weight[kVectors];
      QLAB_FP32_DOUBLE_UNROLL
      for (size_t v = 0; v < kVectors; ++v) {
        weight[v] = hn::PromoteTo(dd, hn::Load(df, b + v * kLanes));
      }
      QLAB_FP32_DOUBLE_UNROLL
      for (size_t r = 0; r < kRows; ++r) {
        const VD x = hn::Set(dd, row[r][i]);
        QLAB_FP32_DOUBLE_UNROLL
        for (size_t v = 0; v < kVectors; ++v) acc[r][v] = hn::MulAdd(x, weight[v], acc[r][v]);
      }
    }
  }
  // Epilogue in float, in Fp32Gemm's order: round the sum, + bias, + residual, ReLU.
  const size_t col0 = panel * kFp32PanelColumns;
  const size_t cols = std::min(kFp32PanelColumns, w.n - col0);
  HWY_ALIGN float sums[kFp32PanelColumns];
  for (size_t r = 0; r < rows; ++r) {
    QLAB_FP32_DOUBLE_UNROLL
    for (size_t v = 0; v < kVectors; ++v) hn::Store(hn::DemoteTo(df, acc[r][v]), df, sums + v * kLanes);
    const size_t m = m0 + r;
    float* out = p.c + m * p.ldc + col0;
    const float* residual = p.residual == nullptr ? nullptr : p.residual + m * p.ldr + col0;
    for (size_t j = 0; j < cols; ++j) {
      float y = sums[j] + w.bias[col0 + j];
      if (residual != nullptr) y += residual[j];  // read before the (possibly aliasing) store
      out[j] = p.relu ? std::max(y, 0.0f) : y;
    }
  }
}

struct Schedule {
  const Problem* problem;
  size_t row_tiles;
};

void DoubleTask(void* context, size_t task) {
  const Schedule& s = *static_cast<const Schedule*>(context);
  const Problem& p = *s.problem;
  const size_t m0 = task * kRows;
  const size_t rows = std::min(kRows, p.m - m0);
  std::vector<const double*> seg(kRows * p.taps, p.zeros);
  for (size_t r = 0; r < rows; ++r) fp32_gemm_double_internal::RowSegments(p, m0 + r, &seg[r * p.taps]);
  for (size_t panel = 0; panel < p.weights->panels; ++panel) {
    DoubleTile(p, seg.data(), m0, rows, panel);
  }
}

void Fp32GemmDoubleDriver(const Problem& p, pthreadpool_t pool) {
  if (p.m == 0) return;
  Schedule schedule{&p, (p.m + kRows - 1) / kRows};
  pthreadpool_parallelize_1d(pool, &DoubleTask, &schedule, schedule.row_tiles, PoolFlags(pool));
}

const char* Fp32GemmDoubleChosenTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(Fp32GemmDoubleDriver);
HWY_EXPORT(Fp32GemmDoubleChosenTarget);

namespace {

fp32_gemm_double_internal::Problem WithWeights(const Fp32PackedWeights& w, const Fp32Epilogue& e,
                                               float* c, size_t ldc) {
  fp32_gemm_double_internal::Problem p;
  p.weights = &w;
  p.residual = e.residual;
  p.ldr = e.residual_stride;
  p.relu = e.relu;
  p.c = c;
  p.ldc = ldc;
  return p;
}

}  // namespace

void Fp32GemmDoubleAccumulation(const float* a, size_t m, size_t lda, const Fp32PackedWeights& b,
                                const Fp32Epilogue& epilogue, float* c, size_t ldc,
                                pthreadpool_t pool) {
  if (m == 0) return;
  std::vector<double> a_double(m * b.k);
  for (size_t i = 0; i < m; ++i) std::copy(a + i * lda, a + i * lda + b.k, &a_double[i * b.k]);
  const std::vector<double> zeros(b.k, 0.0);
  fp32_gemm_double_internal::Problem p = WithWeights(b, epilogue, c, ldc);
  p.a = a_double.data();
  p.lda = b.k;
  p.zeros = zeros.data();
  p.m = m;
  p.tap_k = b.k;
  HWY_DYNAMIC_DISPATCH(Fp32GemmDoubleDriver)(p, pool);
}

void Fp32Conv2dNhwcDoubleAccumulation(const Fp32ConvGeometry& g, const float* input,
                                      const Fp32PackedWeights& weights,
                                      const Fp32Epilogue& epilogue, float* output,
                                      pthreadpool_t pool) {
  const size_t m = g.batch * g.out_h * g.out_w;
  if (m == 0) return;
  const std::vector<double> input_double(input,
                                         input + g.batch * g.in_h * g.in_w * g.in_channels);
  const std::vector<double> zeros(g.in_channels, 0.0);
  fp32_gemm_double_internal::Problem p = WithWeights(weights, epilogue, output, weights.n);
  p.conv = &g;
  p.input = input_double.data();
  p.zeros = zeros.data();
  p.m = m;
  p.taps = g.kernel_h * g.kernel_w;
  p.tap_k = g.in_channels;
  HWY_DYNAMIC_DISPATCH(Fp32GemmDoubleDriver)(p, pool);
}

const char* Fp32GemmDoubleTargetName() {
  return HWY_DYNAMIC_DISPATCH(Fp32GemmDoubleChosenTarget)();
}

}  // namespace qlab::kernels
#endif  // HWY_ONCE
