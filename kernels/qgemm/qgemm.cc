// Highway implementations of kernels/qgemm/qgemm.h (packing and the dispatched GEMM), compiled
// once per target.
//
// Layout follows Highway's skeleton: this file includes itself through foreach_target.h, the SIMD
// code lives in qlab::kernels::HWY_NAMESPACE, and the public functions at the bottom (compiled
// once, under HWY_ONCE) dispatch with HWY_DYNAMIC_DISPATCH.
//
// Every target shares one driver, GemmImpl: it walks the output in tiles of kRowsPerTile rows x
// kPanelsPerTile panels (16 columns each), and each tile accumulates over all of K in registers,
// then subtracts zero_point * column_sums and stores. Only the tile (micro-kernel) differs:
//   AVX3_DL  vpdpbusd on 512-bit vectors: one 64-byte load of a packed group per panel, one
//            4-byte activation broadcast per row, 8 rows x 2 panels = 16 zmm accumulators.
//   others   the portable Highway path: the 64 weight bytes of a group are promoted to int16, the
//            4 activation bytes are broadcast as an int16 pattern a0 a1 a2 a3 a0 a1 ..., and
//            ReorderWidenMulAccumulate (vpmaddwd on x86) adds pairs of products into int32
//            lanes: lane 2c holds column c's products of K offsets 0,1 and lane 2c+1 those of
//            offsets 2,3; the two are added once per output at the end.
//   SCALAR   plain loops (one-lane vectors have no pairs of lanes to widen-multiply into).
// Signed activations flip their sign bit as they are loaded (kFlipSign): see qgemm.h.
//
// Activation words: 4 consecutive bytes of a row of A read as one little-endian uint32 (byte j at
// bits 8j, as on every target Highway supports on this machine). The last, partial group of a row
// is read byte by byte into a zeroed word so that no byte past K is touched; the matching packed
// weights are zero, so the filler never contributes.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/qgemm/qgemm.h"

// Plain helpers shared by every target: defined once, outside the per-target namespaces.
#ifndef QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_
#define QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_
namespace qlab::kernels::qgemm_internal {

// Everything a GEMM call needs, with the zero point already made effective (a_zp + 128 for s8).
struct GemmArgs {
  const uint8_t* a;
  size_t m;
  size_t lda;
  int32_t zero_point;
  const int8_t* packed;
  const int32_t* column_sums;
  size_t k;
  size_t n;
  size_t k_groups;
  size_t panels;
  int32_t* c;
  size_t ldc;
};

// Fully unrolls the tiles' constant-trip loops over rows, panels and vectors, so that their
// accumulator arrays live in registers (without it GCC keeps them on the stack).
#define QLAB_UNROLL _Pragma("GCC unroll 16")

inline constexpr size_t kGroupBytes = kQGemmPanelColumns * kQGemmKGroup;  // 64
inline constexpr uint32_t kSignFlipWord = 0x80808080u;

// Group g of a row: 4 bytes of K, or fewer (zero-filled) for the last, partial group.
inline uint32_t LoadActivationWord(const uint8_t* row, size_t g, size_t k) {
  uint32_t word = 0;
  const size_t begin = g * kQGemmKGroup;
  if (begin + kQGemmKGroup <= k) {  // every group but a partial last one: a fixed 4-byte load
    std::memcpy(&word, row + begin, kQGemmKGroup);
    return word;
  }
  for (size_t j = 0; begin + j < k; ++j) word |= uint32_t{row[begin + j]} << (8 * j);
  return word;
}

template <bool kFlipSign>
inline uint32_t ActivationWord(const uint8_t* row, size_t g, size_t k) {
  const uint32_t word = LoadActivationWord(row, g, k);
  return kFlipSign ? word ^ kSignFlipWord : word;
}

// Columns of panel p that exist in the output (16 except in the last panel).
inline size_t PanelColumns(const GemmArgs& g, size_t p) {
  return std::min(kQGemmPanelColumns, g.n - p * kQGemmPanelColumns);
}

}  // namespace qlab::kernels::qgemm_internal
#endif  // QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/qgemm/qgemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

#if HWY_TARGET == HWY_AVX3_DL
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using qgemm_internal::ActivationWord;
using qgemm_internal::GemmArgs;
using qgemm_internal::kGroupBytes;
using qgemm_internal::PanelColumns;

