// int8 2-D convolution, NHWC: every convolution of qlab's quantized ResNets (the 7x7/2 stem on 3
// channels, 3x3 /1 and /2, 1x1 /1 and /2), uint8 activations x int8 OHWI weights, with the output
// stage (bias, requantization, zero point, fused ReLU; output_stage.h) fused into the GEMM.
//
// This is the operator layer (in XNNPACK's terms): QConvU8S8_NHWC::Create validates everything
// once and packs the weights once (OHWI -> kernels/qgemm's panel layout with K = kh * kw * cin in
// (ky, kx, ci) order); Run trusts its inputs and only computes. (QAT, whose weights change every
// step, swaps freshly packed weights in with Update instead of creating the operator again.)
// Run is an implicit GEMM over M = batch * out_h * out_w output pixels:
//   - each output pixel's row of A is the kh * kw input pixels under the kernel (a row of
//     input-zero-point bytes where a tap falls into the padding, so padding contributes
//     (zp - zp) * w = 0), handed to the indirect GEMM (qgemm.h QIGemmU8S8_OutputStage) as
//     pointers: no copy at all, when cin % 4 == 0 (whole 4-byte K groups per tap) or the kernel
//     is 1x1 (one tap: 1x1/1 reads the input rows in place);
//   - otherwise (the 3-channel stem) the rows are gathered (im2col) into a per-thread buffer of
//     one block of output pixels at a time, contiguous runs of a kernel row copied at once;
//   - when the GEMM runs AMX tiles (QGemmUsesAmx()), rows of whole 64-byte K blocks (3x3 convs
//     with cin % 64 == 0) are gathered too, into cache-line aligned rows that the tiles load in
//     place, and the stem's K is padded to 192 with zero weights (Create) for the same reason.
// Work is split into tiles of (a block of output pixels) x (a range of output-channel panels),
// spread over the ThreadPool; every tile is computed by the same code whichever thread runs it,
// so results are identical for any number of threads.
//
// Arithmetic: acc[m][o] = sum_{ky,kx,ci} (x[pixel(m, ky, kx)][ci] - x_zp) * w[o][ky][kx][ci], then
// the output stage. Weights are symmetric (zero point 0); per-channel weight scales are folded
// into the per-channel multipliers by the caller: multiplier[o] = x_scale * w_scale[o] / y_scale.
// The oracle is qconv_ref.h (seven plain loops).
#ifndef QLAB_KERNELS_QCONV_QCONV_H_
#define QLAB_KERNELS_QCONV_QCONV_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {

// QConvShape: geometry of one convolution. Output size per axis:
//   out = (in + pad_before + pad_after - kernel) / stride + 1.
// Example, ResNet's stem on a 224 x 224 image: {1, 224, 224, 3, 64, 7, 7, 2, 2, 3, 3, 3, 3}
// gives 112 x 112 x 64.
struct QConvShape {
  size_t batch = 1;
  size_t input_height = 1;
  size_t input_width = 1;
  size_t input_channels = 1;
  size_t output_channels = 1;
  size_t kernel_height = 1;
  size_t kernel_width = 1;
  size_t stride_height = 1;
  size_t stride_width = 1;
  size_t padding_top = 0;
  size_t padding_left = 0;
  size_t padding_bottom = 0;
  size_t padding_right = 0;

  size_t output_height() const {
    return (input_height + padding_top + padding_bottom - kernel_height) / stride_height + 1;
  }
  size_t output_width() const {
    return (input_width + padding_left + padding_right - kernel_width) / stride_width + 1;
  }
  // Multiply-accumulates of one run (GOPS counts 2 per MAC).
  size_t macs() const {
    return batch * output_height() * output_width() * output_channels * kernel_height *
           kernel_width * input_channels;
  }
};

// QConvOutput: the output stage's parameters, owned (output_stage.h has the formulas).
// multipliers / fixed_multipliers + shifts hold 1 entry (per-tensor) or output_channels entries
// (per-channel); only the arrays the type and requantization use need to be filled.
struct QConvOutput {
  QOutputType type = QOutputType::kU8;
  QRequantization requantization = QRequantization::kFloat;
  std::vector<float> multipliers;
  std::vector<int32_t> fixed_multipliers;
  std::vector<int32_t> shifts;
  std::vector<float> float_bias;      // empty or output_channels entries (kF32, kFloatBias)
  float output_inverse_scale = 1.0f;  // kFloatBias: 1.0f / output scale
  int32_t zero_point = 0;
  int32_t min = 0;    // fused ReLU: min = zero_point
  int32_t max = 255;
};

// QConvU8S8_NHWC: uint8 NHWC input (zero point x_zp) x int8 OHWI weights -> NHWC output of
// output.type, bias int32 per output channel (optional).
//
//   QConvOutput out;  out.multipliers = {0.0123f};  out.zero_point = 0;  out.min = 0;  // ReLU
//   auto conv = QConvU8S8_NHWC::Create(shape, /*input_zero_point=*/128, weights, bias, out);
//   conv->Run(input, output, &pool);  // input N*H*W*C bytes, output N*OH*OW*O elements
class QConvU8S8_NHWC {
 public:
  // InvalidArgument naming the offending value unless: every size and stride is >= 1, padding is
  // smaller than the kernel on each side (every output sees at least one input pixel), the
  // output is non-empty, K = kh * kw * cin <= 65536, 0 <= input_zero_point <= 255, weights is
  // non-null, the output stage's arrays have 1 or output_channels entries with finite positive
  // multipliers (fixed: multiplier in [2^30, 2^31), shift in [31, 62]), and min <= max within the
  // output type (u8 [0, 255], s8 [-128, 127]; ignored for s32/f32).
  static absl::StatusOr<QConvU8S8_NHWC> Create(const QConvShape& shape, int32_t input_zero_point,
                                               const int8_t* weights_ohwi, const int32_t* bias,
                                               const QConvOutput& output);

  // input: batch x H x W x cin bytes; output: batch x OH x OW x cout elements of the output
  // type. pool may be null (run on the caller). Not reentrant on one object only in the sense
  // that concurrent Runs must use different outputs; the object itself is read-only.
  void Run(const uint8_t* input, void* output, ThreadPool* pool) const;

  // Training (quantization-aware training's int8 forward: train/training_engine.cc) changes the
  // weights, the input zero point and the output stage every step while the geometry stays put:
  // Update swaps `weights` in for the operator's packed weights (the previous ones come back in
  // `weights`, so the caller refills that buffer next time without allocating) and replaces the
  // zero point and the stage, without re-validating the geometry or packing anything.
  // `weights` must be packed as Create packs: K = packed_k() in (ky, kx, ci) order, N =
  // output_channels (fake_quant_weights.h's PackFakeQuantizedConvWeights does that from float
  // weights). InvalidArgument, leaving the operator unchanged, for a weights buffer of another
  // shape or what Create rejects in input_zero_point and output.
  absl::Status Update(int32_t input_zero_point, PackedWeights& weights, const QConvOutput& output);

  const QConvShape& shape() const { return shape_; }
  // K as packed: kh * kw * cin, rounded up to whole 64-byte blocks for the gathered (im2col)
  // convolutions of a GEMM running AMX (the stem; see Create).
  size_t packed_k() const { return packed_.k; }

 private:
  QConvU8S8_NHWC() = default;

  QConvShape shape_;
  int32_t input_zero_point_ = 0;
  PackedWeights packed_;
  std::vector<int32_t> bias_;
  QConvOutput output_;
  std::vector<uint8_t> zero_row_;  // input_channels bytes of input_zero_point: the padding
};

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QCONV_QCONV_H_
