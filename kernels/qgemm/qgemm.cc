// Highway implementations of kernels/qgemm/qgemm.h (packing, the dispatched GEMM and its fused
// output stage), compiled once per target.
//
// Layout follows Highway's skeleton: this file includes itself through foreach_target.h, the SIMD
// code lives in qlab::kernels::HWY_NAMESPACE, and the public functions at the bottom (compiled
// once, under HWY_ONCE) dispatch with HWY_DYNAMIC_DISPATCH.
//
// Every target shares one driver, GemmImpl: it walks the output in tiles of kRowsPerTile rows x
// kPanelsPerTile panels (16 columns each), and each tile accumulates over all of K in registers,
// then runs the output stage (output_stage.h) on the accumulators and stores. Only the tile
// (micro-kernel) differs:
//   AVX3_DL  vpdpbusd on 512-bit vectors: one 64-byte load of a packed group per panel, one
//            4-byte activation broadcast per row, 12 rows x 2 panels = 24 zmm accumulators.
//   others   the portable Highway path: the 64 weight bytes of a group are promoted to int16, the
//            4 activation bytes are broadcast as an int16 pattern a0 a1 a2 a3 a0 a1 ..., and
//            ReorderWidenMulAccumulate (vpmaddwd on x86) adds pairs of products into int32
//            lanes: lane 2c holds column c's products of K offsets 0,1 and lane 2c+1 those of
//            offsets 2,3; the two are added once per output at the end.
//   SCALAR   plain loops (one-lane vectors have no pairs of lanes to widen-multiply into).
// Signed activations flip their sign bit as they are loaded (kFlipSign): see qgemm.h.
//
// Activation rows come either as plain rows (row m at a + m * lda) or, for implicit-GEMM
// convolution, through an indirection buffer: row m is `taps` segments of tap_k bytes each, at
// indirection[m * taps + t]. A tile reads its rows' pointers once per tap; plain GEMM is the
// one-tap case. Segments start whole K groups (tap_k % 4 == 0 when taps > 1), so the packed
// weights' group g belongs to tap g / (tap_k / 4) and the micro-kernels never straddle segments.
//
// Activation words: 4 consecutive bytes of a row of A read as one little-endian uint32 (byte j at
// bits 8j, as on every target Highway supports on this machine). The last, partial group of a row
// is read byte by byte into a zeroed word so that no byte past K is touched; the matching packed
// weights are zero, so the filler never contributes.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/qgemm/amx_support.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/qgemm.h"