#if HWY_TARGET == HWY_AVX3_DL
// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI micro-kernel. Highway 1.0.3's AVX3_DL target string lacks "avx512vnni", so the
// intrinsic needs this function-level target (see shared/docs/TOOLCHAIN.md).
constexpr size_t kRowsPerTile = 8;
constexpr size_t kPanelsPerTile = 2;

// One group of K for every row and panel of the tile: 2 loads of packed weights, kRows
// broadcasts, kRows * kPanels vpdpbusd. `word(r)` gives row r's 4 activation bytes.
template <size_t kRows, size_t kPanels, class Word>
__attribute__((target("avx512vnni"))) HWY_INLINE void VnniGroup(
    __m512i (&acc)[kRows][kPanels], const int8_t* const (&panels)[kPanels], size_t kg,
    const Word& word) {
  __m512i b[kPanels];
  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) b[p] = _mm512_loadu_si512(panels[p] + kg * kGroupBytes);
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    const __m512i a4 = word(r);
    // Non-saturating: acc += sum over the 4 bytes of u8(a) * s8(b), per int32 lane.
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], a4, b[p]);
  }
}

template <size_t kRows, size_t kPanels, bool kFlipSign>
__attribute__((target("avx512vnni"))) HWY_NOINLINE void Tile(const GemmArgs& g, size_t m0,
                                                               size_t p0) {
  __m512i acc[kRows][kPanels];
  const uint8_t* rows[kRows];
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    rows[r] = g.a + (m0 + r) * g.lda;
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) acc[r][p] = _mm512_setzero_si512();
  }
  const int8_t* panels[kPanels];
  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) panels[p] = g.packed + (p0 + p) * g.k_groups * kGroupBytes;

  // Whole groups: a 4-byte broadcast straight from memory (the sign flip, for s8, is one
  // vector XOR); then the partial last group, if any, through the zero-filling loader.
  const __m512i flip = _mm512_set1_epi32(static_cast<int32_t>(qgemm_internal::kSignFlipWord));
  const size_t full_groups = g.k / kQGemmKGroup;
  for (size_t kg = 0; kg < full_groups; ++kg) {
    VnniGroup<kRows, kPanels>(acc, panels, kg, [&](size_t r) {
      int32_t word;
      std::memcpy(&word, rows[r] + kg * kQGemmKGroup, sizeof(word));
      const __m512i a4 = _mm512_set1_epi32(word);
      return kFlipSign ? _mm512_xor_si512(a4, flip) : a4;
    });
  }
  if (full_groups < g.k_groups) {
    VnniGroup<kRows, kPanels>(acc, panels, full_groups, [&](size_t r) {
      return _mm512_set1_epi32(
          static_cast<int32_t>(ActivationWord<kFlipSign>(rows[r], full_groups, g.k)));
    });
  }

  const __m512i zero_point = _mm512_set1_epi32(g.zero_point);
  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) {
    const size_t column0 = (p0 + p) * kQGemmPanelColumns;
    const __m512i correction =
        _mm512_mullo_epi32(zero_point, _mm512_loadu_si512(g.column_sums + column0));
    const __mmask16 store_mask =
        static_cast<__mmask16>((uint32_t{1} << PanelColumns(g, p0 + p)) - 1);
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      _mm512_mask_storeu_epi32(g.c + (m0 + r) * g.ldc + column0, store_mask,
                               _mm512_sub_epi32(acc[r][p], correction));
    }
  }
}

#elif HWY_TARGET == HWY_SCALAR
// ---------------------------------------------------------------------------------------------
// SCALAR: plain loops over the packed layout, one output at a time.
constexpr size_t kRowsPerTile = 1;
constexpr size_t kPanelsPerTile = 1;

template <size_t kRows, size_t kPanels, bool kFlipSign>
HWY_NOINLINE void Tile(const GemmArgs& g, size_t m0, size_t p0) {
  static_assert(kRows == 1 && kPanels == 1, "SCALAR tiles are one row of one panel");
  const uint8_t* row = g.a + m0 * g.lda;
  const int8_t* panel = g.packed + p0 * g.k_groups * kGroupBytes;
  const size_t column0 = p0 * kQGemmPanelColumns;
  for (size_t c = 0; c < PanelColumns(g, p0); ++c) {
    int32_t sum = 0;
    for (size_t kg = 0; kg < g.k_groups; ++kg) {
      const uint32_t word = ActivationWord<kFlipSign>(row, kg, g.k);
      const int8_t* b = panel + kg * kGroupBytes + c * kQGemmKGroup;
      for (size_t j = 0; j < kQGemmKGroup; ++j) {
        sum += static_cast<int32_t>((word >> (8 * j)) & 0xFF) * b[j];
      }
    }
    g.c[m0 * g.ldc + column0 + c] = sum - g.zero_point * g.column_sums[column0 + c];
  }
}

