// Fake-quantization backward passes and LSQ (see fake_quant_grad.h). The LSQ forward passes
// round the learned zero points and hand over to kernels::FakeQuantize*; the LSQ backward is one
// scalar pass computing PyTorch's per-element terms, reduced per channel over fixed blocks.

#include "train/ops/fake_quant_grad.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "train/ops/parallel_blocks.h"
#include "train/ops/select_bits.h"
#include "train/ops/vector_clones.h"

namespace qlab::train {
namespace {

using internal::SelectBits;

// Elements per task (and per partial sum of the LSQ reductions): 32 KiB of x.
constexpr size_t kBlock = 8192;

float ClampToRange(float v, int32_t quant_min, int32_t quant_max) {
  return std::min(std::max(v, static_cast<float>(quant_min)), static_cast<float>(quant_max));
}

// PyTorch's _get_zero_point_from_tensor(..., is_forward=false): + 0.5f, clamp, truncate.
float PerTensorBackwardZeroPoint(float zero_point, int32_t quant_min, int32_t quant_max) {
  return std::trunc(ClampToRange(zero_point + 0.5f, quant_min, quant_max));
}

// What one block of the LSQ backward reads and writes.
struct LsqBlockArgs {
  const float* x;
  const float* dy;
  size_t channels, inner;
  const float* scales;
  const float* inv_scales;   // 1.0f / scales[c]
  const float* zero_points;  // integer-valued floats
  float qmin, qmax, grad_factor;
  float* dx;
};

// dx = mask ? dy : 0 over [begin, end), and 0 also where relu_y (when not null) is <= 0. In place
// (dx == dy) for weight gradients, hence no __restrict on those two.
QLAB_VECTOR_CLONES void SteRange(size_t begin, size_t end, const uint8_t* __restrict mask,
                                 const float* __restrict relu_y, const float* dy, float* dx) {
  if (relu_y == nullptr) {
    for (size_t i = begin; i < end; ++i) dx[i] = SelectBits(mask[i] != 0, dy[i], 0.0f);
  } else {
    for (size_t i = begin; i < end; ++i) {
      dx[i] = SelectBits((mask[i] != 0) & (relu_y[i] > 0.0f), dy[i], 0.0f);
    }
  }
}

// Elements [begin, end) of PactBackward: writes dx, returns the sum of dy where x >= alpha.
QLAB_VECTOR_CLONES double PactRange(size_t begin, size_t end, const float* __restrict x,
                                    const float* __restrict dy, float alpha, float* __restrict dx) {
  double clipped = 0.0;
  for (size_t i = begin; i < end; ++i) {
    const bool above = x[i] >= alpha;
    dx[i] = SelectBits((x[i] >= 0.0f) & !above, dy[i], 0.0f);
    clipped += above ? static_cast<double>(dy[i]) : 0.0;
  }
  return clipped;
}

// The LSQ backward's per-element loop, compiled for several x86-64 levels like the loops above
// (vector_clones.h); the fake_quant_grad_baseline_test target builds the baseline code alone, so
// that it is tested on machines that have AVX-512 too.
// Elements [begin, end): writes dx and adds the dscale / dzero_point terms per channel into
// partial[0, channels) / partial[channels, 2 channels). Terms are summed in element order within
// each run of one channel's consecutive elements, and each run's sum is added to the channel's
// slot. std::fma and std::nearbyint are exact operations, so the clones (inline FMA and rounding
// instructions instead of libm calls) give the same bits as the baseline.
QLAB_VECTOR_CLONES void AccumulateLsqBlock(const LsqBlockArgs& a, size_t begin, size_t end,
                                           double* partial) {
  const float* x = a.x;
  const float* dy = a.dy;
  float* dx = a.dx;
  const float qmin = a.qmin, qmax = a.qmax, grad_factor = a.grad_factor;
  const size_t channels = a.channels, inner = a.inner;
  size_t c = (begin / inner) % channels;
  size_t i = begin;
  size_t run_end = std::min(end, begin + (inner - begin % inner));
  while (i < end) {
    const float s = a.scales[c], inv_s = a.inv_scales[c], zp = a.zero_points[c];
    double run_scale = 0.0, run_zero_point = 0.0;
    for (; i < run_end; ++i) {
      const float g = dy[i];
      const float xq = std::nearbyint(std::fma(x[i], inv_s, zp));
      const float clamped = std::min(std::max(xq, qmin), qmax);
      const bool inside = clamped == xq;
      // Clipped, clamped - zp is PyTorch's qmin - zp or qmax - zp (exact: small integers);
      // inside, (clamped - zp) * s - x is its xfq - x (clamped == xq).
      const float edge = clamped - zp;
      const float inside_term = ((g * std::fma(edge, s, -x[i])) * inv_s) * grad_factor;
      const float clipped_term = (g * edge) * grad_factor;
      const float zero_point_term = ((-g) * s) * grad_factor;
      dx[i] = SelectBits(inside, g, 0.0f);
      run_scale += SelectBits(inside, inside_term, clipped_term);
      run_zero_point += SelectBits(inside, 0.0f, zero_point_term);
    }
    partial[c] += run_scale;
    partial[channels + c] += run_zero_point;
    if (++c == channels) c = 0;
    run_end = std::min(end, i + inner);
  }
}

// The shared LSQ backward: zero_points are the integer-valued floats the backward uses.
void LsqBackwardImpl(const float* x, const float* dy, const kernels::ChannelDims& dims,
                     const float* scales, const float* zero_points, int32_t quant_min,
                     int32_t quant_max, float grad_factor, float* dx, float* dscales,
                     float* dzero_points, pthreadpool_t pool) {
  const size_t channels = dims.channels;
  std::vector<float> inv_scales(channels);
  for (size_t c = 0; c < channels; ++c) inv_scales[c] = 1.0f / scales[c];
  const LsqBlockArgs args{x,
                          dy,
                          channels,
                          dims.inner,
                          scales,
                          inv_scales.data(),
                          zero_points,
                          static_cast<float>(quant_min),
                          static_cast<float>(quant_max),
                          grad_factor,
                          dx};
  std::vector<double> sums(2 * channels);
  internal::BlockedSums(
      dims.size(), kBlock, 2 * channels,
      [&](size_t begin, size_t end, double* partial) {
        AccumulateLsqBlock(args, begin, end, partial);
      },
      sums.data(), pool);
  for (size_t c = 0; c < channels; ++c) {
    dscales[c] = static_cast<float>(sums[c]);
    dzero_points[c] = static_cast<float>(sums[channels + c]);
  }
}

}  // namespace

void ParallelFakeQuantize(const float* x, size_t n, const kernels::AffineParams& params, float* y,
                          uint8_t* mask, pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      n, kBlock,
      [&](size_t begin, size_t end) {
        kernels::FakeQuantize(x + begin, end - begin, params, y + begin,
                              mask != nullptr ? mask + begin : nullptr);
      },
      pool);
}

