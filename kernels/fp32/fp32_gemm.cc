// Highway implementations of kernels/fp32/fp32_gemm.h (packing, the dispatched GEMM and
// convolution), compiled once per target.
//
// Layout follows Highway's skeleton: this file includes itself through foreach_target.h, the SIMD
// code lives in qlab::kernels::HWY_NAMESPACE, and the public functions at the bottom (compiled
// once, under HWY_ONCE) dispatch with HWY_DYNAMIC_DISPATCH.
//
// Every target runs the same driver and the same tile template; only the tile's size differs:
//   AVX3, AVX3_DL  14 rows x 2 panels (32 columns) = 28 zmm accumulators: per K step 2 vector
//                  loads of packed weights, 14 broadcasts of activations, 28 FMAs. Two FMA ports
//                  with 4-cycle latency need >= 8 independent accumulators; 28 leaves 4 registers
//                  for the weights and broadcasts. 14 also divides the ResNet pixel counts
//                  56*56, 28*28 and 14*14.
//   others         4 rows x 1 panel (16 columns as 16 / lanes vectors).
//   SCALAR         1 row x 1 panel.
// A tile accumulates over all of K in registers, then applies the epilogue (bias, residual,
// ReLU) and stores. Its activations come as `segments` pointers per row, each to `segment_k`
// contiguous floats (see fp32_gemm.h: one per filter tap for convolutions, one per row for GEMM).

#include "kernels/fp32/fp32_gemm.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/fp32/conv_geometry.h"
#include "kernels/threadpool/pool_flags.h"

// Plain helpers shared by every target: defined once, outside the per-target namespaces.
#ifndef QLAB_KERNELS_FP32_FP32_GEMM_CC_SHARED_
#define QLAB_KERNELS_FP32_FP32_GEMM_CC_SHARED_
namespace qlab::kernels::fp32_gemm_internal {

// The indirect GEMM as the driver sees it. Exactly one of `a` (plain GEMM: row m at a + m * lda)
// and `conv` (row m is output pixel m of the convolution, taps read from `input`) is set.
struct Problem {
  const float* a = nullptr;
  size_t lda = 0;
  const Fp32ConvGeometry* conv = nullptr;
  const float* input = nullptr;
  const float* zeros = nullptr;  // >= segment_k zeros: what a tap in the padding reads
  size_t m = 0;
  size_t segments = 1;   // pointers per row (filter taps, or filter rows when padded_w != 0)
  size_t segment_k = 0;  // floats per pointer; K = segments * segment_k
  bool gather = false;   // copy each tile's rows into one contiguous buffer first (short taps)
  // Row-run convolutions (few input channels, dilation_w 1): `input` is a copy of the NHWC input
  // padded with zero columns to padded_w pixels per row (pad_w on the left), so that the
  // kernel_w taps of one filter row are one contiguous run of kernel_w * in_channels floats.
  size_t padded_w = 0;
  const float* packed = nullptr;
  const float* bias = nullptr;
  size_t k = 0;
  size_t n = 0;
  size_t panels = 0;
  const float* residual = nullptr;
  size_t ldr = 0;
  bool relu = false;
  float* c = nullptr;
  size_t ldc = 0;
};

// Fully unrolls the tiles' constant-trip loops over rows and vectors, so that their accumulator
// arrays live in registers (without it GCC keeps them on the stack).
#define QLAB_FP32_UNROLL _Pragma("GCC unroll 32")

// Packed weights of a column chunk that one task keeps hot: a chunk's panels (K x 16 floats
// each) are read by every row tile of the task range, so they should stay in L2 (1-2 MiB per
// core on the machines qlab targets) next to the activations streaming past.
inline constexpr size_t kChunkBytes = 512 * 1024;

// Row-run mode (Problem::padded_w): output pixel m's K = (kh, kw, ic) as kernel_h runs, one per
// filter row, each kernel_w * in_channels floats of the column-padded input (or of `zeros` where
// the filter row falls in the top/bottom padding). Same K order as the tap-by-tap walk.
inline void RowRunPointers(const Problem& p, size_t m, const float** runs) {
  const Fp32ConvGeometry& g = *p.conv;
  const size_t ow = m % g.out_w;
  const size_t oh = (m / g.out_w) % g.out_h;
  const size_t image = m / (g.out_w * g.out_h);
  const float* first_column =
      p.input + (image * g.in_h * p.padded_w + ow * g.stride_w) * g.in_channels;
  for (size_t kh = 0; kh < g.kernel_h; ++kh) {
    // Signed: a filter row in the top padding has a negative input row.
    const int64_t ih =
        static_cast<int64_t>(oh * g.stride_h + kh * g.dilation_h) - static_cast<int64_t>(g.pad_h);
    runs[kh] = ih >= 0 && ih < static_cast<int64_t>(g.in_h)
                   ? first_column + static_cast<size_t>(ih) * p.padded_w * g.in_channels
                   : p.zeros;
  }
}

// Row pointers of rows m0 .. m0 + rows - 1: ptrs[r * segments + s] is row r's segment s.
inline void RowPointers(const Problem& p, size_t m0, size_t rows, const float** ptrs) {
  if (p.conv == nullptr) {
    for (size_t r = 0; r < rows; ++r) ptrs[r] = p.a + (m0 + r) * p.lda;
    return;
  }
  if (p.padded_w != 0) {
    for (size_t r = 0; r < rows; ++r) RowRunPointers(p, m0 + r, ptrs + r * p.segments);
    return;
  }
  for (size_t r = 0; r < rows; ++r) {
    ConvTapPointers(*p.conv, p.input, p.zeros, m0 + r, ptrs + r * p.segments);
  }
}

}  // namespace qlab::kernels::fp32_gemm_internal
#endif  // QLAB_KERNELS_FP32_FP32_GEMM_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fp32/fp32_gemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using fp32_gemm_internal::kChunkBytes;
using fp32_gemm_internal::Problem;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr size_t kRowsPerTile = 14;
constexpr size_t kPanelsPerTile = 2;
#elif HWY_TARGET == HWY_SCALAR
constexpr size_t kRowsPerTile = 1;
constexpr size_t kPanelsPerTile = 1;
#else
constexpr size_t kRowsPerTile = 4;
constexpr size_t kPanelsPerTile = 1;
#endif

