// Highway implementations of kernels/quantize/quantize.h, compiled once per target.
//
// Layout follows Highway's skeleton: this file includes itself through foreach_target.h, the SIMD
// code lives in qlab::kernels::HWY_NAMESPACE, and the public functions at the bottom (compiled
// once, under HWY_ONCE) dispatch with HWY_DYNAMIC_DISPATCH.
//
// All element-wise kernels share one driver, ForEachChannelVector, which walks a tensor viewed as
// [outer, channels, inner]: when the channel is the innermost axis (NHWC) the per-channel
// parameters are loaded as vectors, otherwise they are broadcast once per run of `inner` elements.
// Remainders are processed with a one-lane descriptor running the same vector code, so the tail
// rounds exactly like the body.

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/quantize/quantize.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quantize/quantize.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Walks `dims` calling kernel(d, element_index, params) on every vector, with params from
// kernel.LoadParams(d, first_channel) (channel innermost) or kernel.BroadcastParams(d, channel).
template <class Kernel>
HWY_INLINE void ForEachChannelVector(ChannelDims dims, const Kernel& kernel) {
  if (dims.channels == 1) dims = ChannelDims{1, 1, dims.size()};
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(d);
  if (dims.inner == 1) {
    for (size_t o = 0; o < dims.outer; ++o) {
      const size_t row = o * dims.channels;
      size_t c = 0;
      for (; c + lanes <= dims.channels; c += lanes) kernel(d, row + c, kernel.LoadParams(d, c));
      for (; c < dims.channels; ++c) kernel(d1, row + c, kernel.LoadParams(d1, c));
    }
    return;
  }
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const size_t start = (o * dims.channels + c) * dims.inner;
      const auto params = kernel.BroadcastParams(d, c);
      const auto params1 = kernel.BroadcastParams(d1, c);
      size_t k = 0;
      for (; k + lanes <= dims.inner; k += lanes) kernel(d, start + k, params);
      for (; k < dims.inner; ++k) kernel(d1, start + k, params1);
    }
  }
}

// Loads lanes of int8/uint8/int32 values widened to int32 lanes of `d`'s shape.
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> LoadAsInt32(D /*d*/, const int8_t* p) {
  return hn::PromoteTo(hn::RebindToSigned<D>(), hn::LoadU(hn::Rebind<int8_t, D>(), p));
}
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> LoadAsInt32(D /*d*/, const uint8_t* p) {
  return hn::PromoteTo(hn::RebindToSigned<D>(), hn::LoadU(hn::Rebind<uint8_t, D>(), p));
}
template <class D>
HWY_INLINE hn::Vec<hn::RebindToSigned<D>> LoadAsInt32(D /*d*/, const int32_t* p) {
  return hn::LoadU(hn::RebindToSigned<D>(), p);
}

// Stores int32 lanes whose values already lie in Q's range as Q.
template <class D, typename Q>
HWY_INLINE void StoreNarrowed(D /*d*/, hn::Vec<hn::RebindToSigned<D>> v, Q* p) {
  const hn::Rebind<Q, D> dq;
  hn::StoreU(hn::DemoteTo(dq, v), dq, p);
}

// nearbyint(scaled) + zero_point clamped to [qmin, qmax], all in float (exact: see quantize.h).
template <class D>
HWY_INLINE hn::Vec<D> RoundShiftClamp(hn::Vec<D> scaled, hn::Vec<D> zero_point, hn::Vec<D> qmin,
                                      hn::Vec<D> qmax) {
  return hn::Min(hn::Max(hn::Add(hn::Round(scaled), zero_point), qmin), qmax);
}

template <class D>
struct AffineVecs {
  hn::Vec<D> scale;
  hn::Vec<D> inv_scale;
  hn::Vec<D> zero_point;  // as float
};

// Per-channel affine parameters as vectors; shared by quantize and fake-quantize.
struct AffineParamSource {
  const float* scales;
  const int32_t* zero_points;

  template <class D>
  HWY_INLINE AffineVecs<D> LoadParams(D d, size_t c) const {
    const auto scale = hn::LoadU(d, scales + c);
    return {scale, hn::Div(hn::Set(d, 1.0f), scale),
            hn::ConvertTo(d, hn::LoadU(hn::RebindToSigned<D>(), zero_points + c))};
  }
  template <class D>
  HWY_INLINE AffineVecs<D> BroadcastParams(D d, size_t c) const {
    return {hn::Set(d, scales[c]), hn::Set(d, 1.0f / scales[c]),
            hn::Set(d, static_cast<float>(zero_points[c]))};
  }
};