// Plain helpers shared by every target: defined once, outside the per-target namespaces.
#ifndef QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_
#define QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_
namespace qlab::kernels::qgemm_internal {

// Everything a GEMM call needs, with the zero point already made effective (a_zp + 128 for s8).
struct GemmArgs {
  // Activations: plain rows when `indirection` is null, else m * taps segment pointers.
  const uint8_t* a;
  size_t lda;
  const uint8_t* const* indirection;
  size_t taps;
  size_t tap_k;
  size_t m;
  int32_t zero_point;
  const int8_t* packed;
  const int32_t* column_sums;
  size_t k;
  size_t n;
  size_t k_groups;
  size_t panel_begin;  // the panels [panel_begin, panel_end) of the output are computed
  size_t panel_end;
  const QOutputStage* stage;
  void* c;  // element (0, 0) of the output, of the stage's type
  size_t ldc;
};

// Fully unrolls the tiles' constant-trip loops over rows, panels and vectors, so that their
// accumulator arrays live in registers (without it GCC keeps them on the stack).
#define QLAB_UNROLL _Pragma("GCC unroll 16")

inline constexpr size_t kGroupBytes = kQGemmPanelColumns * kQGemmKGroup;  // 64
inline constexpr uint32_t kSignFlipWord = 0x80808080u;

// Group g of a row segment of k bytes: 4 bytes, or fewer (zero-filled) for a partial last group.
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

// Row m's segment for tap t.
inline const uint8_t* RowSegment(const GemmArgs& g, size_t m, size_t t) {
  return g.indirection != nullptr ? g.indirection[m * g.taps + t] : g.a + m * g.lda;
}

// Columns of panel p that exist in the output (16 except in the last panel).
inline size_t PanelColumns(const GemmArgs& g, size_t p) {
  return std::min(kQGemmPanelColumns, g.n - p * kQGemmPanelColumns);
}

// The 16 entries of a per-column parameter array for panel p, in `tmp` unless they can be read in
// place: a per-tensor value is repeated, and a partial last panel is padded with its last valid
// entry (a harmless value for every stage: padding lanes are computed, never stored).
template <typename T>
inline const T* PanelParams(const T* src, bool per_channel, size_t column0, size_t columns,
                            T (&tmp)[kQGemmPanelColumns]) {
  if (!per_channel) {
    std::fill(tmp, tmp + kQGemmPanelColumns, src[0]);
    return tmp;
  }
  if (columns == kQGemmPanelColumns) return src + column0;
  std::copy(src + column0, src + column0 + columns, tmp);
  std::fill(tmp + columns, tmp + kQGemmPanelColumns, src[column0 + columns - 1]);
  return tmp;
}

}  // namespace qlab::kernels::qgemm_internal
#endif  // QLAB_KERNELS_QGEMM_QGEMM_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/qgemm/qgemm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
// Everything of this family sits in its own namespace, so that per-target helpers cannot collide
// (multiple definitions at link time) with other kernel families' in binaries linking both.
namespace qgemm_hwy {
namespace hn = hwy::HWY_NAMESPACE;
using qgemm_internal::ActivationWord;
using qgemm_internal::GemmArgs;
using qgemm_internal::kGroupBytes;
using qgemm_internal::PanelColumns;
using qgemm_internal::PanelParams;
using qgemm_internal::RowSegment;

// ---------------------------------------------------------------------------------------------
// Output stage on one row of one panel (16 int32 accumulators in kStageVecs vectors), shared by
// every target's tile. Formulas: output_stage.h.
using DI = hn::CappedTag<int32_t, kQGemmPanelColumns>;
using DF = hn::Rebind<float, DI>;
using VI = hn::Vec<DI>;
using VF = hn::Vec<DF>;
constexpr size_t kStageLanes = hn::MaxLanes(DI());
constexpr size_t kStageVecs = kQGemmPanelColumns / kStageLanes;

// A panel's stage parameters, loaded once per tile and reused for each of its rows.
struct PanelStage {
  VI offset[kStageVecs];  // bias - zero_point * colsum: stages 1 and 2 in one add
  VF scale[kStageVecs];   // fp32 multipliers (kF32, and kU8/kS8 with kFloat or kFloatBias)
  VI fixed_multiplier[kStageVecs];
  VI shift[kStageVecs];
  VF float_bias[kStageVecs];  // zero when the stage has none (kF32 and kFloatBias)
  VF inverse_scale;           // output_inverse_scale (kFloatBias)
  // The clamp relative to the output zero point, [min - zp, max - zp], as floats and ints.
  VF low_f, high_f;
  VI low, high, zero_point;
  size_t column0;
  size_t columns;
};

HWY_INLINE PanelStage LoadPanelStage(const GemmArgs& g, size_t p) {
  const DI di;
  const DF df;
  const QOutputStage& s = *g.stage;
  PanelStage ps;
  ps.column0 = p * kQGemmPanelColumns;
  ps.columns = PanelColumns(g, p);
  int32_t bias_tmp[kQGemmPanelColumns] = {};
  const int32_t* bias =
      s.bias != nullptr ? PanelParams(s.bias, true, ps.column0, ps.columns, bias_tmp) : bias_tmp;
  float scale_tmp[kQGemmPanelColumns];
  const bool float_scale = s.type == QOutputType::kF32 ||
                           (s.type != QOutputType::kS32 &&
                            s.requantization != QRequantization::kFixedPoint);
  float float_bias_tmp[kQGemmPanelColumns] = {};
  const float* float_bias =
      float_scale && s.float_bias != nullptr
          ? PanelParams(s.float_bias, true, ps.column0, ps.columns, float_bias_tmp)
          : float_bias_tmp;
  const bool fixed = s.type != QOutputType::kS32 && s.type != QOutputType::kF32 &&
                     s.requantization == QRequantization::kFixedPoint;
  const float* scales =
      float_scale ? PanelParams(s.multipliers, s.per_channel, ps.column0, ps.columns, scale_tmp)
                  : nullptr;
  int32_t mult_tmp[kQGemmPanelColumns], shift_tmp[kQGemmPanelColumns];
  const int32_t* mults = fixed ? PanelParams(s.fixed_multipliers, s.per_channel, ps.column0,
                                             ps.columns, mult_tmp)
                               : nullptr;
  const int32_t* shifts =
      fixed ? PanelParams(s.shifts, s.per_channel, ps.column0, ps.columns, shift_tmp) : nullptr;
  const VI zero_point = hn::Set(di, g.zero_point);
  QLAB_UNROLL
  for (size_t v = 0; v < kStageVecs; ++v) {
    const size_t lane0 = v * kStageLanes;
    // column_sums is padded to whole panels: always 16 readable entries.
    const VI correction = hn::Mul(zero_point, hn::LoadU(di, g.column_sums + ps.column0 + lane0));
    ps.offset[v] = hn::Sub(hn::LoadU(di, bias + lane0), correction);
    ps.scale[v] = float_scale ? hn::LoadU(df, scales + lane0) : hn::Zero(df);
    ps.fixed_multiplier[v] = fixed ? hn::LoadU(di, mults + lane0) : hn::Zero(di);
    ps.shift[v] = fixed ? hn::LoadU(di, shifts + lane0) : hn::Zero(di);
    ps.float_bias[v] = hn::LoadU(df, float_bias + lane0);
  }
  ps.inverse_scale = hn::Set(df, s.output_inverse_scale);
  ps.low = hn::Set(di, s.min - s.zero_point);
  ps.high = hn::Set(di, s.max - s.zero_point);
  ps.low_f = hn::Set(df, static_cast<float>(s.min - s.zero_point));
  ps.high_f = hn::Set(df, static_cast<float>(s.max - s.zero_point));
  ps.zero_point = hn::Set(di, s.zero_point);
  return ps;
}

// Stores the first `count` lanes of v (all when count >= lanes). A partial vector goes through
// a stack buffer: a read-modify-write of the full vector could race with the thread writing the
// neighbouring columns.
template <class D>
HWY_INLINE void StoreFirstLanes(hn::Vec<D> v, D d, size_t count, hn::TFromD<D>* out) {
  if (count >= hn::MaxLanes(d)) {
    hn::StoreU(v, d, out);
    return;
  }
  HWY_ALIGN hn::TFromD<D> tmp[hn::MaxLanes(d)];
  hn::Store(v, d, tmp);
  std::memcpy(out, tmp, count * sizeof(tmp[0]));
}

// Requantization of one vector to int32 values in [min, max].
//
// fp32 form: the clamp moves before the rounding and the zero point after it,
//   clamp(nearbyint(x) + zp, min, max) == clamp(nearbyint(x), min - zp, max - zp) + zp
//                                      == nearbyint(clamp(x, min - zp, max - zp)) + zp,
// exact for integer bounds (rounding is monotonic and leaves integers alone), and it keeps every
// intermediate small: one clamp in float, one round-to-nearest-even conversion (NearestInt, the
// CPU's default rounding mode, like std::nearbyint), one integer add.
// kFloatBias (only with kFloat) computes the value to round as the float reference does:
// (float(acc) * scale + float_bias) * inverse_scale, one IEEE operation per step.
template <bool kFloat, bool kFloatBias = false>
HWY_INLINE VI Requantize(const PanelStage& ps, size_t v, VI acc) {
  static_assert(kFloat || !kFloatBias, "the float-bias form is a float requantization");
  const DI di;
  if constexpr (kStageLanes == 1) {
    // One lane (SCALAR): plain integer / float math, the formulas verbatim. std::nearbyint rounds
    // half to even like the vector targets' conversion (Highway's one-lane Round is not exact
    // near 0.5 - 2^-25).
    const int32_t a = hn::GetLane(acc);
    int64_t q;
    if constexpr (kFloat) {
      float x = static_cast<float>(a) * hn::GetLane(ps.scale[v]);
      if constexpr (kFloatBias) {
        x = x + hn::GetLane(ps.float_bias[v]);
        x = x * hn::GetLane(ps.inverse_scale);
      }
      const float clamped = std::min(std::max(x, hn::GetLane(ps.low_f)), hn::GetLane(ps.high_f));
      q = static_cast<int64_t>(std::nearbyint(clamped));
    } else {
      const int32_t sh = hn::GetLane(ps.shift[v]);
      const int64_t product = static_cast<int64_t>(a) * hn::GetLane(ps.fixed_multiplier[v]);
      q = ((product >> (sh - 1)) + 1) >> 1;  // == (p + 2^(sh-1)) >> sh
      q = std::min<int64_t>(std::max<int64_t>(q, hn::GetLane(ps.low)), hn::GetLane(ps.high));
    }
    return hn::Set(di, static_cast<int32_t>(q + hn::GetLane(ps.zero_point)));
  } else {
    if constexpr (kFloat) {
      const DF df;
      VF x = hn::Mul(hn::ConvertTo(df, acc), ps.scale[v]);
      if constexpr (kFloatBias) x = hn::Mul(hn::Add(x, ps.float_bias[v]), ps.inverse_scale);
      const VF clamped = hn::Min(hn::Max(x, ps.low_f), ps.high_f);
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
      // vcvtps2dq alone: Highway's NearestInt adds an overflow fix-up that the clamp makes moot
      // (three more port-0/5 uops per vector, which at K = 64 compete with vpdpbusd).
      const VI rounded{_mm512_cvtps_epi32(clamped.raw)};
#else
      const VI rounded = hn::NearestInt(clamped);
#endif
      return hn::Add(rounded, ps.zero_point);
    }
#if HWY_TARGET != HWY_SCALAR
    // 32x32 -> 64-bit products of even lanes, then of odd lanes moved to even positions; the
    // rounding shift (p + 2^(s-1)) >> s as ((p >> (s-1)) + 1) >> 1, which needs no 64-bit
    // variable left shift (absent on x86).
    const hn::RepartitionToWide<DI> d64;
    const auto one = hn::Set(d64, 1);
    const auto shift_pairs = hn::BitCast(d64, ps.shift[v]);
    const auto shift_even = hn::And(shift_pairs, hn::Set(d64, 0xFFFFFFFFLL));
    const auto shift_odd = hn::ShiftRight<32>(shift_pairs);
    const auto even = hn::MulEven(acc, ps.fixed_multiplier[v]);
    const auto odd =
        hn::MulEven(hn::Shuffle2301(acc), hn::Shuffle2301(ps.fixed_multiplier[v]));
    const auto scaled_even =
        hn::ShiftRight<1>(hn::Add(hn::operator>>(even, hn::Sub(shift_even, one)), one));
    const auto scaled_odd =
        hn::ShiftRight<1>(hn::Add(hn::operator>>(odd, hn::Sub(shift_odd, one)), one));
    // shift >= 31 keeps |scaled| < 2^31: the low halves hold the int32 results.
    const VI scaled = hn::OddEven(hn::BitCast(di, hn::ShiftLeft<32>(scaled_odd)),
                                  hn::BitCast(di, scaled_even));
    // Clamp before adding the zero point, so that the addition cannot overflow.
    return hn::Add(hn::Min(hn::Max(scaled, ps.low), ps.high), ps.zero_point);
#else
    return acc;  // unreachable: SCALAR vectors have one lane
#endif
  }
}

// The low byte of each int32 lane. Requantized values already lie in the output type's range, so
// this is exact, and cheaper than a saturating DemoteTo (three shuffles on AVX-512). On AVX3_DL,
// Highway 1.0.3's TruncateTo u32 -> u8 permutes with 32-bit indices and returns wrong bytes (the
// output-stage tests catch it), hence vpmovdb there.
HWY_INLINE hn::Vec<hn::Rebind<uint8_t, DI>> LowBytes(VI q) {
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
  return hn::Vec<hn::Rebind<uint8_t, DI>>{_mm512_cvtepi32_epi8(q.raw)};
#else
  return hn::TruncateTo(hn::Rebind<uint8_t, DI>(), hn::BitCast(hn::RebindToUnsigned<DI>(), q));
#endif
}

// Stages 2-3 for rows m0 .. m0 + kRows - 1 of a panel: acc[r] holds row r's raw sums (before the
// zero-point correction). The output type is switched on once per panel of a tile, not per row.
template <size_t kRows>
HWY_INLINE void StoreRows(const GemmArgs& g, const PanelStage& ps, size_t m0,
                          const VI (&acc)[kRows][kStageVecs]) {
  const DI di;
  const DF df;
  const QOutputStage& s = *g.stage;
  // Calls f(r, v, value, count, element offset) for every stored vector.
  const auto for_each = [&](const auto& f) {
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      const size_t offset = (m0 + r) * g.ldc + ps.column0;
      QLAB_UNROLL
      for (size_t v = 0; v < kStageVecs; ++v) {
        const size_t lane0 = v * kStageLanes;
        if (lane0 >= ps.columns) break;
        f(v, hn::Add(acc[r][v], ps.offset[v]), ps.columns - lane0, offset + lane0);
      }
    }
  };
  const bool fixed = s.requantization == QRequantization::kFixedPoint;
  const bool float_bias_form = s.requantization == QRequantization::kFloatBias;
  switch (s.type) {
    case QOutputType::kS32:
      for_each([&](size_t, VI value, size_t count, size_t i) {
        StoreFirstLanes(value, di, count, static_cast<int32_t*>(g.c) + i);
      });
      break;
    case QOutputType::kF32:
      if (s.float_bias != nullptr) {
        for_each([&](size_t v, VI value, size_t count, size_t i) {
          StoreFirstLanes(hn::Add(hn::Mul(hn::ConvertTo(df, value), ps.scale[v]),
                                  ps.float_bias[v]),
                          df, count, static_cast<float*>(g.c) + i);
        });
      } else {
        for_each([&](size_t v, VI value, size_t count, size_t i) {
          StoreFirstLanes(hn::Mul(hn::ConvertTo(df, value), ps.scale[v]), df, count,
                          static_cast<float*>(g.c) + i);
        });
      }
      break;
    case QOutputType::kU8:
    case QOutputType::kS8: {
      const hn::Rebind<uint8_t, DI> du8;
      uint8_t* out = static_cast<uint8_t*>(g.c);  // int8 outputs are stored as their bytes
      if (fixed) {
        for_each([&](size_t v, VI value, size_t count, size_t i) {
          StoreFirstLanes(LowBytes(Requantize<false>(ps, v, value)), du8, count, out + i);
        });
      } else if (float_bias_form) {
        for_each([&](size_t v, VI value, size_t count, size_t i) {
          StoreFirstLanes(LowBytes(Requantize<true, true>(ps, v, value)), du8, count, out + i);
        });
      } else {
        for_each([&](size_t v, VI value, size_t count, size_t i) {
          StoreFirstLanes(LowBytes(Requantize<true>(ps, v, value)), du8, count, out + i);
        });
      }
      break;
    }
  }
}

