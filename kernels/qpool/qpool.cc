// Highway implementations of kernels/qpool/qpool.h, compiled once per target (Highway's skeleton:
// this file includes itself through foreach_target.h; SIMD code in a family namespace inside
// qlab::kernels::HWY_NAMESPACE; HWY_EXPORT / HWY_DYNAMIC_DISPATCH under HWY_ONCE).
//
// All three kernels vectorize along the channel (innermost NHWC) axis or the flat element axis;
// the remainder that does not fill a vector runs the same formula in scalar code. Max pool and the
// average pool's sums are integer-exact; the add's float steps are single IEEE operations in both
// forms (x86 Round is round-half-even, like std::nearbyint), so results equal qpool_ref.h.

#include "kernels/qpool/qpool.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/quantize/quantize.h"

#ifndef QLAB_KERNELS_QPOOL_QPOOL_CC_SHARED_
#define QLAB_KERNELS_QPOOL_QPOOL_CC_SHARED_
namespace qlab::kernels::qpool_internal {

// The add's formula on one element, shared by every target's remainder and by SCALAR.
inline uint8_t AddOne(uint8_t a, uint8_t b, const QAddParams& p) {
  const float sum = static_cast<float>(int32_t{a} - p.a_zero_point) * p.a_multiplier +
                    static_cast<float>(int32_t{b} - p.b_zero_point) * p.b_multiplier;
  const float scaled = sum * p.output_multiplier;
  const float shifted = std::nearbyint(scaled) + static_cast<float>(p.output_zero_point);
  const float clamped =
      std::min(std::max(shifted, static_cast<float>(p.min)), static_cast<float>(p.max));
  return static_cast<uint8_t>(clamped);
}

// The float-form global average of one channel (x strided by `channels`), shared by every
// target's remainder and by SCALAR.
inline uint8_t FloatAverageOne(const uint8_t* x, size_t pixels, size_t channels,
                               const QGlobalAvgPoolParams& p) {
  float sum = 0.0f;
  for (size_t q = 0; q < pixels; ++q) {
    sum += static_cast<float>(int32_t{x[q * channels]} - p.input_zero_point) * p.input_scale;
  }
  const float scaled = (sum / static_cast<float>(pixels)) * p.output_inverse_scale;
  const float shifted = std::nearbyint(scaled) + static_cast<float>(p.output_zero_point);
  const float clamped =
      std::min(std::max(shifted, static_cast<float>(p.min)), static_cast<float>(p.max));
  return static_cast<uint8_t>(clamped);
}

}  // namespace qlab::kernels::qpool_internal
#endif  // QLAB_KERNELS_QPOOL_QPOOL_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/qpool/qpool.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace qpool_hwy {
namespace hn = hwy::HWY_NAMESPACE;

// y[c] = max(y[c], x[c]) for c < channels.
HWY_INLINE void MaxInto(const uint8_t* x, size_t channels, uint8_t* y) {
  const hn::ScalableTag<uint8_t> d;
  const size_t lanes = hn::Lanes(d);
  size_t c = 0;
  for (; c + lanes <= channels; c += lanes) {
    hn::StoreU(hn::Max(hn::LoadU(d, y + c), hn::LoadU(d, x + c)), d, y + c);
  }
  for (; c < channels; ++c) y[c] = std::max(y[c], x[c]);
}

// Output rows [row_begin, row_end) of the batch (row r is image r / OH, output row r % OH).
void MaxPoolImpl(const QPoolShape& s, const uint8_t* x, uint8_t* y, size_t row_begin,
                 size_t row_end) {
  const size_t out_h = s.output_height(), out_w = s.output_width(), c = s.channels;
  for (size_t row = row_begin; row < row_end; ++row) {
    const size_t b = row / out_h, oy = row % out_h;
    const uint8_t* image = x + b * s.input_height * s.input_width * c;
    {
      // Window rows inside the input, in padded coordinates [iy0, iy0 + kh).
      const size_t iy0 = oy * s.stride_height;
      const size_t y_begin = std::max(iy0, s.padding_top) - s.padding_top;
      const size_t y_end =
          std::min(iy0 + s.kernel_height, s.padding_top + s.input_height) - s.padding_top;
      for (size_t ox = 0; ox < out_w; ++ox) {
        const size_t ix0 = ox * s.stride_width;
        const size_t x_begin = std::max(ix0, s.padding_left) - s.padding_left;
        const size_t x_end =
            std::min(ix0 + s.kernel_width, s.padding_left + s.input_width) - s.padding_left;
        uint8_t* out = y + ((b * out_h + oy) * out_w + ox) * c;
        // Every window holds at least one input pixel (ValidateQPoolShape): start from the
        // first and fold in the others.
        const uint8_t* first = image + (y_begin * s.input_width + x_begin) * c;
        std::copy(first, first + c, out);
        for (size_t iy = y_begin; iy < y_end; ++iy) {
          for (size_t ix = (iy == y_begin ? x_begin + 1 : x_begin); ix < x_end; ++ix) {
            MaxInto(image + (iy * s.input_width + ix) * c, c, out);
          }
        }
      }
    }
  }
}