template <typename Q>
struct QuantizeKernel : AffineParamSource {
  const float* x;
  float qmin;
  float qmax;
  Q* y;

  template <class D>
  HWY_INLINE void operator()(D d, size_t i, const AffineVecs<D>& p) const {
    const auto v = hn::LoadU(d, x + i);
    const auto finite_or_inf = hn::IfThenZeroElse(hn::IsNaN(v), v);
    const auto q = RoundShiftClamp<D>(hn::Mul(finite_or_inf, p.inv_scale), p.zero_point,
                                      hn::Set(d, qmin), hn::Set(d, qmax));
    StoreNarrowed(d, hn::ConvertTo(hn::RebindToSigned<D>(), q), y + i);
  }
};

template <typename Q>
void QuantizeImpl(const float* x, const ChannelDims& dims, const PerChannelAffineParams& params,
                  Q* y) {
  const QuantizeKernel<Q> kernel{{params.scales, params.zero_points},
                                 x,
                                 static_cast<float>(params.quant_min),
                                 static_cast<float>(params.quant_max),
                                 y};
  ForEachChannelVector(dims, kernel);
}
void QuantizeToS8(const float* x, const ChannelDims& dims, const PerChannelAffineParams& params,
                  int8_t* y) {
  QuantizeImpl(x, dims, params, y);
}
void QuantizeToU8(const float* x, const ChannelDims& dims, const PerChannelAffineParams& params,
                  uint8_t* y) {
  QuantizeImpl(x, dims, params, y);
}

struct FakeQuantizeKernel : AffineParamSource {
  const float* x;
  float qmin;
  float qmax;
  float* y;
  uint8_t* mask;

  template <class D>
  HWY_INLINE void operator()(D d, size_t i, const AffineVecs<D>& p) const {
    const auto v = hn::LoadU(d, x + i);
    const auto vqmin = hn::Set(d, qmin);
    const auto vqmax = hn::Set(d, qmax);
    const auto finite_or_inf = hn::IfThenZeroElse(hn::IsNaN(v), v);
    const auto q =
        RoundShiftClamp<D>(hn::Mul(finite_or_inf, p.inv_scale), p.zero_point, vqmin, vqmax);
    hn::StoreU(hn::Mul(hn::Sub(q, p.zero_point), p.scale), d, y + i);
    if (mask != nullptr) {
      // NaN compares false, so it gets a zero mask like the clipped values.
      const auto unclamped = hn::Add(hn::Round(hn::Mul(v, p.inv_scale)), p.zero_point);
      const auto inside = hn::And(hn::Ge(unclamped, vqmin), hn::Le(unclamped, vqmax));
      const hn::RebindToSigned<D> di;
      StoreNarrowed(d, hn::IfThenElseZero(hn::RebindMask(di, inside), hn::Set(di, 1)), mask + i);
    }
  }
};

void FakeQuantizeImpl(const float* x, const ChannelDims& dims,
                      const PerChannelAffineParams& params, float* y, uint8_t* mask) {
  const FakeQuantizeKernel kernel{{params.scales, params.zero_points},
                                  x,
                                  static_cast<float>(params.quant_min),
                                  static_cast<float>(params.quant_max),
                                  y,
                                  mask};
  ForEachChannelVector(dims, kernel);
}

template <class D>
struct DequantizeVecs {
  hn::Vec<D> scale;
  hn::Vec<hn::RebindToSigned<D>> zero_point;
};

template <typename Q>
struct DequantizeKernel {
  const Q* q;
  const float* scales;
  const int32_t* zero_points;
  float* y;

  template <class D>
  HWY_INLINE DequantizeVecs<D> LoadParams(D d, size_t c) const {
    return {hn::LoadU(d, scales + c), hn::LoadU(hn::RebindToSigned<D>(), zero_points + c)};
  }
  template <class D>
  HWY_INLINE DequantizeVecs<D> BroadcastParams(D d, size_t c) const {
    return {hn::Set(d, scales[c]), hn::Set(hn::RebindToSigned<D>(), zero_points[c])};
  }
  template <class D>
  HWY_INLINE void operator()(D d, size_t i, const DequantizeVecs<D>& p) const {
    const auto centered = hn::Sub(LoadAsInt32(d, q + i), p.zero_point);
    hn::StoreU(hn::Mul(hn::ConvertTo(d, centered), p.scale), d, y + i);
  }
};