// Output stage for a row whose 16 raw sums are in memory (portable and SCALAR tiles).
HWY_INLINE void StoreRowFromMemory(const GemmArgs& g, const PanelStage& ps, size_t m,
                                   const int32_t* sums) {
  const DI di;
  VI acc[1][kStageVecs];
  QLAB_UNROLL
  for (size_t v = 0; v < kStageVecs; ++v) acc[0][v] = hn::LoadU(di, sums + v * kStageLanes);
  StoreRows<1>(g, ps, m, acc);
}

#if HWY_TARGET == HWY_AVX3_DL
// ---------------------------------------------------------------------------------------------
// AVX-512 VNNI micro-kernel. Highway 1.0.3's AVX3_DL target string lacks "avx512vnni", so the
// intrinsic needs this function-level target (see shared/docs/TOOLCHAIN.md). It names the whole
// AVX3_DL string plus VNNI: clang takes a function's own target attribute instead of the one
// HWY_BEFORE_NAMESPACE applies, and would then refuse to inline Highway's AVX3_DL helpers.
#define QLAB_VNNI_TARGET __attribute__((target(HWY_TARGET_STR ",avx512vnni")))
constexpr size_t kRowsPerTile = 12;
constexpr size_t kPanelsPerTile = 2;
static_assert(kStageVecs == 1, "one zmm of int32 is one panel row");

