// Fake-quantization backward passes and LSQ (see fake_quant_grad.h). The LSQ forward passes
// round the learned zero points and hand over to kernels::FakeQuantize*; the LSQ backward is one
// scalar pass computing PyTorch's per-element terms, reduced per channel over fixed blocks.

#include "train/ops/fake_quant_grad.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "train/ops/parallel_blocks.h"

namespace qlab::train {
namespace {

// Elements per task (and per partial sum of the LSQ reductions): 32 KiB of x.
constexpr size_t kBlock = 8192;

float ClampToRange(float v, int32_t quant_min, int32_t quant_max) {
  return std::min(std::max(v, static_cast<float>(quant_min)), static_cast<float>(quant_max));
}

// PyTorch's _get_zero_point_from_tensor(..., is_forward=false): + 0.5f, clamp, truncate.
float PerTensorBackwardZeroPoint(float zero_point, int32_t quant_min, int32_t quant_max) {
  return std::trunc(ClampToRange(zero_point + 0.5f, quant_min, quant_max));
}

// The shared LSQ backward: zero_points are the integer-valued floats the backward uses.
void LsqBackwardImpl(const float* x, const float* dy, const kernels::ChannelDims& dims,
                     const float* scales, const float* zero_points, int32_t quant_min,
                     int32_t quant_max, float grad_factor, float* dx, float* dscales,
                     float* dzero_points, pthreadpool_t pool) {
  const size_t channels = dims.channels, inner = dims.inner;
  std::vector<float> inv_scales(channels), below(channels), above(channels);
  for (size_t c = 0; c < channels; ++c) {
    inv_scales[c] = 1.0f / scales[c];
    below[c] = static_cast<float>(quant_min) - zero_points[c];  // exact: small integers
    above[c] = static_cast<float>(quant_max) - zero_points[c];
  }
  const float qmin = static_cast<float>(quant_min), qmax = static_cast<float>(quant_max);
  std::vector<double> sums(2 * channels);
  internal::BlockedSums(
      dims.size(), kBlock, 2 * channels,
      [&](size_t begin, size_t end, double* partial) {
        double* sum_scale = partial;
        double* sum_zero_point = partial + channels;
        size_t c = (begin / inner) % channels, k = begin % inner;
        for (size_t i = begin; i < end; ++i) {
          const float s = scales[c], zp = zero_points[c], g = dy[i];
          const float xq = std::nearbyint(std::fma(x[i], inv_scales[c], zp));
          float scale_term, zero_point_term;
          if (xq >= qmin && xq <= qmax) {
            dx[i] = g;
            scale_term = ((g * std::fma(xq - zp, s, -x[i])) * inv_scales[c]) * grad_factor;
            zero_point_term = 0.0f;
          } else {
            dx[i] = 0.0f;
            scale_term = (g * (xq < qmin ? below[c] : above[c])) * grad_factor;
            zero_point_term = ((-g) * s) * grad_factor;
          }
          sum_scale[c] += scale_term;
          sum_zero_point[c] += zero_point_term;
          if (++k == inner) {
            k = 0;
            if (++c == channels) c = 0;
          }
        }
      },
      sums.data(), pool);
  for (size_t c = 0; c < channels; ++c) {
    dscales[c] = static_cast<float>(sums[c]);
    dzero_points[c] = static_cast<float>(sums[channels + c]);
  }
}

}  // namespace

void FakeQuantSteBackward(const uint8_t* mask, const float* dy, size_t n, float* dx) {
  for (size_t i = 0; i < n; ++i) dx[i] = mask[i] != 0 ? dy[i] : 0.0f;
}

int32_t LsqForwardZeroPoint(float zero_point, int32_t quant_min, int32_t quant_max) {
  return static_cast<int32_t>(ClampToRange(std::nearbyint(zero_point), quant_min, quant_max));
}

void LsqPerTensorForward(const float* x, size_t n, const LsqParams& params, float* y,
                         pthreadpool_t pool) {
  const kernels::AffineParams affine{
      params.scales[0],
      LsqForwardZeroPoint(params.zero_points[0], params.quant_min, params.quant_max),
      params.quant_min, params.quant_max};
  internal::ParallelForRowBlocks(
      n, kBlock,
      [&](size_t begin, size_t end) {
        kernels::FakeQuantize(x + begin, end - begin, affine, y + begin, /*mask=*/nullptr);
      },
      pool);
}

void LsqPerTensorBackward(const float* x, const float* dy, size_t n, const LsqParams& params,
                          float* dx, float* dscale, float* dzero_point, pthreadpool_t pool) {
  const float zero_point =
      PerTensorBackwardZeroPoint(params.zero_points[0], params.quant_min, params.quant_max);
  LsqBackwardImpl(x, dy, kernels::ChannelDims{1, 1, n}, params.scales, &zero_point,
                  params.quant_min, params.quant_max, params.grad_factor, dx, dscale, dzero_point,
                  pool);
}

void LsqPerChannelForward(const float* x, const kernels::ChannelDims& dims, const LsqParams& params,
                          float* y, pthreadpool_t pool) {
  std::vector<int32_t> zero_points(dims.channels);
  for (size_t c = 0; c < dims.channels; ++c) {
    zero_points[c] = LsqForwardZeroPoint(params.zero_points[c], params.quant_min, params.quant_max);
  }
  const kernels::PerChannelAffineParams affine{params.scales, zero_points.data(), params.quant_min,
                                               params.quant_max};
  // Split along the outer axis (whole [channels, inner] slabs), about kBlock elements a task.
  const size_t slab = dims.channels * dims.inner;
  const size_t slabs_per_task = std::max<size_t>(1, kBlock / std::max<size_t>(slab, 1));
  internal::ParallelForRowBlocks(
      dims.outer, slabs_per_task,
      [&](size_t begin, size_t end) {
        kernels::FakeQuantizePerChannel(
            x + begin * slab, kernels::ChannelDims{end - begin, dims.channels, dims.inner}, affine,
            y + begin * slab, /*mask=*/nullptr);
      },
      pool);
}

void LsqPerChannelBackward(const float* x, const float* dy, const kernels::ChannelDims& dims,
                           const LsqParams& params, float* dx, float* dscales, float* dzero_points,
                           pthreadpool_t pool) {
  // PyTorch's _get_rounded_zero_point: zero_point.round().clamp_(qmin, qmax), as the forward.
  std::vector<float> zero_points(dims.channels);
  for (size_t c = 0; c < dims.channels; ++c) {
    zero_points[c] = static_cast<float>(
        LsqForwardZeroPoint(params.zero_points[c], params.quant_min, params.quant_max));
  }
  LsqBackwardImpl(x, dy, dims, params.scales, zero_points.data(), params.quant_min,
                  params.quant_max, params.grad_factor, dx, dscales, dzero_points, pool);
}

}  // namespace qlab::train