template <typename Q>
void DequantizeImpl(const Q* q, const ChannelDims& dims, const float* scales,
                    const int32_t* zero_points, float* y) {
  ForEachChannelVector(dims, DequantizeKernel<Q>{q, scales, zero_points, y});
}
void DequantizeS8(const int8_t* q, const ChannelDims& dims, const float* scales,
                  const int32_t* zero_points, float* y) {
  DequantizeImpl(q, dims, scales, zero_points, y);
}
void DequantizeU8(const uint8_t* q, const ChannelDims& dims, const float* scales,
                  const int32_t* zero_points, float* y) {
  DequantizeImpl(q, dims, scales, zero_points, y);
}
void DequantizeS32(const int32_t* q, const ChannelDims& dims, const float* scales,
                   const int32_t* zero_points, float* y) {
  DequantizeImpl(q, dims, scales, zero_points, y);
}

template <class D>
struct MultiplierVec {
  hn::Vec<D> multiplier;
};

template <typename Q>
struct RequantizeKernel {
  const int32_t* acc;
  const float* multipliers;
  float zero_point;
  float qmin;
  float qmax;
  Q* y;

  template <class D>
  HWY_INLINE MultiplierVec<D> LoadParams(D d, size_t c) const {
    return {hn::LoadU(d, multipliers + c)};
  }
  template <class D>
  HWY_INLINE MultiplierVec<D> BroadcastParams(D d, size_t c) const {
    return {hn::Set(d, multipliers[c])};
  }
  template <class D>
  HWY_INLINE void operator()(D d, size_t i, const MultiplierVec<D>& p) const {
    const hn::RebindToSigned<D> di;
    const auto scaled = hn::Mul(hn::ConvertTo(d, hn::LoadU(di, acc + i)), p.multiplier);
    const auto q =
        RoundShiftClamp<D>(scaled, hn::Set(d, zero_point), hn::Set(d, qmin), hn::Set(d, qmax));
    StoreNarrowed(d, hn::ConvertTo(di, q), y + i);
  }
};

template <typename Q>
void RequantizeImpl(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                    const RequantizeOutput& output, Q* y) {
  const RequantizeKernel<Q> kernel{acc,
                                   multipliers,
                                   static_cast<float>(output.zero_point),
                                   static_cast<float>(output.quant_min),
                                   static_cast<float>(output.quant_max),
                                   y};
  ForEachChannelVector(dims, kernel);
}
void RequantizeToS8(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                    const RequantizeOutput& output, int8_t* y) {
  RequantizeImpl(acc, dims, multipliers, output, y);
}
void RequantizeToU8(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                    const RequantizeOutput& output, uint8_t* y) {
  RequantizeImpl(acc, dims, multipliers, output, y);
}

template <class D>
struct FixedPointVecs {
  hn::Vec<hn::RebindToSigned<D>> multiplier;
  hn::Vec<hn::RebindToSigned<D>> shift;
};

// Rounding right shift of 64-bit products: (p + 2^(s-1)) >> s computed as ((p >> (s-1)) + 1) >> 1,
// which is equal for every p and needs no variable left shift (absent for int64 on x86).
template <class D64>
HWY_INLINE hn::Vec<D64> RoundingShiftRight(D64 d64, hn::Vec<D64> product, hn::Vec<D64> shift) {
  const auto one = hn::Set(d64, 1);
  return hn::ShiftRight<1>(hn::Add(hn::operator>>(product, hn::Sub(shift, one)), one));
}

template <typename Q>
struct RequantizeFixedPointKernel {
  const int32_t* acc;
  const int32_t* multipliers;
  const int32_t* shifts;
  int32_t zero_point;
  int32_t low;   // quant_min - zero_point: the clamp happens before adding the zero point
  int32_t high;  // quant_max - zero_point   so that the addition cannot overflow.
  Q* y;