// Bias, residual, ReLU and store of one vector of row `row` at tile column `col` (relative to the
// tile's first column `col0`). `valid` columns of the vector exist in the output (the last panel
// may be partial): a partial vector goes through a stack buffer so that nothing past N is read
// or written.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void StoreOutput(D d, const Problem& p, size_t row, size_t col, V acc) {
  const size_t lanes = hn::Lanes(d);
  const size_t valid = col < p.n ? std::min(lanes, p.n - col) : 0;
  if (valid == 0) return;
  V x = hn::Add(acc, hn::LoadU(d, p.bias + col));  // bias is padded to whole panels
  float* out = p.c + row * p.ldc + col;
  const float* res = p.residual == nullptr ? nullptr : p.residual + row * p.ldr + col;
  if (valid == lanes) {
    if (res != nullptr) x = hn::Add(x, hn::LoadU(d, res));
    if (p.relu) x = hn::Max(x, hn::Zero(d));
    hn::StoreU(x, d, out);
    return;
  }
  HWY_ALIGN float buffer[hn::MaxLanes(d)] = {};
  if (res != nullptr) {
    std::memcpy(buffer, res, valid * sizeof(float));
    x = hn::Add(x, hn::Load(d, buffer));
  }
  if (p.relu) x = hn::Max(x, hn::Zero(d));
  hn::Store(x, d, buffer);
  std::memcpy(out, buffer, valid * sizeof(float));
}

