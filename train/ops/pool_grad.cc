// Pooling forward/backward kernels for training (see pool_grad.h). Channels are contiguous in
// NHWC, so every loop walks the window pixel by pixel with the channels innermost.

#include "train/ops/pool_grad.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/fp32/pool_window.h"
#include "train/ops/max_pool_forward.h"
#include "train/ops/parallel_blocks.h"

namespace qlab::train {
namespace {

using kernels::PoolAxisWindow;
using kernels::PoolWindow;

size_t ImageSize(const kernels::Fp32PoolGeometry& g) { return g.in_h * g.in_w * g.channels; }
size_t OutputImageSize(const kernels::Fp32PoolGeometry& g) {
  return g.out_h * g.out_w * g.channels;
}

}  // namespace

void MaxPoolForward(const kernels::Fp32PoolGeometry& g, const float* x, float* y, int32_t* argmax,
                    pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      g.batch * g.out_h, /*rows_per_block=*/1,
      [&](size_t begin, size_t end) { internal::MaxPoolForwardRows(g, x, begin, end, y, argmax); },
      pool);
}

void MaxPoolBackward(const kernels::Fp32PoolGeometry& g, const int32_t* argmax, const float* dy,
                     float* dx, pthreadpool_t pool) {
  // One image per task: an image's argmax points into that image only, so tasks never touch the
  // same dx, and within the image contributions arrive in output order.
  internal::ParallelForRowBlocks(
      g.batch, /*rows_per_block=*/1,
      [&](size_t b, size_t) {
        std::fill(dx + b * ImageSize(g), dx + (b + 1) * ImageSize(g), 0.0f);
        const size_t begin = b * OutputImageSize(g), end = begin + OutputImageSize(g);
        for (size_t o = begin; o < end; ++o) dx[argmax[o]] += dy[o];
      },
      pool);
}

void AvgPoolBackward(const kernels::Fp32PoolGeometry& g, const float* dy, float* dx,
                     pthreadpool_t pool) {
  const size_t c = g.channels;
  internal::ParallelForRowBlocks(
      g.batch, /*rows_per_block=*/1,
      [&](size_t b, size_t) {
        float* image = dx + b * ImageSize(g);
        std::fill(image, image + ImageSize(g), 0.0f);
        std::vector<float> delta(c);
        for (size_t oh = 0; oh < g.out_h; ++oh) {
          const PoolWindow wh = PoolAxisWindow(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
          for (size_t ow = 0; ow < g.out_w; ++ow) {
            const PoolWindow ww = PoolAxisWindow(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
            if (wh.begin >= wh.end || ww.begin >= ww.end) continue;  // forward wrote 0
            const int64_t divisor = g.count_include_pad
                                        ? (wh.padded_end - wh.start) * (ww.padded_end - ww.start)
                                        : (wh.end - wh.begin) * (ww.end - ww.begin);
            // A true division, as PyTorch's grad_output / divide_factor (not a reciprocal).
            const float* grad = dy + ((b * g.out_h + oh) * g.out_w + ow) * c;
            for (size_t ch = 0; ch < c; ++ch) delta[ch] = grad[ch] / static_cast<float>(divisor);
            for (int64_t h = wh.begin; h < wh.end; ++h) {
              for (int64_t w = ww.begin; w < ww.end; ++w) {
                float* in = image + (static_cast<size_t>(h) * g.in_w + static_cast<size_t>(w)) * c;
                for (size_t ch = 0; ch < c; ++ch) in[ch] += delta[ch];
              }
            }
          }
        }
      },
      pool);
}

void GlobalAvgPoolBackward(size_t batch, size_t pixels, size_t channels, const float* dy,
                           float* dx) {
  const float count = static_cast<float>(pixels);
  for (size_t b = 0; b < batch; ++b) {
    for (size_t p = 0; p < pixels; ++p) {
      float* out = dx + (b * pixels + p) * channels;
      for (size_t c = 0; c < channels; ++c) out[c] = dy[b * channels + c] / count;
    }
  }
}

}  // namespace qlab::train
