// Implementation of train/ops/conv_bn_grad.h: plain loops over rows or output channels, split
// into fixed blocks for the pool, each compiled for several vector widths (vector_clones.h);
// each pass touches every element once.
#include "train/ops/conv_bn_grad.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "train/ops/batch_norm_grad.h"
#include "train/ops/parallel_blocks.h"
#include "train/ops/select_bits.h"
#include "train/ops/vector_clones.h"

namespace qlab::train {
namespace {

using internal::BlockedSums;
using internal::ParallelForRowBlocks;

// Output channels per block of a weight loop: about kBlockElements weights, at least one channel.
constexpr size_t kBlockElements = size_t{1} << 15;
size_t ChannelsPerBlock(size_t per) {
  return std::max<size_t>(1, kBlockElements / std::max<size_t>(per, 1));
}

// Rows [begin, end) of ConvBnOutputForward; with sums (not null) also each channel's y values
// added in row order.
QLAB_VECTOR_CLONES void ConvBnOutputRows(size_t begin, size_t end, size_t channels,
                                         const float* __restrict z, const float* __restrict scale,
                                         const float* __restrict bias, float* __restrict y,
                                         double* __restrict sums) {
  for (size_t r = begin; r < end; ++r) {
    const float* z_row = z + r * channels;
    float* y_row = y + r * channels;
    if (bias != nullptr) {
      for (size_t c = 0; c < channels; ++c) y_row[c] = z_row[c] / scale[c] + bias[c];
    } else {
      for (size_t c = 0; c < channels; ++c) y_row[c] = z_row[c] / scale[c];
    }
    if (sums != nullptr) {
      for (size_t c = 0; c < channels; ++c) sums[c] += y_row[c];
    }
  }
}

// Rows [begin, end) of ConvBnOutputBackward: dz, and dy * z and dy added per channel into dyz
// and dy_sum.
QLAB_VECTOR_CLONES void ConvBnBackwardRows(size_t begin, size_t end, size_t channels,
                                           const float* __restrict dy, const float* __restrict z,
                                           const float* __restrict scale, float* __restrict dz,
                                           double* __restrict dyz, double* __restrict dy_sum) {
  for (size_t r = begin; r < end; ++r) {
    const float* dy_row = dy + r * channels;
    const float* z_row = z + r * channels;
    float* dz_row = dz + r * channels;
    for (size_t c = 0; c < channels; ++c) {
      const float g = dy_row[c];
      dz_row[c] = g / scale[c];
      dyz[c] += static_cast<double>(g) * static_cast<double>(z_row[c]);
      dy_sum[c] += static_cast<double>(g);
    }
  }
}

// The same with dy the batch norm's dx, computed element by element from the batch norm's input
// y and output gradient dy_bn (BatchNormDx, batch_norm_grad.h).
QLAB_VECTOR_CLONES void ConvBnBatchNormBackwardRows(
    size_t begin, size_t end, size_t channels, const float* __restrict y,
    const float* __restrict dy_bn, const float* __restrict k, const float* __restrict mean_dy,
    const float* __restrict slope, const float* __restrict mean, const float* __restrict z,
    const float* __restrict scale, float* __restrict dz, double* __restrict dyz,
    double* __restrict dy_sum) {
  for (size_t r = begin; r < end; ++r) {
    const float* y_row = y + r * channels;
    const float* dy_bn_row = dy_bn + r * channels;
    const float* z_row = z + r * channels;
    float* dz_row = dz + r * channels;
    for (size_t c = 0; c < channels; ++c) {
      const float g = BatchNormDx(y_row[c], dy_bn_row[c], mean[c], k[c], mean_dy[c], slope[c]);
      dz_row[c] = g / scale[c];
      dyz[c] += static_cast<double>(g) * static_cast<double>(z_row[c]);
      dy_sum[c] += static_cast<double>(g);
    }
  }
}

// ConvBnOutputBackward's blocked pass: block_rows(begin, end, dyz, dy_sum) computes dz for a
// block's rows and adds the block's sums of dy * z and dy into its partial ([0, channels) and
// [channels, 2 * channels)); then the per-channel results.
template <class Rows>
void ConvBnOutputBackwardOf(size_t rows, size_t channels, const Rows& block_rows,
                            const float* scale, double* dscale, double* dbias, pthreadpool_t pool) {
  std::vector<double> sums(2 * channels);
  BlockedSums(
      rows, internal::kRowsPerBlock, 2 * channels,
      [&](size_t begin, size_t end, double* partial) {
        block_rows(begin, end, partial, partial + channels);
      },
      sums.data(), pool);
  for (size_t c = 0; c < channels; ++c) {
    const double s = scale[c];
    dscale[c] = -sums[c] / (s * s);
    dbias[c] = sums[channels + c];
  }
}

QLAB_VECTOR_CLONES void ScaleRows(size_t begin, size_t end, size_t per, const float* __restrict w,
                                  const float* __restrict scale, float* __restrict scaled) {
  for (size_t o = begin; o < end; ++o) {
    const float s = scale[o];
    const float* w_row = w + o * per;
    float* scaled_row = scaled + o * per;
    for (size_t i = 0; i < per; ++i) scaled_row[i] = w_row[i] * s;
  }
}

}  // namespace

void ConvBnScaleWeights(size_t out_channels, size_t per, const float* w, const float* gamma,
                        const float* running_var, float eps, float* scale, float* scaled,
                        pthreadpool_t pool) {
  for (size_t o = 0; o < out_channels; ++o) scale[o] = gamma[o] / std::sqrt(running_var[o] + eps);
  ParallelForRowBlocks(
      out_channels, ChannelsPerBlock(per),
      [&](size_t begin, size_t end) { ScaleRows(begin, end, per, w, scale, scaled); }, pool);
}

void ConvBnOutputForward(size_t rows, size_t channels, const float* z, const float* scale,
                         const float* bias, float* y, pthreadpool_t pool) {
  ParallelForRowBlocks(
      rows, internal::kRowsPerBlock,
      [&](size_t begin, size_t end) {
        ConvBnOutputRows(begin, end, channels, z, scale, bias, y, nullptr);
      },
      pool);
}

void ConvBnOutputForwardWithSums(size_t rows, size_t channels, const float* z, const float* scale,
                                 const float* bias, float* y, double* y_sums, pthreadpool_t pool) {
  BlockedSums(
      rows, internal::kRowsPerBlock, channels,
      [&](size_t begin, size_t end, double* partial) {
        ConvBnOutputRows(begin, end, channels, z, scale, bias, y, partial);
      },
      y_sums, pool);
}

void ConvBnOutputBackward(size_t rows, size_t channels, const float* dy, const float* z,
                          const float* scale, float* dz, double* dscale, double* dbias,
                          pthreadpool_t pool) {
  ConvBnOutputBackwardOf(
      rows, channels,
      [&](size_t begin, size_t end, double* dyz, double* dy_sum) {
        ConvBnBackwardRows(begin, end, channels, dy, z, scale, dz, dyz, dy_sum);
      },
      scale, dscale, dbias, pool);
}

void ConvBnBatchNormBackward(size_t rows, size_t channels, const float* y, const float* gamma,
                             const float* saved_mean, const float* saved_inv_std,
                             const float* dy_bn, const float* z, const float* scale, float* dz,
                             float* dgamma, float* dbeta, double* dscale, double* dbias,
                             pthreadpool_t pool) {
  BatchNormDxCoefficients bn;
  bn.Compute(rows, channels, y, gamma, saved_mean, saved_inv_std, dy_bn, dgamma, dbeta, pool);
  ConvBnOutputBackwardOf(
      rows, channels,
      [&](size_t begin, size_t end, double* dyz, double* dy_sum) {
        ConvBnBatchNormBackwardRows(begin, end, channels, y, dy_bn, bn.k.data(), bn.mean_dy.data(),
                                    bn.slope.data(), saved_mean, z, scale, dz, dyz, dy_sum);
      },
      scale, dscale, dbias, pool);
}

void ConvBnWeightBackward(size_t out_channels, size_t per, const float* dscaled,
                          const uint8_t* ste_mask, const float* w, const float* scale,
                          const float* running_var, float eps, float* dw, float* dgamma,
                          pthreadpool_t pool) {
  const auto channel = [&](size_t o, auto d_at) {
    const float* w_row = w + o * per;
    float* dw_row = dw + o * per;
    const float s = scale[o];
    // Four interleaved partial sums, added at the end: one chain of dependent double additions
    // over every weight (4 cycles each) was the loop's whole cost.
    double sum[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= per; i += 4) {
      for (size_t k = 0; k < 4; ++k) {
        const float d = d_at(o * per + i + k);
        sum[k] += static_cast<double>(d) * w_row[i + k];
        dw_row[i + k] = d * s;
      }
    }
    for (; i < per; ++i) {
      const float d = d_at(o * per + i);
      sum[0] += static_cast<double>(d) * w_row[i];
      dw_row[i] = d * s;
    }
    const double total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
    dgamma[o] += static_cast<float>(total / std::sqrt(static_cast<double>(running_var[o]) + eps));
  };
  ParallelForRowBlocks(
      out_channels, ChannelsPerBlock(per),
      [&](size_t begin, size_t end) {
        for (size_t o = begin; o < end; ++o) {
          if (ste_mask != nullptr) {
            channel(o, [&](size_t j) {
              return internal::SelectBits(ste_mask[j] != 0, dscaled[j], 0.0f);
            });
          } else {
            channel(o, [&](size_t j) { return dscaled[j]; });
          }
        }
      },
      pool);
}

}  // namespace qlab::train