  template <class D>
  HWY_INLINE FixedPointVecs<D> LoadParams(D /*d*/, size_t c) const {
    const hn::RebindToSigned<D> di;
    return {hn::LoadU(di, multipliers + c), hn::LoadU(di, shifts + c)};
  }
  template <class D>
  HWY_INLINE FixedPointVecs<D> BroadcastParams(D /*d*/, size_t c) const {
    const hn::RebindToSigned<D> di;
    return {hn::Set(di, multipliers[c]), hn::Set(di, shifts[c])};
  }

  template <class D>
  HWY_INLINE void operator()([[maybe_unused]] D d, size_t i, const FixedPointVecs<D>& p) const {
    if constexpr (hn::MaxLanes(D()) == 1) {
      // One lane (remainders, and the SCALAR target): the same integer math without lanes to
      // pair up. Integer arithmetic is exact, so this matches the vector path bit for bit.
      const int32_t shift = hn::GetLane(p.shift);
      const int64_t product = static_cast<int64_t>(acc[i]) * hn::GetLane(p.multiplier);
      const int64_t scaled = ((product >> (shift - 1)) + 1) >> 1;
      const int64_t clamped = std::min<int64_t>(std::max<int64_t>(scaled, low), high);
      y[i] = static_cast<Q>(clamped + zero_point);
    } else {
#if HWY_TARGET != HWY_SCALAR  // SCALAR vectors have one lane: never reaches this branch.
      const hn::RebindToSigned<D> di;
      // 32x32->64-bit products of the even lanes, then of the odd lanes moved to even positions.
      const hn::RepartitionToWide<decltype(di)> d64;
      const auto a = hn::LoadU(di, acc + i);
      const auto product_even = hn::MulEven(a, p.multiplier);
      const auto product_odd = hn::MulEven(hn::Shuffle2301(a), hn::Shuffle2301(p.multiplier));
      const auto shift_pairs = hn::BitCast(d64, p.shift);
      const auto shift_even = hn::And(shift_pairs, hn::Set(d64, 0xFFFFFFFFLL));
      const auto shift_odd = hn::ShiftRight<32>(shift_pairs);
      const auto scaled_even = RoundingShiftRight(d64, product_even, shift_even);
      const auto scaled_odd = RoundingShiftRight(d64, product_odd, shift_odd);
      // |scaled| <= 2^31 - 1 since shift >= 31: the low halves hold the int32 results.
      const auto scaled = hn::OddEven(hn::BitCast(di, hn::ShiftLeft<32>(scaled_odd)),
                                      hn::BitCast(di, scaled_even));
      const auto clamped = hn::Min(hn::Max(scaled, hn::Set(di, low)), hn::Set(di, high));
      StoreNarrowed(d, hn::Add(clamped, hn::Set(di, zero_point)), y + i);
#endif
    }
  }
};

template <typename Q>
void RequantizeFixedPointImpl(const int32_t* acc, const ChannelDims& dims,
                              const int32_t* multipliers, const int32_t* shifts,
                              const RequantizeOutput& output, Q* y) {
  const RequantizeFixedPointKernel<Q> kernel{acc,
                                             multipliers,
                                             shifts,
                                             output.zero_point,
                                             output.quant_min - output.zero_point,
                                             output.quant_max - output.zero_point,
                                             y};
  ForEachChannelVector(dims, kernel);
}
void RequantizeFixedPointToS8(const int32_t* acc, const ChannelDims& dims,
                              const int32_t* multipliers, const int32_t* shifts,
                              const RequantizeOutput& output, int8_t* y) {
  RequantizeFixedPointImpl(acc, dims, multipliers, shifts, output, y);
}
void RequantizeFixedPointToU8(const int32_t* acc, const ChannelDims& dims,
                              const int32_t* multipliers, const int32_t* shifts,
                              const RequantizeOutput& output, uint8_t* y) {
  RequantizeFixedPointImpl(acc, dims, multipliers, shifts, output, y);
}