void ParallelFakeQuantizePerChannel(const float* x, const kernels::ChannelDims& dims,
                                    const kernels::PerChannelAffineParams& params, float* y,
                                    uint8_t* mask, pthreadpool_t pool) {
  if (dims.outer == 1) {
    const size_t channels_per_task = std::max<size_t>(1, kBlock / std::max<size_t>(dims.inner, 1));
    internal::ParallelForRowBlocks(
        dims.channels, channels_per_task,
        [&](size_t begin, size_t end) {
          const size_t offset = begin * dims.inner;
          kernels::FakeQuantizePerChannel(x + offset,
                                          kernels::ChannelDims{1, end - begin, dims.inner},
                                          {params.scales + begin, params.zero_points + begin,
                                           params.quant_min, params.quant_max},
                                          y + offset, mask != nullptr ? mask + offset : nullptr);
        },
        pool);
    return;
  }
  // Whole [channels, inner] slabs of the outer axis, about kBlock elements a task.
  const size_t slab = dims.channels * dims.inner;
  const size_t slabs_per_task = std::max<size_t>(1, kBlock / std::max<size_t>(slab, 1));
  internal::ParallelForRowBlocks(
      dims.outer, slabs_per_task,
      [&](size_t begin, size_t end) {
        kernels::FakeQuantizePerChannel(
            x + begin * slab, kernels::ChannelDims{end - begin, dims.channels, dims.inner}, params,
            y + begin * slab, mask != nullptr ? mask + begin * slab : nullptr);
      },
      pool);
}

void FakeQuantSteBackward(const uint8_t* mask, const float* dy, size_t n, float* dx,
                          pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      n, kBlock, [&](size_t begin, size_t end) { SteRange(begin, end, mask, nullptr, dy, dx); },
      pool);
}

void FakeQuantSteReluBackward(const uint8_t* mask, const float* relu_y, const float* dy, size_t n,
                              float* dx, pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      n, kBlock, [&](size_t begin, size_t end) { SteRange(begin, end, mask, relu_y, dy, dx); },
      pool);
}

void PactBackward(const float* x, const float* dy, size_t n, float alpha, float* dx, double* dalpha,
                  pthreadpool_t pool) {
  internal::BlockedSums(
      n, kBlock, 1,
      [&](size_t begin, size_t end, double* sum) {
        *sum += PactRange(begin, end, x, dy, alpha, dx);
      },
      dalpha, pool);
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
  ParallelFakeQuantize(x, n, affine, y, /*mask=*/nullptr, pool);
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
  ParallelFakeQuantizePerChannel(x, dims, affine, y, /*mask=*/nullptr, pool);
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