// One group of K for every row and panel of the tile: 2 loads of packed weights, kRows
// broadcasts, kRows * kPanels vpdpbusd. `word(r)` gives row r's 4 activation bytes.
template <size_t kRows, size_t kPanels, class Word>
QLAB_VNNI_TARGET HWY_INLINE void VnniGroup(
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
QLAB_VNNI_TARGET HWY_NOINLINE void Tile(const GemmArgs& g, size_t m0, size_t p0) {
  __m512i acc[kRows][kPanels];
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) acc[r][p] = _mm512_setzero_si512();
  }
  const int8_t* panels[kPanels];
  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) panels[p] = g.packed + (p0 + p) * g.k_groups * kGroupBytes;

  // Whole groups of each tap: a 4-byte broadcast straight from memory (the sign flip, for s8, is
  // one vector XOR); then the partial last group (one-tap rows only), through the zero-filling
  // loader.
  const __m512i flip = _mm512_set1_epi32(static_cast<int32_t>(qgemm_internal::kSignFlipWord));
  const size_t tap_groups = g.tap_k / kQGemmKGroup;
  const uint8_t* rows[kRows] = {};
  for (size_t t = 0; t < g.taps; ++t) {
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) rows[r] = RowSegment(g, m0 + r, t);
    const size_t kg0 = t * tap_groups;
    for (size_t i = 0; i < tap_groups; ++i) {
      VnniGroup<kRows, kPanels>(acc, panels, kg0 + i, [&](size_t r) {
        int32_t word;
        std::memcpy(&word, rows[r] + i * kQGemmKGroup, sizeof(word));
        const __m512i a4 = _mm512_set1_epi32(word);
        return kFlipSign ? _mm512_xor_si512(a4, flip) : a4;
      });
    }
  }
  if (tap_groups * g.taps < g.k_groups) {  // K % 4 != 0, hence one tap: rows[] is still tap 0
    VnniGroup<kRows, kPanels>(acc, panels, tap_groups, [&](size_t r) {
      return _mm512_set1_epi32(
          static_cast<int32_t>(ActivationWord<kFlipSign>(rows[r], tap_groups, g.k)));
    });
  }

  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) {
    VI rows_acc[kRows][1];
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) rows_acc[r][0] = VI{acc[r][p]};
    StoreRows<kRows>(g, LoadPanelStage(g, p0 + p), m0, rows_acc);
  }
}