// One tile: kRows rows (from m0) x kPanels panels (from panel p0), all of K. `ptrs` holds
// kRows * segments row pointers (see RowPointers).
template <size_t kRows, size_t kPanels>
HWY_NOINLINE void Tile(const Problem& p, const float* const* ptrs, size_t segments,
                       size_t segment_k, size_t m0, size_t p0) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  constexpr size_t kLanes = hn::MaxLanes(d);
  static_assert(kFp32PanelColumns % kLanes == 0, "a panel must be whole vectors");
  constexpr size_t kVecsPerPanel = kFp32PanelColumns / kLanes;
  constexpr size_t kVecs = kPanels * kVecsPerPanel;

  V acc[kRows][kVecs];
  QLAB_FP32_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_FP32_UNROLL
    for (size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::Zero(d);
  }
  const float* panels[kPanels];
  QLAB_FP32_UNROLL
  for (size_t q = 0; q < kPanels; ++q) panels[q] = p.packed + (p0 + q) * p.k * kFp32PanelColumns;

  for (size_t s = 0; s < segments; ++s) {
    const float* a[kRows];
    QLAB_FP32_UNROLL
    for (size_t r = 0; r < kRows; ++r) a[r] = ptrs[r * segments + s];
    const size_t k0 = s * segment_k;
    for (size_t kk = 0; kk < segment_k; ++kk) {
      V b[kVecs];
      QLAB_FP32_UNROLL
      for (size_t q = 0; q < kPanels; ++q) {
        const float* row = panels[q] + (k0 + kk) * kFp32PanelColumns;
        QLAB_FP32_UNROLL
        for (size_t v = 0; v < kVecsPerPanel; ++v) {
          b[q * kVecsPerPanel + v] = hn::Load(d, row + v * kLanes);
        }
      }
      QLAB_FP32_UNROLL
      for (size_t r = 0; r < kRows; ++r) {
        const V av = hn::Set(d, a[r][kk]);
        QLAB_FP32_UNROLL
        for (size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::MulAdd(av, b[v], acc[r][v]);
      }
    }
  }

  const size_t col0 = p0 * kFp32PanelColumns;
  QLAB_FP32_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_FP32_UNROLL
    for (size_t v = 0; v < kVecs; ++v) StoreOutput(d, p, m0 + r, col0 + v * kLanes, acc[r][v]);
  }
}

// Tile<kRows> for a runtime row count 1 <= rows <= kRows (the last row tile of M).
template <size_t kRows, size_t kPanels>
HWY_INLINE void TileUpToRows(size_t rows, const Problem& p, const float* const* ptrs,
                             size_t segments, size_t segment_k, size_t m0, size_t p0) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      return TileUpToRows<kRows - 1, kPanels>(rows, p, ptrs, segments, segment_k, m0, p0);
    }
  }
  Tile<kRows, kPanels>(p, ptrs, segments, segment_k, m0, p0);
}

// Work split: tasks are (column chunk, row tile) pairs, chunk-major, so that pthreadpool's
// contiguous per-thread ranges give each thread its own chunks (its own weights in its own L2)
// whenever there is more than one chunk.
struct Fp32GemmSchedule {
  const Problem* problem;
  size_t row_tiles;
  size_t chunk_panels;
};

size_t ChunkPanels(const Problem& p) {
  const size_t panel_bytes = p.k * kFp32PanelColumns * sizeof(float);
  size_t chunk = std::max<size_t>(1, kChunkBytes / panel_bytes);
  chunk = std::max(kPanelsPerTile, chunk / kPanelsPerTile * kPanelsPerTile);
  return std::min(chunk, p.panels);
}

// dst[0, n) = src[0, n) (non-overlapping) and dst[0, n) = 0: whole vectors, then the tail,
// touching nothing past either end. On AVX-512 the tail is one masked load/store (masked-off
// lanes never fault); other targets finish with single floats. GCC's auto-vectorized loop, with
// its alias checks, was several times slower on the stem's 21-float runs.
HWY_INLINE void CopyFloats(const float* HWY_RESTRICT src, size_t n, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::LoadU(d, src + i), d, dst + i);
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  if (i < n) {
    const auto mask = hn::FirstN(d, n - i);
    hn::BlendedStore(hn::MaskedLoad(mask, d, src + i), mask, d, dst + i);
  }
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}

HWY_INLINE void ZeroFloats(size_t n, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Zero(d), d, dst + i);
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  if (i < n) hn::BlendedStore(hn::Zero(d), hn::FirstN(d, n - i), d, dst + i);
#else
  for (; i < n; ++i) dst[i] = 0.0f;
#endif
}