// acc[c] += x[c] for c < channels (uint8 promoted to int32).
HWY_INLINE void AccumulateInto(const uint8_t* x, size_t channels, int32_t* acc) {
  const hn::ScalableTag<int32_t> d32;
  const hn::Rebind<uint8_t, decltype(d32)> d8;
  const size_t lanes = hn::Lanes(d32);
  size_t c = 0;
  for (; c + lanes <= channels; c += lanes) {
    const auto wide = hn::PromoteTo(d32, hn::LoadU(d8, x + c));
    hn::StoreU(hn::Add(hn::LoadU(d32, acc + c), wide), d32, acc + c);
  }
  for (; c < channels; ++c) acc[c] += x[c];
}

// The sums of channels [c0, c0 + count) of one image (x: pixels x stride bytes, from channel
// c0 on; acc: count sums).
void GlobalAvgPoolSums(const uint8_t* x, size_t pixels, size_t stride, size_t count,
                       int32_t zero_point, int32_t* acc) {
  // The zero point's share of every sum, subtracted up front: acc = sum(x) - pixels * zp.
  const int32_t start = -static_cast<int32_t>(pixels) * zero_point;
  std::fill(acc, acc + count, start);
  for (size_t p = 0; p < pixels; ++p) AccumulateInto(x + p * stride, count, acc);
}

// The float form, channels [0, count) of one image whose pixels are `channels` bytes apart:
// channels in vectors, each lane summing its channel's pixels in order (the same operations, in
// the same order, as the scalar formula).
void GlobalAvgPoolFloat(const uint8_t* x, size_t pixels, size_t channels, size_t count,
                        const QGlobalAvgPoolParams& p, uint8_t* y) {
  size_t c = 0;
#if HWY_TARGET != HWY_SCALAR  // SCALAR: the shared scalar formula below (exact nearbyint)
  const hn::ScalableTag<int32_t> di;
  const hn::Rebind<float, decltype(di)> df;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const size_t lanes = hn::Lanes(di);
  const auto zp = hn::Set(di, p.input_zero_point);
  const auto scale = hn::Set(df, p.input_scale);
  const auto pixel_count = hn::Set(df, static_cast<float>(pixels));
  const auto inverse = hn::Set(df, p.output_inverse_scale);
  const auto y_zp = hn::Set(df, static_cast<float>(p.output_zero_point));
  const auto lo = hn::Set(df, static_cast<float>(p.min));
  const auto hi = hn::Set(df, static_cast<float>(p.max));
  for (; c + lanes <= count; c += lanes) {
    auto sum = hn::Zero(df);
    for (size_t q = 0; q < pixels; ++q) {
      const auto v = hn::Sub(hn::PromoteTo(di, hn::LoadU(d8, x + q * channels + c)), zp);
      sum = hn::Add(sum, hn::Mul(hn::ConvertTo(df, v), scale));
    }
    const auto scaled = hn::Mul(hn::Div(sum, pixel_count), inverse);
    const auto clamped = hn::Min(hn::Max(hn::Add(hn::Round(scaled), y_zp), lo), hi);
    hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, clamped)), d8, y + c);
  }
#endif
  for (; c < count; ++c) y[c] = qpool_internal::FloatAverageOne(x + c, pixels, channels, p);
}