#undef QLAB_VNNI_TARGET

// The AMX-INT8 path (runs instead of the tiles above when amx_support.h allows it).
#include "kernels/qgemm/qgemm_amx-inl.h"

#elif HWY_TARGET == HWY_SCALAR
// ---------------------------------------------------------------------------------------------
// SCALAR: plain loops over the packed layout, one output at a time.
constexpr size_t kRowsPerTile = 1;
constexpr size_t kPanelsPerTile = 1;

template <size_t kRows, size_t kPanels, bool kFlipSign>
HWY_NOINLINE void Tile(const GemmArgs& g, size_t m0, size_t p0) {
  static_assert(kRows == 1 && kPanels == 1, "SCALAR tiles are one row of one panel");
  const int8_t* panel = g.packed + p0 * g.k_groups * kGroupBytes;
  const size_t tap_groups = (g.tap_k + kQGemmKGroup - 1) / kQGemmKGroup;
  int32_t sums[kQGemmPanelColumns] = {};
  for (size_t c = 0; c < PanelColumns(g, p0); ++c) {
    int32_t sum = 0;
    for (size_t t = 0; t < g.taps; ++t) {
      const uint8_t* row = RowSegment(g, m0, t);
      for (size_t i = 0; i < tap_groups; ++i) {
        const uint32_t word = ActivationWord<kFlipSign>(row, i, g.tap_k);
        const int8_t* b = panel + (t * tap_groups + i) * kGroupBytes + c * kQGemmKGroup;
        for (size_t j = 0; j < kQGemmKGroup; ++j) {
          sum += static_cast<int32_t>((word >> (8 * j)) & 0xFF) * b[j];
        }
      }
    }
    sums[c] = sum;
  }
  StoreRowFromMemory(g, LoadPanelStage(g, p0), m0, sums);
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
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_UNROLL
    for (size_t v = 0; v < kVecs; ++v) sum0[r][v] = sum1[r][v] = hn::Zero(d32);
  }

  const size_t tap_groups = (g.tap_k + kQGemmKGroup - 1) / kQGemmKGroup;
  const uint8_t* rows[kRows] = {};
  for (size_t t = 0; t < g.taps; ++t) {
    QLAB_UNROLL
    for (size_t r = 0; r < kRows; ++r) rows[r] = RowSegment(g, m0 + r, t);
    for (size_t i = 0; i < tap_groups; ++i) {
      const size_t kg = t * tap_groups + i;
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
        const uint64_t w = ActivationWord<kFlipSign>(rows[r], i, g.tap_k);
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
  }

  // Lane 2c + h of a panel's int32 lanes holds column c's products of K offsets 2h, 2h+1.
  HWY_ALIGN int32_t pairs[kPanels * 2 * kQGemmPanelColumns];
  constexpr size_t kLanes32 = hn::MaxLanes(d32);
  PanelStage ps[kPanels];
  QLAB_UNROLL
  for (size_t p = 0; p < kPanels; ++p) ps[p] = LoadPanelStage(g, p0 + p);
  QLAB_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      hn::Store(hn::RearrangeToOddPlusEven(sum0[r][v], sum1[r][v]), d32, pairs + v * kLanes32);
    }
    QLAB_UNROLL
    for (size_t p = 0; p < kPanels; ++p) {
      const int32_t* panel_pairs = pairs + p * 2 * kQGemmPanelColumns;
      HWY_ALIGN int32_t sums[kQGemmPanelColumns];
      for (size_t c = 0; c < kQGemmPanelColumns; ++c) {
        sums[c] = panel_pairs[2 * c] + panel_pairs[2 * c + 1];
      }
      StoreRowFromMemory(g, ps[p], m0 + r, sums);
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
// stay in L2 while every row block of A streams past them. M is cut into the fewest tiles of at
// most kRowsPerTile rows, of sizes differing by at most one (49 rows: 10, 10, 10, 10, 9 rather
// than 12, 12, 12, 12, 1: a one-row tile would run at a fraction of the speed).
template <bool kFlipSign>
void GemmImpl(const GemmArgs& g) {
#if HWY_TARGET == HWY_AVX3_DL
  if (g.m >= kAmxMinRows && g.k >= kAmxMinK && AmxEnabled()) return AmxGemm<kFlipSign>(g);
#endif
  const size_t row_tiles = (g.m + kRowsPerTile - 1) / kRowsPerTile;
  const size_t base_rows = row_tiles != 0 ? g.m / row_tiles : 0;
  const size_t longer_tiles = row_tiles != 0 ? g.m % row_tiles : 0;  // these get one more row
  for (size_t p0 = g.panel_begin; p0 < g.panel_end; p0 += kPanelsPerTile) {
    const size_t panels = std::min(kPanelsPerTile, g.panel_end - p0);
    size_t m0 = 0;
    for (size_t tile = 0; tile < row_tiles; ++tile) {
      const size_t rows = base_rows + (tile < longer_tiles ? 1 : 0);
      if (kPanelsPerTile > 1 && panels < kPanelsPerTile) {
        TileUpToRows<kRowsPerTile, 1, kFlipSign>(rows, g, m0, p0);  // the odd last panel
      } else {
        TileUpToRows<kRowsPerTile, kPanelsPerTile, kFlipSign>(rows, g, m0, p0);
      }
      m0 += rows;
    }
  }
}

}  // namespace qgemm_hwy