// Writes the im2col rows of output pixels m0 .. m0 + rows - 1 (K floats each, order (kh, kw, ic))
// into dst. Compiled per target so that the copy loops vectorize: for each filter row the taps
// inside the input are one contiguous run of the NHWC row (dilation 1), the rest zeros.
void GatherRows(const Problem& p, size_t m0, size_t rows, float* dst) {
  const Fp32ConvGeometry& g = *p.conv;
  const size_t c = g.in_channels;
  const size_t row_len = g.kernel_w * c;
  for (size_t r = 0; r < rows; ++r) {
    const size_t m = m0 + r;
    const size_t ow = m % g.out_w;
    const size_t oh = (m / g.out_w) % g.out_h;
    const float* image = p.input + m / (g.out_w * g.out_h) * g.in_h * g.in_w * c;
    for (size_t kh = 0; kh < g.kernel_h; ++kh) {
      float* out = dst + r * p.k + kh * row_len;
      const int64_t ih =
          static_cast<int64_t>(oh * g.stride_h + kh * g.dilation_h) - static_cast<int64_t>(g.pad_h);
      if (ih < 0 || ih >= static_cast<int64_t>(g.in_h)) {
        ZeroFloats(row_len, out);
        continue;
      }
      const float* in_row = image + static_cast<size_t>(ih) * g.in_w * c;
      const int64_t iw0 = static_cast<int64_t>(ow * g.stride_w) - static_cast<int64_t>(g.pad_w);
      if (g.dilation_w == 1) {
        // Taps [kw_begin, kw_end) fall inside the row: one contiguous run of the NHWC input.
        const int64_t kernel_w = static_cast<int64_t>(g.kernel_w);
        const int64_t kw_begin = std::min(kernel_w, std::max<int64_t>(0, -iw0));
        const int64_t kw_end =
            std::max(kw_begin, std::min(kernel_w, static_cast<int64_t>(g.in_w) - iw0));
        ZeroFloats(static_cast<size_t>(kw_begin) * c, out);
        if (kw_end > kw_begin) {
          CopyFloats(in_row + static_cast<size_t>(iw0 + kw_begin) * c,
                     static_cast<size_t>(kw_end - kw_begin) * c, out + kw_begin * c);
        }
        ZeroFloats(static_cast<size_t>(kernel_w - kw_end) * c, out + kw_end * c);
        continue;
      }
      for (size_t kw = 0; kw < g.kernel_w; ++kw) {
        const int64_t iw = iw0 + static_cast<int64_t>(kw * g.dilation_w);
        if (iw >= 0 && iw < static_cast<int64_t>(g.in_w)) {
          CopyFloats(in_row + static_cast<size_t>(iw) * c, c, out + kw * c);
        } else {
          ZeroFloats(c, out + kw * c);
        }
      }
    }
  }
}

void Fp32GemmTask(void* context, size_t task) {
  const Fp32GemmSchedule& s = *static_cast<const Fp32GemmSchedule*>(context);
  const Problem& p = *s.problem;
  const size_t chunk = task / s.row_tiles;
  const size_t m0 = (task % s.row_tiles) * kRowsPerTile;
  const size_t rows = std::min(kRowsPerTile, p.m - m0);

  // Per-thread scratch, reused across calls: row pointers and, for gathered convolutions, the
  // tile's im2col rows.
  thread_local std::vector<const float*> ptrs;
  thread_local std::vector<float> gathered;
  ptrs.resize(kRowsPerTile * p.segments);
  size_t segments = p.segments, segment_k = p.segment_k;
  if (p.gather) {
    gathered.resize(kRowsPerTile * p.k);
    GatherRows(p, m0, rows, gathered.data());
    for (size_t r = 0; r < rows; ++r) ptrs[r] = gathered.data() + r * p.k;
    segments = 1;
    segment_k = p.k;
  } else {
    fp32_gemm_internal::RowPointers(p, m0, rows, ptrs.data());
  }

  const size_t begin = chunk * s.chunk_panels;
  const size_t end = std::min(p.panels, begin + s.chunk_panels);
  for (size_t p0 = begin; p0 < end;) {
    if (end - p0 >= kPanelsPerTile) {
      TileUpToRows<kRowsPerTile, kPanelsPerTile>(rows, p, ptrs.data(), segments, segment_k, m0, p0);
      p0 += kPanelsPerTile;
    } else {
      TileUpToRows<kRowsPerTile, 1>(rows, p, ptrs.data(), segments, segment_k, m0, p0);
      p0 += 1;
    }
  }
}

