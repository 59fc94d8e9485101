// Highway implementation of kernels/histogram/histogram.h, compiled once per target (Highway's
// skeleton: this file re-includes itself through foreach_target.h; HWY_DYNAMIC_DISPATCH below).
//
// Blocks of kBlock elements: SIMD turns each block into bin indices (elements not counted go to a
// dump slot, index `bins`), and a scalar loop increments kPartials interleaved partial histograms
// of uint32 (a block is far below 2^32), folded into int64 counts at the end. Partials break the
// store-to-load dependency when consecutive elements share a bin (narrow distributions, the zeros
// of post-ReLU data, constant tensors), the case that makes a single histogram slow.
//
// Software pipelining: the SIMD bin indices of block k+1 are computed one group of 16 elements at
// a time between the increments of block k's groups. The two streams are independent (the
// indices of block k were stored a whole block earlier), so the out-of-order core runs the vector
// arithmetic (ports 0/5) under the increments (loads, stores, integer ALUs) instead of one after
// the other. Measured on the project machine (Xeon, AVX3_DL, 1 M elements of N(0, 1), 2048
// bins, one core): 0.73-0.93 ms per pass for the block-after-block loop with 4 partials, 0.52-0.62
// ms pipelined (2 partials: 0.52 ms on spread data but 1.1 ms on a constant tensor; 8: 0.60 ms
// spread, 0.65 ms post-ReLU, 0.60 ms constant — the most even, hence kPartials = 8). Computing
// the index with a reciprocal multiply and an exactness check instead of the division was no
// faster here (the division's throughput is hidden under the increments), so the division stays:
// it is torch.histc's rule by construction.
//
// On the idle Zen 5 (session 8, same benchmark, best of six interleaved runs per binary) two
// code-generation fixes took a 1 M pass from 504 to ~420 us: the increments of a group written
// out with each partial's base pointer in a register (IncrementGroup: GCC had kept the pointers in
// an array on the stack and reloaded one per increment), and the bin conversion without
// ConvertTo's overflow fix-up (TruncateInRange).
//
// Session 11 (idle Zen 5, kernel alone on 1 M N(0, 1) values, best of 40-50 calls, each variant
// in several processes): 440-510 -> 255-270 us per pass, from two changes.
// - Blocks of 512 instead of 4096, prefetching 2048 elements ahead. With 4096, the two 16 KiB
//   index buffers sat beside 64 KiB of partials in a 48 KiB L1, and the same binary ran at
//   ~290 us in some processes and 400-500 us in others (the physical pages it got, we think);
//   blocks of 512 (4 KiB of indices) ran at 250-270 us in every process, and 16 M passes went
//   from 4.4-5.5 to 4.1-4.3 ms. 256 was no better, 1024 and more worse; 4 partials were as fast
//   on spread data but 15 % slower on post-ReLU data.
// - The block loop in a function of its own (CountBlocks) without calls: sharing a function with
//   the fold's memset, it had its vector constants kept on the stack and reloaded for every group.

#include "kernels/histogram/histogram.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/histogram/histogram.cc"
#include "hwy/cache_control.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr size_t kBlock = 512;
constexpr size_t kGroup = 16;  // elements per pipelined step (a multiple of every target's lanes)
constexpr size_t kPartials = 8;
constexpr size_t kPrefetchAhead = 2048;
static_assert(kGroup % kPartials == 0 || kPartials % kGroup == 0, "groups split over partials");

// The bin rule's constants as vectors, and the optional inside-range check (IfInside variants).
template <class D>
struct BinVectors {
  BinVectors(D d, const HistogramBinning& b, float inside_lo, float inside_hi)
      : lo(hn::Set(d, b.lo)),
        hi(hn::Set(d, b.hi)),
        nbins(hn::Set(d, static_cast<float>(b.bins))),
        width(hn::Set(d, b.hi - b.lo)),
        last(hn::Set(d, static_cast<float>(b.bins - 1))),
        dump(hn::Set(hn::RebindToSigned<D>(), static_cast<int32_t>(b.bins))),
        check_lo(hn::Set(d, inside_lo)),
        check_hi(hn::Set(d, inside_hi)) {}
  hn::Vec<D> lo, hi, nbins, width, last;
  hn::Vec<hn::RebindToSigned<D>> dump;
  hn::Vec<D> check_lo, check_hi;
};

// Truncation toward zero of lanes known to hold integers-to-be in [0, 2^24] (bins are at most
// 2^24): on x86 the conversion instruction alone. Highway's ConvertTo also saturates lanes that
// overflow int32, four more instructions per vector that this range makes dead weight.
template <class DI, class V>
HWY_INLINE hn::Vec<DI> TruncateInRange(DI di, V v) {
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  (void)di;
  return hn::Vec<DI>{_mm512_cvttps_epi32(v.raw)};
#elif HWY_TARGET == HWY_AVX2
  (void)di;
  return hn::Vec<DI>{_mm256_cvttps_epi32(v.raw)};
#else
  return hn::ConvertTo(di, v);
#endif
}