#else
// ---------------------------------------------------------------------------------------------
// Portable Highway path (SSSE3/SSE4/AVX2/AVX3 and non-x86 targets).
constexpr size_t kRowsPerTile = 4;
constexpr size_t kPanelsPerTile = 1;

template <size_t kRows, size_t kPanels, bool kFlipSign>
HWY_NOINLINE void Tile(const GemmArgs& g, size_t m0, size_t p0) {
  const hn::ScalableTag<int16_t> d16;
  const hn::Repartition<int32_t, decltype(d16)> d32;
  const hn::Rebind<int8_t, decltype(d16)> d8;
  const hn::Repartition<uint64_t, decltype(d16)> d64;
  using V32 = hn::Vec<decltype(d32)>;
  using V16 = hn::Vec<decltype(d16)>;
  constexpr size_t kLanes16 = hn::MaxLanes(d16);
  static_assert(kGroupBytes % kLanes16 == 0, "a packed group must be whole int16 vectors");
  constexpr size_t kVecs = kPanels * kGroupBytes / kLanes16;  // int16 vectors per group row

  V32 sum0[kRows][kVecs];
  V32 sum1[kRows][kVecs];  // ReorderWidenMulAccumulate's second half (unused on x86)
  const uint8_t* rows[kRows];
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    rows[r] = g.a + (m0 + r) * g.lda;
    QLAB_UNROLL
    for (size_t v = 0; v < kVecs; ++v) sum0[r][v] = sum1[r][v] = hn::Zero(d32);
  }

  for (size_t kg = 0; kg < g.k_groups; ++kg) {
    V16 b[kVecs];
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) {
      const int8_t* group = g.packed + ((p0 + p) * g.k_groups + kg) * kGroupBytes;
      constexpr size_t kVecsPerPanel = kGroupBytes / kLanes16;
      QLAB_UNROLL
      for (size_t v = 0; v < kVecsPerPanel; ++v) {
        b[p * kVecsPerPanel + v] = hn::PromoteTo(d16, hn::LoadU(d8, group + v * kLanes16));
      }
    }
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      const uint64_t w = ActivationWord<kFlipSign>(rows[r], kg, g.k);
      // int16 lanes a0 a1 a2 a3 repeated, matching the packed K order within each column.
      const uint64_t pattern = (w & 0xFF) | ((w & 0xFF00) << 8) | ((w & 0xFF0000) << 16) |
                               ((w & 0xFF000000) << 24);
      const V16 a4 = hn::BitCast(d16, hn::Set(d64, pattern));
      QLAB_UNROLL
      for (size_t v = 0; v < kVecs; ++v) {
        sum0[r][v] = hn::ReorderWidenMulAccumulate(d32, a4, b[v], sum0[r][v], sum1[r][v]);
      }
    }
  }

  // Lane 2c + h of a panel's int32 lanes holds column c's products of K offsets 2h, 2h+1.
  HWY_ALIGN int32_t pairs[kPanels * 2 * kQGemmPanelColumns];
  constexpr size_t kLanes32 = hn::MaxLanes(d32);
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      hn::Store(hn::RearrangeToOddPlusEven(sum0[r][v], sum1[r][v]), d32, pairs + v * kLanes32);
    }
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) {
      const size_t column0 = (p0 + p) * kQGemmPanelColumns;
      const int32_t* panel_pairs = pairs + p * 2 * kQGemmPanelColumns;
      int32_t* out = g.c + (m0 + r) * g.ldc + column0;
      for (size_t c = 0; c < PanelColumns(g, p0 + p); ++c) {
        out[c] = panel_pairs[2 * c] + panel_pairs[2 * c + 1] -
                 g.zero_point * g.column_sums[column0 + c];
      }
    }
  }
}
#endif