void QGemmHwyU8(const qgemm_internal::GemmArgs& g) {
  qgemm_hwy::GemmImpl</*kFlipSign=*/false>(g);
}
void QGemmHwyS8(const qgemm_internal::GemmArgs& g) {
  qgemm_hwy::GemmImpl</*kFlipSign=*/true>(g);
}

// For benchmark labels and tests: the target this dispatch table resolved to.
const char* QGemmChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

// Whether this target's GEMMs take the AMX path (for shapes where it pays).
bool QGemmAmxActive() {
#if HWY_TARGET == HWY_AVX3_DL
  return AmxEnabled();
#else
  return false;
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(QGemmHwyU8);
HWY_EXPORT(QGemmHwyS8);
HWY_EXPORT(QGemmChosenTargetName);
HWY_EXPORT(QGemmAmxActive);

PackedWeights PackWeights(const int8_t* b, size_t k, size_t n, size_t ldb) {
  return PackWeightsStrided(b, k, n, ldb, 1);
}

PackedWeights PackWeightsStrided(const int8_t* b, size_t k, size_t n, size_t k_stride,
                                 size_t n_stride) {
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
      const int8_t value = b[row * k_stride + col * n_stride];
      packed.data[((panel * packed.k_groups + g) * kQGemmPanelColumns + c) * kQGemmKGroup + j] =
          value;
      packed.column_sums[col] += value;
    }
  }
  return packed;
}

