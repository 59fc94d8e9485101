// Highway implementations of kernels/fp32/fp32_pool.h, compiled once per target (Highway's
// skeleton: self-include through foreach_target.h, dispatch under HWY_ONCE).
//
// Each output pixel is computed for all channels at once: a vector of channels per step, the
// window walked pixel by pixel inside, then a scalar tail for channels % lanes. Rows of output
// pixels are the unit of work handed to pthreadpool.

#include "kernels/fp32/fp32_pool.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/fp32/pool_window.h"
#include "kernels/threadpool/pool_flags.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fp32/fp32_pool.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

struct Fp32PoolTask {
  const Fp32PoolGeometry* g;
  const float* input;
  float* output;
};

template <bool kMax>
void PoolRow(void* context, size_t row) {
  const Fp32PoolTask& t = *static_cast<const Fp32PoolTask*>(context);
  const Fp32PoolGeometry& g = *t.g;
  const size_t oh = row % g.out_h, b = row / g.out_h;
  const size_t c = g.channels;
  const float* image = t.input + b * g.in_h * g.in_w * c;
  const PoolWindow wh = PoolAxisWindow(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  for (size_t ow = 0; ow < g.out_w; ++ow) {
    const PoolWindow ww = PoolAxisWindow(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
    float* out = t.output + (row * g.out_w + ow) * c;
    const bool empty = wh.begin >= wh.end || ww.begin >= ww.end;
    // avg: a true division (not a multiply by 1 / divisor) matches the interpreter bit for bit.
    float scale = 1.0f;
    int64_t divisor = 1;
    if (!kMax) {
      divisor = g.count_include_pad ? (wh.padded_end - wh.start) * (ww.padded_end - ww.start)
                                    : (wh.end - wh.begin) * (ww.end - ww.begin);
      scale = static_cast<float>(divisor);
    }
    const auto pixel = [&](int64_t h, int64_t w) {
      return image + (static_cast<size_t>(h) * g.in_w + static_cast<size_t>(w)) * c;
    };
    size_t ch = 0;
    for (; ch + lanes <= c; ch += lanes) {
      auto acc = kMax ? hn::Set(d, -std::numeric_limits<float>::infinity()) : hn::Zero(d);
      for (int64_t h = wh.begin; h < wh.end; ++h) {
        for (int64_t w = ww.begin; w < ww.end; ++w) {
          const auto v = hn::LoadU(d, pixel(h, w) + ch);
          acc = kMax ? hn::Max(acc, v) : hn::Add(acc, v);
        }
      }
      if (!kMax) acc = empty ? hn::Zero(d) : hn::Div(acc, hn::Set(d, scale));
      hn::StoreU(acc, d, out + ch);
    }
    for (; ch < c; ++ch) {
      float acc = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
      for (int64_t h = wh.begin; h < wh.end; ++h) {
        for (int64_t w = ww.begin; w < ww.end; ++w) {
          const float v = pixel(h, w)[ch];
          acc = kMax ? std::max(acc, v) : acc + v;
        }
      }
      if (!kMax) acc = empty ? 0.0f : acc / scale;
      out[ch] = acc;
    }
  }
}

void Fp32PoolDriver(const Fp32PoolGeometry& g, const float* input, float* output, bool max,
                    pthreadpool_t pool) {
  Fp32PoolTask task{&g, input, output};
  pthreadpool_parallelize_1d(pool, max ? &PoolRow<true> : &PoolRow<false>, &task, g.batch * g.out_h,
                             PoolFlags(pool));
}

void Fp32GlobalAvgPoolImpl(size_t batch, size_t pixels, size_t channels, const float* input,
                           float* output) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const float count = static_cast<float>(pixels);
  for (size_t b = 0; b < batch; ++b) {
    const float* image = input + b * pixels * channels;
    float* out = output + b * channels;
    size_t ch = 0;
    for (; ch + lanes <= channels; ch += lanes) {
      auto acc = hn::Zero(d);
      for (size_t p = 0; p < pixels; ++p)
        acc = hn::Add(acc, hn::LoadU(d, image + p * channels + ch));
      hn::StoreU(hn::Div(acc, hn::Set(d, count)), d, out + ch);
    }
    for (; ch < channels; ++ch) {
      float acc = 0.0f;
      for (size_t p = 0; p < pixels; ++p) acc += image[p * channels + ch];
      out[ch] = acc / count;
    }
  }
}

const char* Fp32PoolChosenTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(Fp32PoolDriver);
HWY_EXPORT(Fp32GlobalAvgPoolImpl);
HWY_EXPORT(Fp32PoolChosenTarget);

void Fp32MaxPool2dNhwc(const Fp32PoolGeometry& geometry, const float* input, float* output,
                       pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(Fp32PoolDriver)(geometry, input, output, /*max=*/true, pool);
}

void Fp32AvgPool2dNhwc(const Fp32PoolGeometry& geometry, const float* input, float* output,
                       pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(Fp32PoolDriver)(geometry, input, output, /*max=*/false, pool);
}

void Fp32GlobalAvgPoolNhwc(size_t batch, size_t pixels, size_t channels, const float* input,
                           float* output) {
  HWY_DYNAMIC_DISPATCH(Fp32GlobalAvgPoolImpl)(batch, pixels, channels, input, output);
}

const char* Fp32PoolTargetName() { return HWY_DYNAMIC_DISPATCH(Fp32PoolChosenTarget)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
