// Elementwise training ops (see eltwise_grad.h). The ReLU backward is a plain C++ loop the
// compiler vectorizes (vector_clones.h); large arrays are split into fixed chunks over the pool.

#include "train/ops/eltwise_grad.h"

#include <algorithm>
#include <cstring>

#include "kernels/fp32/fp32_eltwise.h"
#include "train/ops/parallel_blocks.h"
#include "train/ops/select_bits.h"
#include "train/ops/vector_clones.h"

namespace qlab::train {
namespace {

// Elements per task: 64 KiB per operand, so scheduling costs nothing next to the work (and
// arrays below it run on the calling thread).
constexpr size_t kChunk = 16384;

// May run in place (dx == dy, eltwise_grad.h), hence no __restrict on those two.
QLAB_VECTOR_CLONES void ReluBackwardRange(size_t begin, size_t end, const float* __restrict y,
                                          const float* dy, float* dx) {
  for (size_t i = begin; i < end; ++i) dx[i] = internal::SelectBits(y[i] > 0.0f, dy[i], 0.0f);
}

}  // namespace

void ReluForward(const float* x, size_t n, float* y, pthreadpool_t pool) {
  kernels::Fp32Relu(x, n, y, pool);
}

void ReluBackward(const float* y, const float* dy, size_t n, float* dx, pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      n, kChunk, [&](size_t begin, size_t end) { ReluBackwardRange(begin, end, y, dy, dx); }, pool);
}

void Accumulate(const float* src, size_t n, float* dst, pthreadpool_t pool) {
  internal::ParallelForRowBlocks(
      n, kChunk,
      [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) dst[i] += src[i];
      },
      pool);
}

void StridedSliceForward(const SliceGeometry& g, const float* x, float* y) {
  const size_t c = g.channels;
  for (size_t b = 0; b < g.batch; ++b) {
    for (size_t oh = 0; oh < g.out_h; ++oh) {
      const size_t h = g.begin_h + oh * g.step_h;
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const size_t w = g.begin_w + ow * g.step_w;
        std::memcpy(y + ((b * g.out_h + oh) * g.out_w + ow) * c,
                    x + ((b * g.in_h + h) * g.in_w + w) * c, c * sizeof(float));
      }
    }
  }
}

void StridedSliceBackward(const SliceGeometry& g, const float* dy, float* dx) {
  const size_t c = g.channels;
  std::fill(dx, dx + g.batch * g.in_h * g.in_w * c, 0.0f);
  for (size_t b = 0; b < g.batch; ++b) {
    for (size_t oh = 0; oh < g.out_h; ++oh) {
      const size_t h = g.begin_h + oh * g.step_h;
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const size_t w = g.begin_w + ow * g.step_w;
        std::memcpy(dx + ((b * g.in_h + h) * g.in_w + w) * c,
                    dy + ((b * g.out_h + oh) * g.out_w + ow) * c, c * sizeof(float));
      }
    }
  }
}

void ChannelPadForward(size_t rows, size_t channels, size_t before, size_t after, const float* x,
                       float* y) {
  const size_t width = before + channels + after;
  for (size_t r = 0; r < rows; ++r) {
    float* out = y + r * width;
    std::fill(out, out + before, 0.0f);
    std::memcpy(out + before, x + r * channels, channels * sizeof(float));
    std::fill(out + before + channels, out + width, 0.0f);
  }
}

void ChannelPadBackward(size_t rows, size_t channels, size_t before, size_t after, const float* dy,
                        float* dx) {
  const size_t width = before + channels + after;
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(dx + r * channels, dy + r * width + before, channels * sizeof(float));
  }
}

}  // namespace qlab::train