// Reduces x[0, n) into running min/max vectors; returns whether any lane was NaN (the min/max are
// then meaningless: NaN poisons SIMD min/max in target-specific ways). Four independent
// accumulator pairs hide the latency of min/max.
template <class D>
HWY_INLINE bool AccumulateMinMax(D d, const float* x, size_t n, hn::Vec<D>& vmin,
                                 hn::Vec<D>& vmax) {
  const size_t lanes = hn::Lanes(d);
  auto min1 = vmin, min2 = vmin, min3 = vmin;
  auto max1 = vmax, max2 = vmax, max3 = vmax;
  auto nan = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    const auto v0 = hn::LoadU(d, x + i);
    const auto v1 = hn::LoadU(d, x + i + lanes);
    const auto v2 = hn::LoadU(d, x + i + 2 * lanes);
    const auto v3 = hn::LoadU(d, x + i + 3 * lanes);
    vmin = hn::Min(vmin, v0);
    min1 = hn::Min(min1, v1);
    min2 = hn::Min(min2, v2);
    min3 = hn::Min(min3, v3);
    vmax = hn::Max(vmax, v0);
    max1 = hn::Max(max1, v1);
    max2 = hn::Max(max2, v2);
    max3 = hn::Max(max3, v3);
    // (Not Ne(v, v): Highway's float Ne is an ordered compare, false for NaN.)
    nan = hn::Or(nan, hn::Or(hn::Or(hn::VecFromMask(d, hn::IsNaN(v0)),
                                    hn::VecFromMask(d, hn::IsNaN(v1))),
                             hn::Or(hn::VecFromMask(d, hn::IsNaN(v2)),
                                    hn::VecFromMask(d, hn::IsNaN(v3)))));
  }
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    vmin = hn::Min(vmin, v);
    vmax = hn::Max(vmax, v);
    nan = hn::Or(nan, hn::VecFromMask(d, hn::IsNaN(v)));
  }
  vmin = hn::Min(hn::Min(vmin, min1), hn::Min(min2, min3));
  vmax = hn::Max(hn::Max(vmax, max1), hn::Max(max2, max3));
  bool any_nan = !hn::AllFalse(d, hn::MaskFromVec(nan));
  for (; i < n; ++i) {  // fewer than `lanes` left
    any_nan |= x[i] != x[i];
    vmin = hn::Min(vmin, hn::Set(d, x[i]));
    vmax = hn::Max(vmax, hn::Set(d, x[i]));
  }
  return any_nan;
}

// The slow path once AccumulateMinMax saw a NaN: NaN lanes are replaced by the identity of each
// reduction (+Inf for min, -Inf for max) and counted. Returns the number of NaNs.
template <class D>
HWY_INLINE size_t AccumulateMinMaxSkippingNaN(D d, const float* x, size_t n, hn::Vec<D>& vmin,
                                              hn::Vec<D>& vmax) {
  const size_t lanes = hn::Lanes(d);
  const auto pos_inf = hn::Set(d, std::numeric_limits<float>::infinity());
  const auto neg_inf = hn::Neg(pos_inf);
  size_t nan_count = 0;
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    const auto is_nan = hn::IsNaN(v);
    nan_count += hn::CountTrue(d, is_nan);
    vmin = hn::Min(vmin, hn::IfThenElse(is_nan, pos_inf, v));
    vmax = hn::Max(vmax, hn::IfThenElse(is_nan, neg_inf, v));
  }
  for (; i < n; ++i) {
    if (x[i] != x[i]) {
      ++nan_count;
      continue;
    }
    vmin = hn::Min(vmin, hn::Set(d, x[i]));
    vmax = hn::Max(vmax, hn::Set(d, x[i]));
  }
  return nan_count;
}

MinMaxResult MinMaxImpl(const float* x, size_t n) {
  const hn::ScalableTag<float> d;
  const auto pos_inf = hn::Set(d, std::numeric_limits<float>::infinity());
  auto vmin = pos_inf;
  auto vmax = hn::Neg(pos_inf);
  size_t nan_count = 0;
  if (AccumulateMinMax(d, x, n, vmin, vmax)) {
    vmin = pos_inf;
    vmax = hn::Neg(pos_inf);
    nan_count = AccumulateMinMaxSkippingNaN(d, x, n, vmin, vmax);
  }
  return {hn::GetLane(hn::MinOfLanes(d, vmin)), hn::GetLane(hn::MaxOfLanes(d, vmax)), nan_count};
}