// The bin indices of x[0, kGroup) into idx; uncounted elements get `dump`. With kCheck, the
// lanes of elements outside [check_lo, check_hi] (NaN included) are OR-ed into *outside.
template <bool kCheck, class D>
HWY_INLINE void BinGroup(D d, const BinVectors<D>& c, const float* x, int32_t* idx,
                         hn::Mask<D>* outside) {
  const hn::RebindToSigned<D> di;
  const size_t lanes = hn::Lanes(d);
  for (size_t j = 0; j < kGroup; j += lanes) {
    const auto v = hn::LoadU(d, x + j);
    const auto inside = hn::And(hn::Ge(v, c.lo), hn::Le(v, c.hi));  // false for NaN
    // Same operations in the same order as the scalar rule; Min folds bin == bins into the last
    // bin (and keeps lanes that are not counted finite before the conversion).
    const auto scaled = hn::Div(hn::Mul(hn::Sub(v, c.lo), c.nbins), c.width);
    const auto bin = TruncateInRange(di, hn::Min(hn::IfThenElseZero(inside, scaled), c.last));
    hn::StoreU(hn::IfThenElse(hn::RebindMask(di, inside), bin, c.dump), di, idx + j);
    if (kCheck) {
      *outside = hn::Or(*outside, hn::Not(hn::And(hn::Ge(v, c.check_lo), hn::Le(v, c.check_hi))));
    }
  }
}

// The scalar rule for one element (block tails).
HWY_INLINE int32_t BinOf(float v, const HistogramBinning& b) {
  if (!(v >= b.lo && v <= b.hi)) return static_cast<int32_t>(b.bins);
  const float scaled = ((v - b.lo) * static_cast<float>(b.bins)) / (b.hi - b.lo);
  return static_cast<int32_t>(std::min(scaled, static_cast<float>(b.bins - 1)));
}

// Bin indices of x[0, n) (n <= kBlock) into idx, not pipelined (the first block, the tail, short
// arrays). Returns false (kCheck) if an element lies outside [inside_lo, inside_hi].
template <bool kCheck, class D>
HWY_INLINE bool BinIndices(D d, const BinVectors<D>& c, const float* x, size_t n,
                           const HistogramBinning& b, float inside_lo, float inside_hi,
                           int32_t* idx) {
  auto outside = hn::FirstN(d, 0);
  size_t i = 0;
  for (; i + kGroup <= n; i += kGroup) BinGroup<kCheck>(d, c, x + i, idx + i, &outside);
  bool ok = !kCheck || hn::AllFalse(d, outside);
  // Fewer than kGroup elements remain (a bound written out: GCC otherwise warns about the loop).
  const size_t rest = std::min(n - i, kGroup - 1);
  for (size_t t = 0; t < rest; ++t) {
    const float v = x[i + t];
    idx[i + t] = BinOf(v, b);
    if (kCheck && !(v >= inside_lo && v <= inside_hi)) ok = false;
  }
  return ok;
}

// The partial histograms' base pointers, as separate values rather than an array indexed by a
// loop variable: GCC kept such an array on the stack and reloaded a pointer for every increment
// (perf annotate: the loop over partials, not unrolled, held most of the kernel's samples).
struct PartialBases {
  uint32_t* p[kPartials];
};

// Adds one per index of idx[0, kGroup) to the partials: partial p takes indices p, p + kPartials,
// ... Fully unrolled, so every base is a register and each increment one add to memory.
HWY_INLINE void IncrementGroup(const int32_t* HWY_RESTRICT idx, const PartialBases& bases) {
  uint32_t* const b0 = bases.p[0];
  uint32_t* const b1 = bases.p[1];
  uint32_t* const b2 = bases.p[2];
  uint32_t* const b3 = bases.p[3];
  uint32_t* const b4 = bases.p[4];
  uint32_t* const b5 = bases.p[5];
  uint32_t* const b6 = bases.p[6];
  uint32_t* const b7 = bases.p[7];
  static_assert(kPartials == 8 && kGroup == 16, "IncrementGroup is written for 8 partials, 16");
  ++b0[idx[0]];
  ++b1[idx[1]];
  ++b2[idx[2]];
  ++b3[idx[3]];
  ++b4[idx[4]];
  ++b5[idx[5]];
  ++b6[idx[6]];
  ++b7[idx[7]];
  ++b0[idx[8]];
  ++b1[idx[9]];
  ++b2[idx[10]];
  ++b3[idx[11]];
  ++b4[idx[12]];
  ++b5[idx[13]];
  ++b6[idx[14]];
  ++b7[idx[15]];
}

