// Highway implementation of kernels/histogram/histogram.h, compiled once per target (Highway's
// skeleton: this file re-includes itself through foreach_target.h; HWY_DYNAMIC_DISPATCH below).
//
// Blocks of kBlock elements: SIMD turns each block into bin indices (elements not counted go to a
// dump slot, index `bins`), then a scalar loop increments four interleaved partial histograms of
// uint32 (a block is far below 2^32), which are folded into the caller's int64 counts at the end.
// Four partials break the store-to-load dependency when consecutive elements share a bin (narrow
// distributions, constant tensors), the common case that makes a single histogram slow.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/histogram/histogram.h"

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

constexpr size_t kBlock = 4096;
constexpr size_t kPartials = 4;

// Bin indices of x[0, n) (n <= kBlock) into idx; uncounted elements get `dump`.
template <class D>
HWY_INLINE void BinIndices(D d, const float* x, size_t n, const HistogramBinning& b,
                           int32_t* idx) {
  const hn::RebindToSigned<D> di;
  const auto lo = hn::Set(d, b.lo);
  const auto hi = hn::Set(d, b.hi);
  const auto nbins = hn::Set(d, static_cast<float>(b.bins));
  const auto width = hn::Set(d, b.hi - b.lo);
  const auto last = hn::Set(d, static_cast<float>(b.bins - 1));
  const auto dump = hn::Set(di, static_cast<int32_t>(b.bins));
  const size_t lanes = hn::Lanes(d);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    const auto inside = hn::And(hn::Ge(v, lo), hn::Le(v, hi));  // false for NaN
    // Same operations in the same order as the scalar rule; Min folds bin == bins into the last
    // bin (and keeps lanes that are not counted finite before the conversion).
    const auto scaled = hn::Div(hn::Mul(hn::Sub(v, lo), nbins), width);
    const auto bin = hn::ConvertTo(di, hn::Min(hn::IfThenElseZero(inside, scaled), last));
    hn::StoreU(hn::IfThenElse(hn::RebindMask(di, inside), bin, dump), di, idx + i);
  }
  for (; i < n; ++i) {
    const float v = x[i];
    if (!(v >= b.lo && v <= b.hi)) {
      idx[i] = static_cast<int32_t>(b.bins);
      continue;
    }
    const float scaled = ((v - b.lo) * static_cast<float>(b.bins)) / (b.hi - b.lo);
    idx[i] = static_cast<int32_t>(std::min(scaled, static_cast<float>(b.bins - 1)));
  }
}

// Short arrays (a run of one channel of an NCHW tensor, a small weight channel): the partials'
// allocation and fold (kPartials * bins additions) would cost more than the elements, so the
// increments go straight to the caller's counts.
size_t HistogramAccumulateDirect(const float* x, size_t n, const HistogramBinning& b,
                                 int64_t* counts) {
  const hn::ScalableTag<float> d;
  HWY_ALIGN int32_t idx[kBlock];
  size_t counted = 0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t len = std::min(kBlock, n - begin);
    BinIndices(d, x + begin, len, b, idx);
    for (size_t k = 0; k < len; ++k) {
      const uint32_t bin = static_cast<uint32_t>(idx[k]);
      if (bin == b.bins) continue;
      ++counts[bin];
      ++counted;
    }
  }
  return counted;
}

size_t HistogramAccumulateImpl(const float* x, size_t n, const HistogramBinning& b,
                               int64_t* counts) {
  if (n < kPartials * static_cast<size_t>(b.bins)) {
    return HistogramAccumulateDirect(x, n, b, counts);
  }
  const hn::ScalableTag<float> d;
  const size_t stride = b.bins + 1;  // + the dump slot
  std::vector<uint32_t> partial(kPartials * stride, 0);
  size_t counted = 0;
  auto fold = [&] {
    for (size_t p = 0; p < kPartials; ++p) {
      for (size_t j = 0; j < b.bins; ++j) {
        counts[j] += partial[p * stride + j];
        counted += partial[p * stride + j];
      }
    }
    std::fill(partial.begin(), partial.end(), 0u);
  };
  // uint32 partials: fold long before any could reach 2^32.
  constexpr size_t kBlocksPerFold = (size_t{1} << 30) / kBlock;
  HWY_ALIGN int32_t idx[kBlock];
  size_t blocks = 0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    const size_t len = std::min(kBlock, n - begin);
    BinIndices(d, x + begin, len, b, idx);
    // The next block's cache lines are requested while this block's increments run (one line
    // of 16 floats per 16 increments): the SIMD pass over the next block then finds its data in
    // cache instead of stalling on memory that the hardware prefetcher, seeing a long pause in
    // the loads, had not fetched yet.
    const size_t ahead = std::min(kBlock, n - begin - len);  // elements of the next block
    const float* next = x + begin + len;
    // One base pointer per partial: each increment is then a single add to memory at
    // base + 4 * index, with no address arithmetic of its own.
    uint32_t* const p0 = partial.data();
    uint32_t* const p1 = p0 + stride;
    uint32_t* const p2 = p1 + stride;
    uint32_t* const p3 = p2 + stride;
    size_t k = 0;
    for (; k + 16 <= len; k += 16) {
      if (k < ahead) hwy::Prefetch(next + k);
      for (size_t j = 0; j < 16; j += kPartials) {
        ++p0[idx[k + j]];
        ++p1[idx[k + j + 1]];
        ++p2[idx[k + j + 2]];
        ++p3[idx[k + j + 3]];
      }
    }
    for (; k < len; ++k) ++partial[static_cast<size_t>(idx[k])];
    if (++blocks == kBlocksPerFold) {
      fold();
      blocks = 0;
    }
  }
  fold();
  return counted;
}

const char* HistogramChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(HistogramAccumulateImpl);
HWY_EXPORT(HistogramChosenTargetName);

size_t HistogramAccumulate(const float* x, size_t n, const HistogramBinning& binning,
                           int64_t* counts) {
  return HWY_DYNAMIC_DISPATCH(HistogramAccumulateImpl)(x, n, binning, counts);
}

const char* HistogramKernelTargetName() { return HWY_DYNAMIC_DISPATCH(HistogramChosenTargetName)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