void AddImpl(const uint8_t* a, const uint8_t* b, size_t n, const QAddParams& p, uint8_t* y) {
  size_t i = 0;
#if HWY_TARGET != HWY_SCALAR  // SCALAR: the shared scalar formula below (exact nearbyint)
  const hn::ScalableTag<int32_t> di;
  const hn::Rebind<float, decltype(di)> df;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  const size_t lanes = hn::Lanes(di);
  const auto a_zp = hn::Set(di, p.a_zero_point), b_zp = hn::Set(di, p.b_zero_point);
  const auto a_mult = hn::Set(df, p.a_multiplier), b_mult = hn::Set(df, p.b_multiplier);
  const auto y_mult = hn::Set(df, p.output_multiplier);
  const auto y_zp = hn::Set(df, static_cast<float>(p.output_zero_point));
  const auto lo = hn::Set(df, static_cast<float>(p.min)),
             hi = hn::Set(df, static_cast<float>(p.max));
  for (; i + lanes <= n; i += lanes) {
    const auto va = hn::Sub(hn::PromoteTo(di, hn::LoadU(d8, a + i)), a_zp);
    const auto vb = hn::Sub(hn::PromoteTo(di, hn::LoadU(d8, b + i)), b_zp);
    const auto sum =
        hn::Add(hn::Mul(hn::ConvertTo(df, va), a_mult), hn::Mul(hn::ConvertTo(df, vb), b_mult));
    const auto scaled = hn::Mul(sum, y_mult);
    const auto clamped = hn::Min(hn::Max(hn::Add(hn::Round(scaled), y_zp), lo), hi);
    hn::StoreU(hn::DemoteTo(d8, hn::ConvertTo(di, clamped)), d8, y + i);
  }
#endif
  for (; i < n; ++i) y[i] = qpool_internal::AddOne(a[i], b[i], p);
}

}  // namespace qpool_hwy

void QPoolHwyMaxPoolU8(const QPoolShape& s, const uint8_t* x, uint8_t* y, size_t row_begin,
                       size_t row_end) {
  qpool_hwy::MaxPoolImpl(s, x, y, row_begin, row_end);
}
void QPoolHwyAvgPoolSums(const uint8_t* x, size_t pixels, size_t stride, size_t count,
                         int32_t zero_point, int32_t* acc) {
  qpool_hwy::GlobalAvgPoolSums(x, pixels, stride, count, zero_point, acc);
}
void QPoolHwyAvgPoolFloat(const uint8_t* x, size_t pixels, size_t channels, size_t count,
                          const QGlobalAvgPoolParams& p, uint8_t* y) {
  qpool_hwy::GlobalAvgPoolFloat(x, pixels, channels, count, p, y);
}
void QPoolHwyAddU8(const uint8_t* a, const uint8_t* b, size_t n, const QAddParams& p, uint8_t* y) {
  qpool_hwy::AddImpl(a, b, n, p, y);
}
const char* QPoolChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(QPoolHwyMaxPoolU8);
HWY_EXPORT(QPoolHwyAvgPoolSums);
HWY_EXPORT(QPoolHwyAvgPoolFloat);
HWY_EXPORT(QPoolHwyAddU8);
HWY_EXPORT(QPoolChosenTargetName);

absl::Status ValidateQPoolShape(const QPoolShape& s) {
  if (s.batch == 0 || s.input_height == 0 || s.input_width == 0 || s.channels == 0 ||
      s.kernel_height == 0 || s.kernel_width == 0 || s.stride_height == 0 || s.stride_width == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "QPoolShape: sizes and strides must be >= 1 (batch ", s.batch, ", input ", s.input_height,
        "x", s.input_width, "x", s.channels, ", kernel ", s.kernel_height, "x", s.kernel_width,
        ", stride ", s.stride_height, "x", s.stride_width, ")"));
  }
  if (s.padding_top >= s.kernel_height || s.padding_bottom >= s.kernel_height ||
      s.padding_left >= s.kernel_width || s.padding_right >= s.kernel_width) {
    return absl::InvalidArgumentError(
        absl::StrCat("QPoolShape: padding (", s.padding_top, ", ", s.padding_left, ", ",
                     s.padding_bottom, ", ", s.padding_right, ") must be smaller than the kernel ",
                     s.kernel_height, "x", s.kernel_width));
  }
  if (s.input_height + s.padding_top + s.padding_bottom < s.kernel_height ||
      s.input_width + s.padding_left + s.padding_right < s.kernel_width) {
    return absl::InvalidArgumentError("QPoolShape: padded input smaller than the kernel");
  }
  return absl::OkStatus();
}