// Channels innermost (NHWC): per-channel running min/max rows in mins/maxs, updated a vector of
// channels at a time. With kSkipNaN, NaN lanes are ignored and counted; without, the return value
// only says whether a NaN was seen (mins/maxs are then meaningless).
template <bool kSkipNaN, class D>
HWY_INLINE size_t UpdateChannelMinMax(D d, const float* row, size_t c, float* mins,
                                      float* maxs) {
  const auto v = hn::LoadU(d, row + c);
  const auto is_nan = hn::IsNaN(v);
  auto for_min = v;
  auto for_max = v;
  if constexpr (kSkipNaN) {
    const auto pos_inf = hn::Set(d, std::numeric_limits<float>::infinity());
    for_min = hn::IfThenElse(is_nan, pos_inf, v);
    for_max = hn::IfThenElse(is_nan, hn::Neg(pos_inf), v);
  }
  hn::StoreU(hn::Min(hn::LoadU(d, mins + c), for_min), d, mins + c);
  hn::StoreU(hn::Max(hn::LoadU(d, maxs + c), for_max), d, maxs + c);
  if constexpr (kSkipNaN) return hn::CountTrue(d, is_nan);
  return hn::AllFalse(d, is_nan) ? 0 : 1;
}

template <bool kSkipNaN>
size_t MinMaxChannelsInnermost(const float* x, const ChannelDims& dims, float* mins,
                               float* maxs) {
  const hn::ScalableTag<float> d;
  const hn::CappedTag<float, 1> d1;
  const size_t lanes = hn::Lanes(d);
  size_t nans = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    const float* row = x + o * dims.channels;
    size_t c = 0;
    for (; c + lanes <= dims.channels; c += lanes) {
      nans += UpdateChannelMinMax<kSkipNaN>(d, row, c, mins, maxs);
    }
    for (; c < dims.channels; ++c) nans += UpdateChannelMinMax<kSkipNaN>(d1, row, c, mins, maxs);
  }
  return nans;
}

size_t MinMaxPerChannelImpl(const float* x, const ChannelDims& dims, float* mins, float* maxs) {
  const float inf = std::numeric_limits<float>::infinity();
  const auto reset = [&] {
    std::fill(mins, mins + dims.channels, inf);
    std::fill(maxs, maxs + dims.channels, -inf);
  };
  reset();
  if (dims.inner == 1) {
    if (MinMaxChannelsInnermost</*kSkipNaN=*/false>(x, dims, mins, maxs) == 0) return 0;
    reset();
    return MinMaxChannelsInnermost</*kSkipNaN=*/true>(x, dims, mins, maxs);
  }
  const hn::ScalableTag<float> d;
  size_t nan_count = 0;
  for (size_t o = 0; o < dims.outer; ++o) {
    for (size_t c = 0; c < dims.channels; ++c) {
      const float* run = x + (o * dims.channels + c) * dims.inner;
      auto vmin = hn::Set(d, mins[c]);
      auto vmax = hn::Set(d, maxs[c]);
      if (AccumulateMinMax(d, run, dims.inner, vmin, vmax)) {
        vmin = hn::Set(d, mins[c]);
        vmax = hn::Set(d, maxs[c]);
        nan_count += AccumulateMinMaxSkippingNaN(d, run, dims.inner, vmin, vmax);
      }
      mins[c] = hn::GetLane(hn::MinOfLanes(d, vmin));
      maxs[c] = hn::GetLane(hn::MaxOfLanes(d, vmax));
    }
  }
  return nan_count;
}

// For tools/cpu_info and benchmark labels: the target this dispatch table resolved to.
const char* ChosenTargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(QuantizeToS8);
HWY_EXPORT(QuantizeToU8);
HWY_EXPORT(FakeQuantizeImpl);
HWY_EXPORT(DequantizeS8);
HWY_EXPORT(DequantizeU8);
HWY_EXPORT(DequantizeS32);
HWY_EXPORT(RequantizeToS8);
HWY_EXPORT(RequantizeToU8);
HWY_EXPORT(RequantizeFixedPointToS8);
HWY_EXPORT(RequantizeFixedPointToU8);
HWY_EXPORT(MinMaxImpl);
HWY_EXPORT(MinMaxPerChannelImpl);
HWY_EXPORT(ChosenTargetName);

namespace {
ChannelDims PerTensorDims(size_t n) { return ChannelDims{1, 1, n}; }
PerChannelAffineParams AsPerChannel(const AffineParams& p) {
  return {&p.scale, &p.zero_point, p.quant_min, p.quant_max};
}
}  // namespace

