// Fast quantize-and-pack of fake-quantized float convolution weights into the packed panel layout
// of QConvU8S8_NHWC: what lets quantization-aware training run its forward convolutions on the
// int8 kernels although the weights change every step.
//
// In QAT the convolution's weight is fake-quantized, symmetric: w_fq = scale[o] * q with q an
// integer in [-128, 127]. The int8 convolution needs q itself, packed as kernels/qgemm's
// PackedWeights (K in qconv's (ky, kx, ci) order, panels of 16 output channels, column sums).
// qgemm.h's PackWeights does that from int8 codes in a scalar loop meant to run once per layer;
// a training step would run it for every weight (11M in ResNet18) every step. This packs straight
// from the float OIHW weights, one panel (16 output channels) per task on the pool: the panel's
// rows are quantized with kernels/quantize's SIMD Quantize into a per-thread buffer and summed
// (the column sums), then the panel is written in order, each byte gathered from its row through
// a table of OIHW positions of the packed K indices. Results do not depend on the thread count
// (each panel is written by one task). Measured (thread CPU time, one Zen 5 core): ResNet18's
// 11.2M convolution weights in 4.2-4.4 ms, ~0.4 ns per weight; split over the pool by panels.
//
// The codes are kernels::Quantize's: q = clamp(nearbyint(w * (1.0f / scale)), -128, 127). For a
// fake-quantized w = float(q * scale) this recovers q exactly: w * (1 / scale) is within a few
// float roundings (relative 2^-22) of q, |q| <= 128, so it is far closer to q than 1/2.
#ifndef QLAB_KERNELS_QCONV_FAKE_QUANT_WEIGHTS_H_
#define QLAB_KERNELS_QCONV_FAKE_QUANT_WEIGHTS_H_

#include <cstddef>

#include "kernels/qgemm/qgemm.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {

// Geometry of OIHW convolution weights: [output_channels][input_channels][kernel_h][kernel_w].
struct ConvWeightDims {
  size_t output_channels = 1;
  size_t input_channels = 1;
  size_t kernel_height = 1;
  size_t kernel_width = 1;
  size_t k() const { return input_channels * kernel_height * kernel_width; }
};

// Fills `packed` (resized to K = packed_k, N = output_channels; its buffers are reused when the
// sizes already match) with the codes of w_oihw, as QConvU8S8_NHWC::Create packs the OHWI codes:
// B[k][o] with k = (ky * kernel_w + kx) * input_channels + ci, rows k >= dims.k() zero (qconv's
// K padding for AMX: QConvU8S8_NHWC::packed_k()). scales: output_channels entries when
// per_channel, else one. pool may be null.
// Preconditions: every size >= 1, dims.k() <= packed_k <= 65536, scales finite and > 0.
void PackFakeQuantizedConvWeights(const float* w_oihw, const ConvWeightDims& dims,
                                  const float* scales, bool per_channel, size_t packed_k,
                                  PackedWeights& packed, ThreadPool* pool);

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QCONV_FAKE_QUANT_WEIGHTS_H_