void Fp32GemmDriver(const Problem& p, pthreadpool_t pool) {
  if (p.m == 0) return;
  Fp32GemmSchedule schedule{&p, (p.m + kRowsPerTile - 1) / kRowsPerTile, ChunkPanels(p)};
  const size_t chunks = (p.panels + schedule.chunk_panels - 1) / schedule.chunk_panels;
  // Never PTHREADPOOL_FLAG_DISABLE_DENORMALS: denormal handling must be the same on every thread
  // (bit-identical results). The wait policy is the pool owner's (pool_flags.h).
  pthreadpool_parallelize_1d(pool, &Fp32GemmTask, &schedule, chunks * schedule.row_tiles,
                             PoolFlags(pool));
}

// For benchmark labels and tests: the target this dispatch table resolved to.
const char* Fp32GemmChosenTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(Fp32GemmDriver);
HWY_EXPORT(Fp32GemmChosenTarget);

namespace {

// An empty packed layout for K x N, bias filled in (zeros where absent or padding).
Fp32PackedWeights EmptyPacked(size_t k, size_t n, const float* bias) {
  Fp32PackedWeights w;
  w.k = k;
  w.n = n;
  w.panels = (n + kFp32PanelColumns - 1) / kFp32PanelColumns;
  w.data = AlignedFloats(w.panels * k * kFp32PanelColumns);
  w.bias = AlignedFloats(w.panels * kFp32PanelColumns);
  if (bias != nullptr) std::memcpy(w.bias.data(), bias, n * sizeof(float));
  return w;
}

float& PackedAt(Fp32PackedWeights& w, size_t kk, size_t col) {
  const size_t panel = col / kFp32PanelColumns;
  return w.data[(panel * w.k + kk) * kFp32PanelColumns + col % kFp32PanelColumns];
}

fp32_gemm_internal::Problem WithWeights(const Fp32PackedWeights& w, const Fp32Epilogue& e, float* c,
                                        size_t ldc) {
  fp32_gemm_internal::Problem p;
  p.packed = w.data.data();
  p.bias = w.bias.data();
  p.k = w.k;
  p.n = w.n;
  p.panels = w.panels;
  p.residual = e.residual;
  p.ldr = e.residual_stride;
  p.relu = e.relu;
  p.c = c;
  p.ldc = ldc;
  return p;
}

// Input channels below which a convolution does not walk tap by tap: a tap of fewer floats than
// one vector of broadcasts leaves the inner loop mostly overhead (the RGB stem has 3). Such
// convolutions read whole filter rows from a column-padded copy of the input (row-run mode), or,
// with dilation_w > 1 where a filter row is not contiguous, gather each tile's im2col rows.
constexpr size_t kShortTapChannels = 16;

// The column-padded input of row-run mode: input rows of padded_w pixels, pad_w zero pixels on
// the left, the input's in_w pixels, zeros to the right. Per calling thread, reused across calls
// (every element is rewritten each call).
struct PaddedInputRows {
  const Fp32ConvGeometry* conv;
  const float* input;
  size_t padded_w;
  float* padded;
};

void PadInputRow(void* context, size_t row) {
  const PaddedInputRows& r = *static_cast<const PaddedInputRows*>(context);
  const Fp32ConvGeometry& g = *r.conv;
  const size_t c = g.in_channels;
  PadRowColumns(r.input + row * g.in_w * c, g.in_w, c, g.pad_w, r.padded_w,
                r.padded + row * r.padded_w * c);
}

}  // namespace

Fp32PackedWeights PackFp32Weights(const float* b, size_t k, size_t n, size_t ldb,
                                  const float* bias) {
  Fp32PackedWeights w = EmptyPacked(k, n, bias);
  for (size_t kk = 0; kk < k; ++kk) {
    for (size_t col = 0; col < n; ++col) PackedAt(w, kk, col) = b[kk * ldb + col];
  }
  return w;
}

