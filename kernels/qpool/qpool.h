// int8 pooling and residual-add kernels of qlab's quantized ResNets, NHWC uint8: max pool (the
// 3x3/2 after the stem), global average pool (before the classifier, requantized), and the
// elementwise add of two quantized tensors with requantization and fused ReLU (the residual
// connection closing every block).
//
// Kernel layer (in XNNPACK's terms, microkernels): raw pointers, no allocation in the hot loops,
// no Highway types, inputs trusted (preconditions below; ValidateQPoolShape is the small
// validated front for callers that take shapes from users). Each entry point dispatches at run
// time to the best Highway target; the scalar oracles are in qpool_ref.h and every target must
// match them bit for bit.
//
// Arithmetic:
//   max pool     y[n][oy][ox][c] = max over the window's taps inside the input of x[...][c]
//                (padding taps are skipped, i.e. PyTorch's -inf padding; input and output share
//                their quantization parameters, so no requantization is needed).
//   global avg   acc[n][c] = sum over the H*W pixels of (x - input_zero_point)   (int32, exact)
//                y = clamp(nearbyint(float(acc) * multiplier) + output_zero_point, min, max)
//                with multiplier = input_scale / (output_scale * H * W): exactly kernels/quantize's
//                Requantize (fp32 form), which it calls. Float form (input_scale > 0), the Q/DQ
//                reference's own operations (dequantize, kernels/fp32's average, quantize):
//                s = 0; s += float(x - input_zero_point) * input_scale over the pixels in order;
//                y = clamp(nearbyint((s / float(H * W)) * output_inverse_scale) +
//                output_zero_point, min, max), each step one IEEE operation.
//   add          y = clamp(nearbyint((float(a - a_zp) * a_multiplier + float(b - b_zp) *
//                b_multiplier) * output_multiplier) + output_zero_point, min, max); each float
//                step one IEEE operation (no fused multiply-add), rounding half to even. Two
//                forms of the same sum: a_multiplier = a_scale / y_scale, b_multiplier =
//                b_scale / y_scale, output_multiplier = 1 (one rounding less); or the Q/DQ
//                reference's own operations, a_multiplier = a_scale, b_multiplier = b_scale
//                (dequantize both), output_multiplier = 1.0f / y_scale (quantize as
//                kernels/quantize and PyTorch do), bit for bit what a float add between a
//                dequantize and a quantize computes. Fused ReLU: min = output_zero_point.
#ifndef QLAB_KERNELS_QPOOL_QPOOL_H_
#define QLAB_KERNELS_QPOOL_QPOOL_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/threadpool/threadpool.h"

namespace qlab::kernels {

// QPoolShape: a pooling window over NHWC input. Output size per axis:
//   out = (in + pad_before + pad_after - kernel) / stride + 1.
// ResNet's max pool on 112x112x64: {1, 112, 112, 64, 3, 3, 2, 2, 1, 1, 1, 1} -> 56x56x64.
struct QPoolShape {
  size_t batch = 1;
  size_t input_height = 1;
  size_t input_width = 1;
  size_t channels = 1;
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
};

// InvalidArgument naming the value unless every size and stride is >= 1, each padding is smaller
// than the kernel along its axis (so that every window holds at least one input pixel), and the
// padded input is at least the kernel.
absl::Status ValidateQPoolShape(const QPoolShape& shape);

// Threads: every entry point takes an optional kernels/threadpool ThreadPool (null: the calling
// thread only) and splits its output into independent parts (max pool: output rows; global
// average: images, or channel blocks of one image; add: blocks of elements). Each output element
// is computed by the same operations whichever thread computes it, so results are identical for
// any number of threads.

// QMaxPoolU8_NHWC: x is batch x H x W x C, y batch x OH x OW x C. Precondition: the shape passes
// ValidateQPoolShape.
void QMaxPoolU8_NHWC(const QPoolShape& shape, const uint8_t* x, uint8_t* y,
                     ThreadPool* pool = nullptr);

// Requantized global average pool parameters. Preconditions: multiplier finite and > 0 (integer
// form) or input_scale and output_inverse_scale finite and > 0 (float form), 0 <= min <= max <=
// 255, pixels * 255 < 2^31.
struct QGlobalAvgPoolParams {
  int32_t input_zero_point = 0;
  float multiplier = 1.0f;
  int32_t output_zero_point = 0;
  int32_t min = 0;
  int32_t max = 255;
  float input_scale = 0.0f;  // > 0 selects the float form
  float output_inverse_scale = 1.0f;
};

// QGlobalAvgPoolU8_NHWC: x is batch x pixels x channels (pixels = H * W), y batch x channels.
// `acc` is caller-provided scratch of batch * channels int32 (so that the kernel never
// allocates; the float form does not use it).
void QGlobalAvgPoolU8_NHWC(const uint8_t* x, size_t batch, size_t pixels, size_t channels,
                           const QGlobalAvgPoolParams& params, int32_t* acc, uint8_t* y,
                           ThreadPool* pool = nullptr);

// Requantized add parameters. Preconditions: multipliers finite and >= 0 (the products with
// output_multiplier below 2^8, so that every intermediate is exact or correctly rounded in
// float), 0 <= zero points <= 255, 0 <= min <= max <= 255.
struct QAddParams {
  int32_t a_zero_point = 0;
  float a_multiplier = 1.0f;
  int32_t b_zero_point = 0;
  float b_multiplier = 1.0f;
  int32_t output_zero_point = 0;
  int32_t min = 0;
  int32_t max = 255;
  float output_multiplier = 1.0f;  // multiplying by 1 is exact: the one-rounding form
};

// QAddU8: y[i] = add(a[i], b[i]) for i < n. y may alias a or b (element-wise, in order).
void QAddU8(const uint8_t* a, const uint8_t* b, size_t n, const QAddParams& params, uint8_t* y,
            ThreadPool* pool = nullptr);

// Name of the Highway target these kernels dispatch to on this CPU.
const char* QPoolKernelsTargetName();

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QPOOL_QPOOL_H_
