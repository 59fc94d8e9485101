// Highway implementation of max_pool_forward.h, compiled once per target (Highway's skeleton:
// self-include through foreach_target.h, dispatch under HWY_ONCE). Per output pixel, each whole
// vector of channels keeps its running maximum and argmax in registers while the window's
// pixels are read (NHWC: a pixel's channels are contiguous); a plain per-channel loop had
// stayed scalar and took 3.3 % of a QAT ResNet18 step.

#include "train/ops/max_pool_forward.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/fp32/pool_window.h"
#include "train/ops/select_bits.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/ops/max_pool_forward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::train::internal {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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
    const kernels::PoolWindow wh =
        kernels::PoolAxisWindow(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
    const size_t image = b * g.in_h * g.in_w;
    for (size_t ow = 0; ow < g.out_w; ++ow) {
      const kernels::PoolWindow ww =
          kernels::PoolAxisWindow(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
      float* out = y + (row * g.out_w + ow) * c;
      int32_t* out_index = argmax + (row * g.out_w + ow) * c;
      // The window's first real pixel: where an all -inf (or empty) window points.
      const size_t first =
          (image + static_cast<size_t>(wh.begin) * g.in_w + static_cast<size_t>(ww.begin)) * c;
      size_t ch = 0;
      for (; ch + lanes <= c; ch += lanes) {
        auto best = minus_infinity;
        auto best_index = hn::Add(lane_offsets, hn::Set(di, static_cast<int32_t>(first + ch)));
        for (int64_t h = wh.begin; h < wh.end; ++h) {
          for (int64_t w = ww.begin; w < ww.end; ++w) {
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
        for (int64_t h = wh.begin; h < wh.end; ++h) {
          for (int64_t w = ww.begin; w < ww.end; ++w) {
            const size_t pixel =
                (image + static_cast<size_t>(h) * g.in_w + static_cast<size_t>(w)) * c + ch;
            const float v = x[pixel];
            const bool take = (v > best) | std::isnan(v);  // no short-circuit branch
            best = SelectBits(take, v, best);
            best_index = SelectBits(take, static_cast<int32_t>(pixel), best_index);
          }
        }
        out[ch] = best;
        out_index[ch] = best_index;
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace qlab::train::internal
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::train::internal {

HWY_EXPORT(MaxPoolForwardRowsImpl);

void MaxPoolForwardRows(const kernels::Fp32PoolGeometry& g, const float* x, size_t row_begin,
                        size_t row_end, float* y, int32_t* argmax) {
  HWY_DYNAMIC_DISPATCH(MaxPoolForwardRowsImpl)(g, x, row_begin, row_end, y, argmax);
}

}  // namespace qlab::train::internal
#endif  // HWY_ONCE