Fp32PackedWeights PackFp32WeightsTransposed(const float* weight, size_t n, size_t k, size_t ldw,
                                            const float* bias) {
  Fp32PackedWeights w = EmptyPacked(k, n, bias);
  for (size_t col = 0; col < n; ++col) {
    for (size_t kk = 0; kk < k; ++kk) PackedAt(w, kk, col) = weight[col * ldw + kk];
  }
  return w;
}

Fp32PackedWeights PackFp32ConvWeights(const float* oihw, size_t out_channels, size_t in_channels,
                                      size_t kernel_h, size_t kernel_w, const float* bias) {
  const size_t k = kernel_h * kernel_w * in_channels;
  Fp32PackedWeights w = EmptyPacked(k, out_channels, bias);
  for (size_t o = 0; o < out_channels; ++o) {
    for (size_t i = 0; i < in_channels; ++i) {
      for (size_t kh = 0; kh < kernel_h; ++kh) {
        for (size_t kw = 0; kw < kernel_w; ++kw) {
          const size_t kk = (kh * kernel_w + kw) * in_channels + i;
          PackedAt(w, kk, o) = oihw[((o * in_channels + i) * kernel_h + kh) * kernel_w + kw];
        }
      }
    }
  }
  return w;
}

void Fp32Gemm(const float* a, size_t m, size_t lda, const Fp32PackedWeights& b,
              const Fp32Epilogue& epilogue, float* c, size_t ldc, pthreadpool_t pool) {
  fp32_gemm_internal::Problem p = WithWeights(b, epilogue, c, ldc);
  p.a = a;
  p.lda = lda;
  p.m = m;
  p.segment_k = b.k;
  HWY_DYNAMIC_DISPATCH(Fp32GemmDriver)(p, pool);
}

void Fp32Conv2dNhwc(const Fp32ConvGeometry& g, const float* input, const Fp32PackedWeights& weights,
                    const Fp32Epilogue& epilogue, float* output, pthreadpool_t pool) {
  const size_t m = g.batch * g.out_h * g.out_w;
  const bool pointwise = g.kernel_h == 1 && g.kernel_w == 1 && g.stride_h == 1 && g.stride_w == 1 &&
                         g.pad_h == 0 && g.pad_w == 0;
  if (pointwise) {  // the NHWC input is already the GEMM's A
    Fp32Gemm(input, m, g.in_channels, weights, epilogue, output, weights.n, pool);
    return;
  }
  fp32_gemm_internal::Problem p = WithWeights(weights, epilogue, output, weights.n);
  p.conv = &g;
  p.input = input;
  p.m = m;
  p.segments = g.kernel_h * g.kernel_w;
  p.segment_k = g.in_channels;
  if (g.in_channels < kShortTapChannels && g.dilation_w == 1) {
    // Row-run mode. The last window's rightmost tap is pixel (out_w - 1) * stride_w + kernel_w - 1
    // of the padded row; past the input's right edge there is only zero padding.
    thread_local std::vector<float> padded;
    PaddedInputRows rows{&g, input,
                         std::max(g.pad_w + g.in_w, (g.out_w - 1) * g.stride_w + g.kernel_w),
                         nullptr};
    padded.resize(g.batch * g.in_h * rows.padded_w * g.in_channels);
    rows.padded = padded.data();
    pthreadpool_parallelize_1d(pool, &PadInputRow, &rows, g.batch * g.in_h, PoolFlags(pool));
    p.input = padded.data();
    p.padded_w = rows.padded_w;
    p.segments = g.kernel_h;
    p.segment_k = g.kernel_w * g.in_channels;
  } else {
    p.gather = g.in_channels < kShortTapChannels;
  }
  const AlignedFloats zeros(p.segment_k);  // what a tap (or filter row) in the padding reads
  p.zeros = zeros.data();
  HWY_DYNAMIC_DISPATCH(Fp32GemmDriver)(p, pool);
}

const char* Fp32GemmTargetName() { return HWY_DYNAMIC_DISPATCH(Fp32GemmChosenTarget)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