// Tile<kRows> for a runtime row count 1 <= rows <= kRows (the last row block of M).
template <size_t kRows, size_t kPanels, bool kFlipSign>
HWY_INLINE void TileUpToRows(size_t rows, const GemmArgs& g, size_t m0, size_t p0) {
  if constexpr (kRows > 1) {
    if (rows < kRows) return TileUpToRows<kRows - 1, kPanels, kFlipSign>(rows, g, m0, p0);
  }
  Tile<kRows, kPanels, kFlipSign>(g, m0, p0);
}

// Panels outer, rows inner: a tile's panels (2 x 16 columns x K bytes, <= 147 KiB at K = 4608)
// stay in L2 while every row block of A streams past them.
template <bool kFlipSign>
void GemmImpl(const GemmArgs& g) {
  for (size_t p0 = 0; p0 < g.panels; p0 += kPanelsPerTile) {
    const size_t panels = std::min(kPanelsPerTile, g.panels - p0);
    for (size_t m0 = 0; m0 < g.m; m0 += kRowsPerTile) {
      const size_t rows = std::min(kRowsPerTile, g.m - m0);
      if constexpr (kPanelsPerTile > 1) {
        if (panels < kPanelsPerTile) {
          TileUpToRows<kRowsPerTile, 1, kFlipSign>(rows, g, m0, p0);
          continue;
        }
      }
      TileUpToRows<kRowsPerTile, kPanelsPerTile, kFlipSign>(rows, g, m0, p0);
    }
  }
}

void GemmU8(const GemmArgs& g) { GemmImpl</*kFlipSign=*/false>(g); }
void GemmS8(const GemmArgs& g) { GemmImpl</*kFlipSign=*/true>(g); }

// For benchmark labels and tests: the target this dispatch table resolved to.
const char* ChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(GemmU8);
HWY_EXPORT(GemmS8);
HWY_EXPORT(ChosenTargetName);

PackedWeights PackWeights(const int8_t* b, size_t k, size_t n, size_t ldb) {
  PackedWeights packed;
  packed.k = k;
  packed.n = n;
  packed.k_groups = (k + kQGemmKGroup - 1) / kQGemmKGroup;
  packed.panels = (n + kQGemmPanelColumns - 1) / kQGemmPanelColumns;
  packed.data.assign(packed.panels * packed.k_groups * qgemm_internal::kGroupBytes, 0);
  packed.column_sums.assign(packed.panels * kQGemmPanelColumns, 0);
  for (size_t row = 0; row < k; ++row) {
    const size_t g = row / kQGemmKGroup;
    const size_t j = row % kQGemmKGroup;
    for (size_t col = 0; col < n; ++col) {
      const size_t panel = col / kQGemmPanelColumns;
      const size_t c = col % kQGemmPanelColumns;
      const int8_t value = b[row * ldb + col];
      packed.data[((panel * packed.k_groups + g) * kQGemmPanelColumns + c) * kQGemmKGroup + j] =
          value;
      packed.column_sums[col] += value;
    }
  }
  return packed;
}

namespace {
qgemm_internal::GemmArgs MakeArgs(const uint8_t* a, size_t m, size_t lda, int32_t zero_point,
                                  const PackedWeights& b, int32_t* c, size_t ldc) {
  return {a,      m,   lda,        zero_point, b.data.data(), b.column_sums.data(), b.k, b.n,
          b.k_groups, b.panels, c, ldc};
}
}  // namespace

void QGemmU8S8S32(const uint8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc) {
  HWY_DASSERT(0 <= a_zero_point && a_zero_point <= 255);
  HWY_DYNAMIC_DISPATCH(GemmU8)(MakeArgs(a, m, lda, a_zero_point, b, c, ldc));
}

void QGemmS8S8S32(const int8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc) {
  HWY_DASSERT(-128 <= a_zero_point && a_zero_point <= 127);
  // a - zp == (a + 128) - (zp + 128): the kernels see a + 128 (sign bit flipped) as uint8.
  HWY_DYNAMIC_DISPATCH(GemmS8)(MakeArgs(reinterpret_cast<const uint8_t*>(a), m, lda,
                                        a_zero_point + 128, b, c, ldc));
}

const char* QGemmKernelsTargetName() { return HWY_DYNAMIC_DISPATCH(ChosenTargetName)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
