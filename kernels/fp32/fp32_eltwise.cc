// Highway implementations of kernels/fp32/fp32_eltwise.h, compiled once per target (Highway's
// skeleton: self-include through foreach_target.h, dispatch under HWY_ONCE).

#include "kernels/fp32/fp32_eltwise.h"

#include <algorithm>
#include <cstddef>

#include "kernels/threadpool/pool_flags.h"

// Shared by every target (the exported function's parameter type must be one type).
#ifndef QLAB_KERNELS_FP32_FP32_ELTWISE_CC_SHARED_
#define QLAB_KERNELS_FP32_FP32_ELTWISE_CC_SHARED_
namespace qlab::kernels::fp32_eltwise_internal {
struct Fp32EltwiseTask {
  const float* a;
  const float* b;      // add: second operand; affine: scale
  const float* shift;  // affine only
  size_t n;            // elements (affine: pixels * channels)
  size_t channels;     // affine only
  bool relu;
  float* out;
};
}  // namespace qlab::kernels::fp32_eltwise_internal
#endif  // QLAB_KERNELS_FP32_FP32_ELTWISE_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fp32/fp32_eltwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using fp32_eltwise_internal::Fp32EltwiseTask;

// Elements per task: 64 KiB of each operand, large enough that scheduling costs nothing.
constexpr size_t kChunk = 16384;

// Binary add (b != null) or ReLU (b == null) of elements [begin, end).
void AddRange(const Fp32EltwiseTask& t, size_t begin, size_t end) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const auto zero = hn::Zero(d);
  size_t i = begin;
  for (; i + lanes <= end; i += lanes) {
    auto v = hn::LoadU(d, t.a + i);
    if (t.b != nullptr) v = hn::Add(v, hn::LoadU(d, t.b + i));
    if (t.relu) v = hn::Max(v, zero);
    hn::StoreU(v, d, t.out + i);
  }
  for (; i < end; ++i) {
    float v = t.a[i];
    if (t.b != nullptr) v += t.b[i];
    if (t.relu) v = std::max(v, 0.0f);
    t.out[i] = v;
  }
}

void AddChunk(void* context, size_t chunk) {
  const Fp32EltwiseTask& t = *static_cast<const Fp32EltwiseTask*>(context);
  AddRange(t, chunk * kChunk, std::min(t.n, (chunk + 1) * kChunk));
}

// Pixels [begin, end) of the affine op.
void AffinePixels(const Fp32EltwiseTask& t, size_t begin, size_t end) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const size_t c = t.channels;
  for (size_t p = begin; p < end; ++p) {
    const float* x = t.a + p * c;
    float* y = t.out + p * c;
    size_t ch = 0;
    for (; ch + lanes <= c; ch += lanes) {
      // Mul then Add (not MulAdd): the interpreter rounds the product first.
      auto v = hn::Add(hn::Mul(hn::LoadU(d, x + ch), hn::LoadU(d, t.b + ch)),
                       hn::LoadU(d, t.shift + ch));
      if (t.relu) v = hn::Max(v, hn::Zero(d));
      hn::StoreU(v, d, y + ch);
    }
    for (; ch < c; ++ch) {
      const float product = x[ch] * t.b[ch];
      float v = product + t.shift[ch];
      if (t.relu) v = std::max(v, 0.0f);
      y[ch] = v;
    }
  }
}

void AffineChunk(void* context, size_t chunk) {
  const Fp32EltwiseTask& t = *static_cast<const Fp32EltwiseTask*>(context);
  const size_t pixels_per_chunk = std::max<size_t>(1, kChunk / std::max<size_t>(1, t.channels));
  const size_t pixels = t.n / std::max<size_t>(1, t.channels);
  AffinePixels(t, chunk * pixels_per_chunk, std::min(pixels, (chunk + 1) * pixels_per_chunk));
}

void Fp32EltwiseDriver(const Fp32EltwiseTask& t, bool affine, pthreadpool_t pool) {
  if (t.n == 0) return;
  Fp32EltwiseTask task = t;
  if (affine) {
    const size_t pixels_per_chunk = std::max<size_t>(1, kChunk / task.channels);
    const size_t pixels = task.n / task.channels;
    pthreadpool_parallelize_1d(pool, &AffineChunk, &task,
                               (pixels + pixels_per_chunk - 1) / pixels_per_chunk, PoolFlags(pool));
  } else {
    pthreadpool_parallelize_1d(pool, &AddChunk, &task, (task.n + kChunk - 1) / kChunk,
                               PoolFlags(pool));
  }
}

const char* Fp32EltwiseChosenTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(Fp32EltwiseDriver);
HWY_EXPORT(Fp32EltwiseChosenTarget);

void Fp32Add(const float* a, const float* b, size_t n, bool relu, float* out, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(Fp32EltwiseDriver)
  (fp32_eltwise_internal::Fp32EltwiseTask{a, b, nullptr, n, 0, relu, out}, false, pool);
}

void Fp32Relu(const float* x, size_t n, float* out, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(Fp32EltwiseDriver)
  (fp32_eltwise_internal::Fp32EltwiseTask{x, nullptr, nullptr, n, 0, true, out}, false, pool);
}

void Fp32ChannelAffine(const float* x, size_t pixels, size_t channels, const float* scale,
                       const float* shift, bool relu, float* out, pthreadpool_t pool) {
  if (channels == 0) return;
  HWY_DYNAMIC_DISPATCH(Fp32EltwiseDriver)
  (fp32_eltwise_internal::Fp32EltwiseTask{x, scale, shift, pixels * channels, channels, relu, out},
   true, pool);
}

const char* Fp32EltwiseTargetName() { return HWY_DYNAMIC_DISPATCH(Fp32EltwiseChosenTarget)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