void Quantize(const float* x, size_t n, const AffineParams& params, int8_t* y) {
  HWY_DYNAMIC_DISPATCH(QuantizeToS8)(x, PerTensorDims(n), AsPerChannel(params), y);
}
void Quantize(const float* x, size_t n, const AffineParams& params, uint8_t* y) {
  HWY_DYNAMIC_DISPATCH(QuantizeToU8)(x, PerTensorDims(n), AsPerChannel(params), y);
}
void QuantizePerChannel(const float* x, const ChannelDims& dims,
                        const PerChannelAffineParams& params, int8_t* y) {
  HWY_DYNAMIC_DISPATCH(QuantizeToS8)(x, dims, params, y);
}
void QuantizePerChannel(const float* x, const ChannelDims& dims,
                        const PerChannelAffineParams& params, uint8_t* y) {
  HWY_DYNAMIC_DISPATCH(QuantizeToU8)(x, dims, params, y);
}

void Dequantize(const int8_t* q, size_t n, float scale, int32_t zero_point, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeS8)(q, PerTensorDims(n), &scale, &zero_point, y);
}
void Dequantize(const uint8_t* q, size_t n, float scale, int32_t zero_point, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeU8)(q, PerTensorDims(n), &scale, &zero_point, y);
}
void Dequantize(const int32_t* q, size_t n, float scale, int32_t zero_point, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeS32)(q, PerTensorDims(n), &scale, &zero_point, y);
}
void DequantizePerChannel(const int8_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeS8)(q, dims, scales, zero_points, y);
}
void DequantizePerChannel(const uint8_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeU8)(q, dims, scales, zero_points, y);
}
void DequantizePerChannel(const int32_t* q, const ChannelDims& dims, const float* scales,
                          const int32_t* zero_points, float* y) {
  HWY_DYNAMIC_DISPATCH(DequantizeS32)(q, dims, scales, zero_points, y);
}

void FakeQuantize(const float* x, size_t n, const AffineParams& params, float* y,
                  uint8_t* mask) {
  HWY_DYNAMIC_DISPATCH(FakeQuantizeImpl)(x, PerTensorDims(n), AsPerChannel(params), y, mask);
}
void FakeQuantizePerChannel(const float* x, const ChannelDims& dims,
                            const PerChannelAffineParams& params, float* y, uint8_t* mask) {
  HWY_DYNAMIC_DISPATCH(FakeQuantizeImpl)(x, dims, params, y, mask);
}

void Requantize(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                const RequantizeOutput& output, int8_t* y) {
  HWY_DYNAMIC_DISPATCH(RequantizeToS8)(acc, dims, multipliers, output, y);
}
void Requantize(const int32_t* acc, const ChannelDims& dims, const float* multipliers,
                const RequantizeOutput& output, uint8_t* y) {
  HWY_DYNAMIC_DISPATCH(RequantizeToU8)(acc, dims, multipliers, output, y);
}
void RequantizeFixedPoint(const int32_t* acc, const ChannelDims& dims,
                          const int32_t* multipliers, const int32_t* shifts,
                          const RequantizeOutput& output, int8_t* y) {
  HWY_DYNAMIC_DISPATCH(RequantizeFixedPointToS8)(acc, dims, multipliers, shifts, output, y);
}
void RequantizeFixedPoint(const int32_t* acc, const ChannelDims& dims,
                          const int32_t* multipliers, const int32_t* shifts,
                          const RequantizeOutput& output, uint8_t* y) {
  HWY_DYNAMIC_DISPATCH(RequantizeFixedPointToU8)(acc, dims, multipliers, shifts, output, y);
}

MinMaxResult MinMax(const float* x, size_t n) { return HWY_DYNAMIC_DISPATCH(MinMaxImpl)(x, n); }
size_t MinMaxPerChannel(const float* x, const ChannelDims& dims, float* mins, float* maxs) {
  return HWY_DYNAMIC_DISPATCH(MinMaxPerChannelImpl)(x, dims, mins, maxs);
}

const char* QuantizeKernelsTargetName() { return HWY_DYNAMIC_DISPATCH(ChosenTargetName)(); }

}  // namespace qlab::kernels
#endif  // HWY_ONCE