namespace {

// Parts of a threaded call: about four per thread (load balance), none smaller than `min_items`
// items of work, one when there is no pool.
size_t Parts(const ThreadPool* pool, size_t items, size_t min_items) {
  const size_t threads = pool != nullptr ? pool->threads() : 1;
  if (threads <= 1) return 1;
  return std::max<size_t>(1, std::min(threads * 4, items / std::max<size_t>(min_items, 1)));
}

// [begin, end) of part `i` of `parts` over `n` items, in whole multiples of `align` but the last.
std::pair<size_t, size_t> PartRange(size_t i, size_t parts, size_t n, size_t align) {
  const size_t per_part = (n / parts + align - 1) / align * align;
  const size_t begin = std::min(n, i * per_part);
  return {begin, i + 1 == parts ? n : std::min(n, begin + per_part)};
}

}  // namespace

void QMaxPoolU8_NHWC(const QPoolShape& shape, const uint8_t* x, uint8_t* y, ThreadPool* pool) {
  HWY_DASSERT(ValidateQPoolShape(shape).ok());
  const size_t rows = shape.batch * shape.output_height();
  const size_t row_bytes = shape.output_width() * shape.channels;
  // At least ~16 KiB of output per part: less does not pay for the hand-off.
  const size_t parts = Parts(pool, rows, (16384 + row_bytes - 1) / row_bytes);
  ParallelFor(parts > 1 ? pool : nullptr, parts, [&](size_t i) {
    const auto [begin, end] = PartRange(i, parts, rows, 1);
    HWY_DYNAMIC_DISPATCH(QPoolHwyMaxPoolU8)(shape, x, y, begin, end);
  });
}

void QGlobalAvgPoolU8_NHWC(const uint8_t* x, size_t batch, size_t pixels, size_t channels,
                           const QGlobalAvgPoolParams& params, int32_t* acc, uint8_t* y,
                           ThreadPool* pool) {
  // Parts are channel blocks (multiples of 64: whole vectors on every target) of every image.
  const size_t blocks_per_image = Parts(pool, channels, 64);
  const size_t parts = batch * blocks_per_image;
  const bool float_form = params.input_scale > 0.0f;
  ParallelFor(parts > 1 ? pool : nullptr, parts, [&](size_t i) {
    const size_t b = i / blocks_per_image;
    const auto [c0, c1] = PartRange(i % blocks_per_image, blocks_per_image, channels, 64);
    if (c0 >= c1) return;
    const uint8_t* image = x + b * pixels * channels + c0;
    uint8_t* out = y + b * channels + c0;
    if (float_form) {
      HWY_DYNAMIC_DISPATCH(QPoolHwyAvgPoolFloat)(image, pixels, channels, c1 - c0, params, out);
      return;
    }
    int32_t* sums = acc + b * channels + c0;
    HWY_DYNAMIC_DISPATCH(QPoolHwyAvgPoolSums)
    (image, pixels, channels, c1 - c0, params.input_zero_point, sums);
    // The requantization is kernels/quantize's (fp32 form), per tensor over every sum.
    const RequantizeOutput output{params.output_zero_point, params.min, params.max};
    Requantize(sums, ChannelDims{1, 1, c1 - c0}, &params.multiplier, output, out);
  });
}

void QAddU8(const uint8_t* a, const uint8_t* b, size_t n, const QAddParams& params, uint8_t* y,
            ThreadPool* pool) {
  // Blocks of at least 16 KiB, in multiples of 64 elements (whole vectors on every target).
  const size_t parts = Parts(pool, n, 16384);
  ParallelFor(parts > 1 ? pool : nullptr, parts, [&](size_t i) {
    const auto [begin, end] = PartRange(i, parts, n, 64);
    if (begin >= end) return;
    HWY_DYNAMIC_DISPATCH(QPoolHwyAddU8)(a + begin, b + begin, end - begin, params, y + begin);
  });
}

const char* QPoolKernelsTargetName() { return HWY_DYNAMIC_DISPATCH(QPoolChosenTargetName)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