namespace {

// The raw int32 GEMM is the output stage with nothing but the zero-point correction.
const QOutputStage kRawS32Stage{};

qgemm_internal::GemmArgs MakeArgs(const uint8_t* a, size_t m, size_t lda, int32_t zero_point,
                                  const PackedWeights& b, const QOutputStage& stage, void* c,
                                  size_t ldc) {
  qgemm_internal::GemmArgs g;
  g.a = a;
  g.lda = lda;
  g.indirection = nullptr;
  g.taps = 1;
  g.tap_k = b.k;
  g.m = m;
  g.zero_point = zero_point;
  g.packed = b.data.data();
  g.column_sums = b.column_sums.data();
  g.k = b.k;
  g.n = b.n;
  g.k_groups = b.k_groups;
  g.panel_begin = 0;
  g.panel_end = b.panels;
  g.stage = &stage;
  g.c = c;
  g.ldc = ldc;
  return g;
}

}  // namespace

void QGemmU8S8S32(const uint8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc) {
  QGemmU8S8_OutputStage(a, m, lda, a_zero_point, b, kRawS32Stage, c, ldc);
}

void QGemmS8S8S32(const int8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                  const PackedWeights& b, int32_t* c, size_t ldc) {
  QGemmS8S8_OutputStage(a, m, lda, a_zero_point, b, kRawS32Stage, c, ldc);
}