// folded[j] += the sum of the partials' bin j, for j < bins, and the partials zeroed. The
// partials' sum fits uint32 (they are folded long before 2^32 increments), added in vectors and
// widened to int64 once: done once per call, this fold had been a scalar loop of kPartials * bins
// int64 additions, ~16 K per call, which the observers' 128 K-element chunks pay every time.
HWY_INLINE void FoldPartials(const PartialBases& bases, size_t bins, int64_t* folded,
                             std::vector<uint32_t>& partial) {
  const hn::ScalableTag<uint64_t> du64;
  const hn::Rebind<uint32_t, decltype(du64)> du32;  // as many uint32 lanes as uint64 ones
  const size_t lanes = hn::Lanes(du64);
  size_t j = 0;
  for (; j + lanes <= bins; j += lanes) {
    auto sum = hn::LoadU(du32, bases.p[0] + j);
    for (size_t p = 1; p < kPartials; ++p) sum = hn::Add(sum, hn::LoadU(du32, bases.p[p] + j));
    uint64_t* out = reinterpret_cast<uint64_t*>(folded + j);
    hn::StoreU(hn::Add(hn::LoadU(du64, out), hn::PromoteTo(du64, sum)), du64, out);
  }
  for (; j < bins; ++j) {
    uint32_t sum = 0;
    for (size_t p = 0; p < kPartials; ++p) sum += bases.p[p][j];
    folded[j] += sum;
  }
  std::fill(partial.begin(), partial.end(), 0u);
}

// idx[0, n) into the partials (n a multiple of kGroup, or the tail of the array).
HWY_INLINE void Increment(const int32_t* idx, size_t n, const PartialBases& bases) {
  size_t k = 0;
  for (; k + kGroup <= n; k += kGroup) IncrementGroup(idx + k, bases);
  for (; k < n; ++k) ++bases.p[0][idx[k]];
}

// Short arrays (a run of one channel of an NCHW tensor, a small weight channel): the partials'
// allocation and fold (kPartials * bins additions) would cost more than the elements, so the
// increments go straight to the caller's counts. Returns false (kCheck), leaving the counts
// unchanged, if an element lies outside [inside_lo, inside_hi].
template <bool kCheck>
size_t AccumulateDirect(const float* x, size_t n, const HistogramBinning& b, float inside_lo,
                        float inside_hi, int64_t* counts, bool* inside) {
  const hn::ScalableTag<float> d;
  const BinVectors<hn::ScalableTag<float>> c(d, b, inside_lo, inside_hi);
  HWY_ALIGN int32_t idx[kBlock];
  if (kCheck) {  // all blocks checked before any count changes
    for (size_t begin = 0; begin < n; begin += kBlock) {
      const size_t len = std::min(kBlock, n - begin);
      if (!BinIndices<true>(d, c, x + begin, len, b, inside_lo, inside_hi, idx)) {
        *inside = false;
        return 0;
      }
    }
  }
  size_t counted = 0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t len = std::min(kBlock, n - begin);
    BinIndices<false>(d, c, x + begin, len, b, inside_lo, inside_hi, idx);
    for (size_t k = 0; k < len; ++k) {
      const uint32_t bin = static_cast<uint32_t>(idx[k]);
      if (bin == b.bins) continue;
      ++counts[bin];
      ++counted;
    }
  }
  return counted;
}

// Counts x[0, blocks * kBlock) into the partials, blocks >= 1; `readable` (>= blocks * kBlock)
// bounds the prefetches. Returns false (kCheck) if an element lies outside [inside_lo,
// inside_hi], the partials then part-filled. A function of its own with no call inside: when the
// block loop shared a function with the fold (std::fill's memset), GCC kept the bin rule's vector
// constants on the stack across it and reloaded five of them for every group.
template <bool kCheck>
HWY_NOINLINE bool CountBlocks(const float* x, size_t blocks, size_t readable,
                              const HistogramBinning& b, float inside_lo, float inside_hi,
                              const PartialBases& bases) {
  const hn::ScalableTag<float> d;
  const BinVectors<hn::ScalableTag<float>> c(d, b, inside_lo, inside_hi);
  HWY_ALIGN int32_t idx[2][kBlock];
  if (!BinIndices<kCheck>(d, c, x, kBlock, b, inside_lo, inside_hi, idx[0])) return false;
  for (size_t k = 0; k + 1 < blocks; ++k) {
    const int32_t* current = idx[k & 1];
    int32_t* next = idx[(k + 1) & 1];
    const float* next_x = x + (k + 1) * kBlock;
    // kPrefetchAhead elements past the block being binned are requested a line per group (a
    // group is one 64-byte line): the loads come slowly between increments, and the hardware
    // prefetcher alone let a 16 M pass stall on memory (standalone, loaded machine: 48-54 ms
    // per 16 M pass with this, 56-67 without).
    const bool prefetch = (k + 2) * kBlock + kPrefetchAhead <= readable;
    auto outside = hn::FirstN(d, 0);
    for (size_t g = 0; g < kBlock; g += kGroup) {
      if (prefetch) hwy::Prefetch(next_x + kPrefetchAhead + g);
      BinGroup<kCheck>(d, c, next_x + g, next + g, &outside);
      IncrementGroup(current + g, bases);
    }
    if (kCheck && !hn::AllFalse(d, outside)) return false;
  }
  const int32_t* last = idx[(blocks - 1) & 1];
  for (size_t g = 0; g < kBlock; g += kGroup) IncrementGroup(last + g, bases);
  return true;
}

