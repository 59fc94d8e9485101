// Implementation of train/ops/conv_bn_grad.h: plain loops over rows or output channels, split
// into fixed blocks for the pool; each pass touches every element once.
#include "train/ops/conv_bn_grad.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "train/ops/parallel_blocks.h"

namespace qlab::train {
namespace {

using internal::BlockedSums;
using internal::ParallelForRowBlocks;

// Output channels per block of a weight loop: about kBlockElements weights, at least one channel.
constexpr size_t kBlockElements = size_t{1} << 15;
size_t ChannelsPerBlock(size_t per) {
  return std::max<size_t>(1, kBlockElements / std::max<size_t>(per, 1));
}

}  // namespace

void ConvBnScaleWeights(size_t out_channels, size_t per, const float* w, const float* gamma,
                        const float* running_var, float eps, float* scale, float* scaled,
                        pthreadpool_t pool) {
  ParallelForRowBlocks(
      out_channels, ChannelsPerBlock(per),
      [&](size_t begin, size_t end) {
        for (size_t o = begin; o < end; ++o) {
          const float s = gamma[o] / std::sqrt(running_var[o] + eps);
          scale[o] = s;
          const float* w_row = w + o * per;
          float* scaled_row = scaled + o * per;
          for (size_t i = 0; i < per; ++i) scaled_row[i] = w_row[i] * s;
        }
      },
      pool);
}

void ConvBnOutputForward(size_t rows, size_t channels, const float* z, const float* scale,
                         const float* bias, float* y, pthreadpool_t pool) {
  ParallelForRowBlocks(
      rows, internal::kRowsPerBlock,
      [&](size_t begin, size_t end) {
        for (size_t r = begin; r < end; ++r) {
          const float* z_row = z + r * channels;
          float* y_row = y + r * channels;
          if (bias != nullptr) {
            for (size_t c = 0; c < channels; ++c) y_row[c] = z_row[c] / scale[c] + bias[c];
          } else {
            for (size_t c = 0; c < channels; ++c) y_row[c] = z_row[c] / scale[c];
          }
        }
      },
      pool);
}

void ConvBnOutputBackward(size_t rows, size_t channels, const float* dy, const float* z,
                          const float* scale, float* dz, double* dscale, double* dbias,
                          pthreadpool_t pool) {
  // One blocked pass: dz for the block's rows, and the block's sums of dy * z and dy side by
  // side in its partial ([0, channels) and [channels, 2 * channels)).
  std::vector<double> sums(2 * channels);
  BlockedSums(
      rows, internal::kRowsPerBlock, 2 * channels,
      [&](size_t begin, size_t end, double* partial) {
        double* dyz = partial;
        double* dy_sum = partial + channels;
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
      },
      sums.data(), pool);
  for (size_t c = 0; c < channels; ++c) {
    const double s = scale[c];
    dscale[c] = -sums[c] / (s * s);
    dbias[c] = sums[channels + c];
  }
}

void ConvBnWeightBackward(size_t out_channels, size_t per, const float* dscaled, const float* w,
                          const float* scale, const float* running_var, float eps, float* dw,
                          float* dgamma, pthreadpool_t pool) {
  ParallelForRowBlocks(
      out_channels, ChannelsPerBlock(per),
      [&](size_t begin, size_t end) {
        for (size_t o = begin; o < end; ++o) {
          const float* d_row = dscaled + o * per;
          const float* w_row = w + o * per;
          float* dw_row = dw + o * per;
          const float s = scale[o];
          // Four interleaved partial sums, added at the end: one chain of dependent double
          // additions over every weight (4 cycles each) was the loop's whole cost.
          double sum[4] = {0.0, 0.0, 0.0, 0.0};
          size_t i = 0;
          for (; i + 4 <= per; i += 4) {
            for (size_t k = 0; k < 4; ++k) {
              sum[k] += static_cast<double>(d_row[i + k]) * w_row[i + k];
              dw_row[i + k] = d_row[i + k] * s;
            }
          }
          for (; i < per; ++i) {
            sum[0] += static_cast<double>(d_row[i]) * w_row[i];
            dw_row[i] = d_row[i] * s;
          }
          const double total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
          dgamma[o] += static_cast<float>(
              total / std::sqrt(static_cast<double>(running_var[o]) + eps));
        }
      },
      pool);
}

}  // namespace qlab::train