void QGemmU8S8_OutputStage(const uint8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                           const PackedWeights& b, const QOutputStage& stage, void* c,
                           size_t ldc) {
  HWY_DASSERT(0 <= a_zero_point && a_zero_point <= 255);
  HWY_DYNAMIC_DISPATCH(QGemmHwyU8)(MakeArgs(a, m, lda, a_zero_point, b, stage, c, ldc));
}

void QGemmS8S8_OutputStage(const int8_t* a, size_t m, size_t lda, int32_t a_zero_point,
                           const PackedWeights& b, const QOutputStage& stage, void* c,
                           size_t ldc) {
  HWY_DASSERT(-128 <= a_zero_point && a_zero_point <= 127);
  // a - zp == (a + 128) - (zp + 128): the kernels see a + 128 (sign bit flipped) as uint8.
  HWY_DYNAMIC_DISPATCH(QGemmHwyS8)(MakeArgs(reinterpret_cast<const uint8_t*>(a), m, lda,
                                            a_zero_point + 128, b, stage, c, ldc));
}

void QIGemmU8S8_OutputStage(const uint8_t* const* indirection, size_t m, size_t taps,
                            int32_t a_zero_point, const PackedWeights& b, size_t panel_begin,
                            size_t panel_end, const QOutputStage& stage, void* c, size_t ldc) {
  HWY_DASSERT(0 <= a_zero_point && a_zero_point <= 255);
  HWY_DASSERT(taps >= 1 && b.k % taps == 0);
  HWY_DASSERT(taps == 1 || (b.k / taps) % kQGemmKGroup == 0);
  HWY_DASSERT(panel_begin <= panel_end && panel_end <= b.panels);
  qgemm_internal::GemmArgs g = MakeArgs(nullptr, m, 0, a_zero_point, b, stage, c, ldc);
  g.indirection = indirection;
  g.taps = taps;
  g.tap_k = b.k / taps;
  g.panel_begin = panel_begin;
  g.panel_end = panel_end;
  HWY_DYNAMIC_DISPATCH(QGemmHwyU8)(g);
}

const char* QGemmKernelsTargetName() { return HWY_DYNAMIC_DISPATCH(QGemmChosenTargetName)(); }

bool QGemmUsesAmx() { return HWY_DYNAMIC_DISPATCH(QGemmAmxActive)(); }

const char* QGemmKernelsName() { return QGemmUsesAmx() ? "AVX3_DL+AMX" : QGemmKernelsTargetName(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
