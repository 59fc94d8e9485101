// Highway implementation of max_pool_forward.h, compiled once per target (Highway's skeleton:
// self-include through foreach_target.h, dispatch under HWY_ONCE). Per output pixel, each whole
// vector of channels keeps its running maximum and argmax in registers while the window's
// pixels are read (NHWC: a pixel's channels are contiguous); a plain per-channel loop had
// stayed scalar and took 3.3 % of a QAT ResNet18 step.

#include "train/ops/max_pool_forward.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/ops/max_pool_forward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::train::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Real input positions [begin, end) of output coordinate o's window along one axis (padding
// never wins, so only the real pixels are scanned).
void AxisRange(size_t o, size_t stride, size_t pad, size_t kernel, size_t size, int64_t* begin,
               int64_t* end) {
  const int64_t start = static_cast<int64_t>(o * stride) - static_cast<int64_t>(pad);
  *begin = std::max<int64_t>(start, 0);
  *end = std::min(start + static_cast<int64_t>(kernel), static_cast<int64_t>(size));
}

void MaxPoolForwardRowsImpl(const kernels::Fp32PoolGeometry& g, const float* x, size_t row_begin,
                            size_t row_end, float* y, int32_t* argmax) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t lanes = hn::Lanes(df);
  const size_t c = g.channels;
  const auto lane_offsets = hn::Iota(di, 0);
  const auto minus_infinity = hn::Set(df, -std::numeric_limits<float>::infinity());
  for (size_t row = row_begin; row < row_end; ++row) {
    const size_t b = row / g.out_h, oh = row % g.out_h;
    int64_t h_begin, h_end;
    AxisRange(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h, &h_begin, &h_end);
    const size_t image = b * g.in_h * g.in_w;
    for (size_t ow = 0; ow < g.out_w; ++ow) {
      int64_t w_begin, w_end;
      AxisRange(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w, &w_begin, &w_end);
      float* out = y + (row * g.out_w + ow) * c;
      int32_t* out_index = argmax + (row * g.out_w + ow) * c;
      // The window's first real pixel: where an all -inf (or empty) window points.
      const size_t first =
          (image + static_cast<size_t>(h_begin) * g.in_w + static_cast<size_t>(w_begin)) * c;
      size_t ch = 0;
      for (; ch + lanes <= c; ch += lanes) {
        auto best = minus_infinity;
        auto best_index = hn::Add(lane_offsets, hn::Set(di, static_cast<int32_t>(first + ch)));
        for (int64_t h = h_begin; h < h_end; ++h) {
          for (int64_t w = w_begin; w < w_end; ++w) {
            const size_t pixel =
                (image + static_cast<size_t>(h) * g.in_w + static_cast<size_t>(w)) * c + ch;
            const auto v = hn::LoadU(df, x + pixel);
            const auto take = hn::Or(hn::Gt(v, best), hn::IsNaN(v));
            best = hn::IfThenElse(take, v, best);
            best_index = hn::IfThenElse(
                hn::RebindMask(di, take),
                hn::Add(lane_offsets, hn::Set(di, static_cast<int32_t>(pixel))), best_index);
          }
        }
        hn::StoreU(best, df, out + ch);
        hn::StoreU(best_index, di, out_index + ch);
      }
      for (; ch < c; ++ch) {  // channels after the last whole vector: the same rule
        float best = -std::numeric_limits<float>::infinity();
        int32_t best_index = static_cast<int32_t>(first + ch);
        for (int64_t h = h_begin; h < h_end; ++h) {
          for (int64_t w = w_begin; w < w_end; ++w) {
            const size_t pixel =
                (image + static_cast<size_t>(h) * g.in_w + static_cast<size_t>(w)) * c + ch;
            const float v = x[pixel];
            if (v > best || std::isnan(v)) {
              best = v;
              best_index = static_cast<int32_t>(pixel);
            }
          }
        }
        out[ch] = best;
        out_index[ch] = best_index;
      }
    }
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::train::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::train::internal {

HWY_EXPORT(MaxPoolForwardRowsImpl);
HWY_EXPORT(TargetName);

void MaxPoolForwardRows(const kernels::Fp32PoolGeometry& g, const float* x, size_t row_begin,
                        size_t row_end, float* y, int32_t* argmax) {
  HWY_DYNAMIC_DISPATCH(MaxPoolForwardRowsImpl)(g, x, row_begin, row_end, y, argmax);
}

const char* MaxPoolForwardTargetName() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

}  // namespace qlab::train::internal
#endif  // HWY_ONCE
