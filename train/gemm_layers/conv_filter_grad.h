// The weight gradient of a convolution as one dedicated kernel (for train/gemm_layers):
//   dwt[kk][o] = sum over output pixels m = 0 .. M-1, in increasing order, of
//                x(m, kk) * dy[m][o],
// kk = (kh, kw, ic) in the convolution's K order, x(m, kk) the input value tap (kh, kw) of
// output pixel m reads on channel ic. No im2col and no packing: a tile of R consecutive K rows
// by 16-column groups of output channels keeps its accumulators in registers, broadcasting R
// input values and loading the dy row's vectors per output pixel (both are contiguous in NHWC).
//
// Kernel layer: raw pointers, no validation. The caller makes every tap readable: `x` is the
// input with its zero padding materialized ([batch][x_h][x_w][c], x_h = in_h + 2 pad_h), so the
// receptive field of output pixel (oh, ow) starts at padded (oh * stride_h, ow * stride_w) and a
// padding tap contributes fma(0, dy, acc) = acc. dy rows have stride dy_stride >= 16 *
// column_groups (columns past out_c read zeros the caller wrote, their sums are discarded).
//
// Determinism: each dwt element is one fma chain over m in increasing order (accumulators are
// parked in dwt between pixel blocks, which is exact), computed by one thread: results do not
// depend on the thread count, the tiling or the blocking. Threads split the output tiles.
#ifndef QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_H_
#define QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_H_

#include <pthreadpool.h>

#include <cstddef>

namespace qlab::train {

struct ConvFilterGradProblem {
  const float* x = nullptr;  // padded NHWC input [batch][x_h][x_w][c]
  size_t x_h = 0, x_w = 0, c = 0;
  const float* dy = nullptr;  // [batch][out_h][out_w][dy_stride]
  size_t dy_stride = 0;
  size_t batch = 0, out_h = 0, out_w = 0, stride_h = 1, stride_w = 1;
  const size_t* tap_offsets = nullptr;  // k entries: float offset of x(m, kk) from the field start
  size_t k = 0;
  size_t column_groups = 0;  // output channels rounded up to 16, divided by 16
  float* dwt = nullptr;      // [k][16 * column_groups]
};

void ConvFilterGrad(const ConvFilterGradProblem& problem, pthreadpool_t pool);

}  // namespace qlab::train

#endif  // QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_H_
