// Highway implementation of kernels/histogram/torch_l2_error.h, compiled once per target
// (Highway's skeleton: this file re-includes itself through foreach_target.h).
//
// Vectors of doubles set the width: the floats ride in vectors of as many lanes (half a register
// on x86), so the floor division can promote them to double lane for lane on every target,
// SCALAR included. The float arithmetic is the oracle's, operation by operation (no fused
// multiply-add: Highway's Mul and Add are separate instructions). The floor of a / b for a >= b
// avoids the slow double division: q = floor(a * (1/b)) is the floor or off by one, and the
// remainder a - q*b, exact in double (q < 2^24 and b's 24-bit significand make q*b exact, and the
// difference spans fewer than 53 bits), says which; lanes with quotients of 2^24 or more divide.
// std::min(x, last) is written as last < x ? last : x, which is what it is, NaN or not.

#include <cstddef>
#include <cstdint>

#include "kernels/histogram/torch_l2_error.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/histogram/torch_l2_error.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DD = hn::ScalableTag<double>;
using DF = hn::Rebind<float, DD>;
using DI = hn::Rebind<int32_t, DD>;
using VF = hn::Vec<DF>;

// std::min(x, limit) for vectors.
template <class D, class V>
HWY_INLINE V MinLikeStd(D /*d*/, V x, V limit) {
  return hn::IfThenElse(hn::Lt(limit, x), limit, x);
}

// torch.div(a, b, rounding_mode='floor') clamped to [0, last], lane for lane as
// TorchFloorDivideRef.
HWY_INLINE VF FloorDivide(VF a, float b, double b_inverse, float last) {
  const DD dd;
  const DF df;
  const VF bv = hn::Set(df, b);
  const VF lastv = hn::Set(df, last);
  const VF small = MinLikeStd(df, hn::Div(a, bv), lastv);

  const auto ad = hn::PromoteTo(dd, a);
  const auto bd = hn::Set(dd, static_cast<double>(b));
  auto q = hn::Floor(hn::Mul(ad, hn::Set(dd, b_inverse)));
  const auto r = hn::Sub(ad, hn::Mul(q, bd));
  const auto one = hn::Set(dd, 1.0);
  q = hn::IfThenElse(hn::Lt(r, hn::Zero(dd)), hn::Sub(q, one),
                     hn::IfThenElse(hn::Ge(r, bd), hn::Add(q, one), q));
  const auto big = hn::Ge(q, hn::Set(dd, 16777216.0));
  if (!hn::AllFalse(dd, big)) q = hn::IfThenElse(big, hn::Floor(hn::Div(ad, bd)), q);
  const VF large = hn::DemoteTo(df, MinLikeStd(dd, q, hn::Set(dd, static_cast<double>(last))));

  const VF zero = hn::Zero(df);
  return hn::IfThenElse(hn::Lt(a, zero), zero, hn::IfThenElse(hn::Lt(a, bv), small, large));
}

// density * ((end^3 - begin^3) / 3).
HWY_INLINE VF Norm(VF begin, VF end, VF density) {
  const DF df;
  const VF cubes = hn::Sub(hn::Mul(hn::Mul(end, end), end), hn::Mul(hn::Mul(begin, begin), begin));
  return hn::Mul(density, hn::Div(cubes, hn::Set(df, 3.0f)));
}

// The norms of bins first .. first + lanes - 1, whose densities are `dens`.
HWY_INLINE VF BinErrors(size_t first, VF dens, const TorchL2Grid& g, double dbw_inverse) {
  const DF df;
  const DI di;
  const VF bw = hn::Set(df, g.bw);
  const VF dbw = hn::Set(df, g.dbw);
  const auto index = hn::Sub(hn::Iota(di, static_cast<int32_t>(first)), hn::Set(di, g.start_bin));
  const VF src_begin = hn::Mul(hn::ConvertTo(df, index), bw);
  const VF src_end = hn::Add(src_begin, bw);
  const VF dst_begin = FloorDivide(src_begin, g.dbw, dbw_inverse, g.last);
  const VF dst_end = FloorDivide(src_end, g.dbw, dbw_inverse, g.last);
  const VF begin_center = hn::Mul(hn::Add(dst_begin, hn::Set(df, 0.5f)), dbw);
  const VF end_center = hn::Add(hn::Mul(dst_end, dbw), hn::Set(df, g.half));
  VF norm = hn::Zero(df);  // 0 + x, as PyTorch's `norm = 0; norm += ...` (turns -0 into +0)
  norm = hn::Add(norm, Norm(hn::Sub(src_begin, begin_center), hn::Set(df, g.half), dens));
  norm = hn::Add(norm, hn::Mul(hn::Sub(hn::Sub(dst_end, dst_begin), hn::Set(df, 1.0f)),
                               hn::Mul(dens, hn::Set(df, g.middle))));
  norm = hn::Add(norm, Norm(hn::Set(df, g.neg_half), hn::Sub(src_end, end_center), dens));
  return norm;
}

void TorchL2BinErrorsImpl(const float* density, size_t n, const TorchL2Grid& g, float* norms) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const double dbw_inverse = 1.0 / static_cast<double>(g.dbw);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(BinErrors(i, hn::LoadU(df, density + i), g, dbw_inverse), df, norms + i);
  }
  if (i < n) {
    // The tail through the same vector code, on a zero-padded copy.
    HWY_ALIGN float dens_tail[hn::MaxLanes(df)] = {};
    HWY_ALIGN float norm_tail[hn::MaxLanes(df)];
    for (size_t k = i; k < n; ++k) dens_tail[k - i] = density[k];
    hn::Store(BinErrors(i, hn::Load(df, dens_tail), g, dbw_inverse), df, norm_tail);
    for (size_t k = i; k < n; ++k) norms[k] = norm_tail[k - i];
  }
}

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace HWY_NAMESPACE
}  // namespace qlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::kernels {

HWY_EXPORT(TorchL2BinErrorsImpl);

void TorchL2BinErrors(const float* density, size_t n, const TorchL2Grid& grid, float* norms) {
  HWY_DYNAMIC_DISPATCH(TorchL2BinErrorsImpl)(density, n, grid, norms);
}

}  // namespace qlab::kernels
#endif  // HWY_ONCE