template <bool kCheck>
size_t Accumulate(const float* x, size_t n, const HistogramBinning& b, float inside_lo,
                  float inside_hi, int64_t* counts, bool* inside) {
  if (kCheck) *inside = true;
  if (n < kPartials * static_cast<size_t>(b.bins)) {
    return AccumulateDirect<kCheck>(x, n, b, inside_lo, inside_hi, counts, inside);
  }
  const size_t stride = b.bins + 1;  // + the dump slot
  std::vector<uint32_t> partial(kPartials * stride, 0);
  PartialBases bases;
  for (size_t p = 0; p < kPartials; ++p) bases.p[p] = partial.data() + p * stride;
  // Folded here, not into `counts`, so that a failed check leaves `counts` untouched.
  std::vector<int64_t> folded(b.bins, 0);
  auto fold = [&] { FoldPartials(bases, b.bins, folded.data(), partial); };
  // uint32 partials: fold long before any could reach 2^32.
  constexpr size_t kBlocksPerFold = (size_t{1} << 30) / kBlock;
  const size_t full_blocks = n / kBlock;
  bool ok = true;
  for (size_t first = 0; first < full_blocks && ok; first += kBlocksPerFold) {
    const size_t blocks = std::min(kBlocksPerFold, full_blocks - first);
    ok = CountBlocks<kCheck>(x + first * kBlock, blocks, n - first * kBlock, b, inside_lo,
                             inside_hi, bases);
    if (ok && blocks == kBlocksPerFold) fold();
  }
  const size_t tail = n - full_blocks * kBlock;
  if (ok && tail > 0) {
    const hn::ScalableTag<float> d;
    const BinVectors<hn::ScalableTag<float>> c(d, b, inside_lo, inside_hi);
    HWY_ALIGN int32_t idx[kBlock];
    ok = BinIndices<kCheck>(d, c, x + full_blocks * kBlock, tail, b, inside_lo, inside_hi, idx);
    if (ok) Increment(idx, tail, bases);
  }
  if (!ok) {
    *inside = false;
    return 0;
  }
  fold();
  size_t counted = 0;
  for (size_t j = 0; j < b.bins; ++j) {
    counts[j] += folded[j];
    counted += static_cast<size_t>(folded[j]);
  }
  return counted;
}

size_t HistogramAccumulateImpl(const float* x, size_t n, const HistogramBinning& b,
                               int64_t* counts) {
  return Accumulate<false>(x, n, b, 0.0f, 0.0f, counts, nullptr);
}

bool HistogramAccumulateIfInsideImpl(const float* x, size_t n, const HistogramBinning& b,
                                     float inside_lo, float inside_hi, int64_t* counts) {
  bool inside = true;
  Accumulate<true>(x, n, b, inside_lo, inside_hi, counts, &inside);
  return inside;
}

const char* HistogramChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(HistogramAccumulateImpl);
HWY_EXPORT(HistogramAccumulateIfInsideImpl);
HWY_EXPORT(HistogramChosenTargetName);

size_t HistogramAccumulate(const float* x, size_t n, const HistogramBinning& binning,
                           int64_t* counts) {
  return HWY_DYNAMIC_DISPATCH(HistogramAccumulateImpl)(x, n, binning, counts);
}

bool HistogramAccumulateIfInside(const float* x, size_t n, const HistogramBinning& binning,
                                 float inside_lo, float inside_hi, int64_t* counts) {
  return HWY_DYNAMIC_DISPATCH(HistogramAccumulateIfInsideImpl)(x, n, binning, inside_lo, inside_hi,
                                                               counts);
}

const char* HistogramKernelTargetName() {
  return HWY_DYNAMIC_DISPATCH(HistogramChosenTargetName)();
}

}  // namespace qlab::kernels
#endif  // HWY_ONCE
