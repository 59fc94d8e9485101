// Output stage of qlab's integer GEMM and convolution kernels: what happens to each int32
// accumulator between the last multiply-add and memory.
//
// In gemmlowp/FBGEMM terms this is the output pipeline. It is a short chain of plain stages,
// applied per output element C[m][n] (n = output channel) in this order:
//   1. zero-point correction  acc = sum_k A[m][k] * B[k][n] - a_zero_point * colsum(B)[n]
//                             (always; done by the GEMM itself, see qgemm.h)
//   2. bias                   acc += bias[n]                       (int32, when bias != nullptr)
//   3. by output type:
//      kS32   y = acc                                                    (no further stage)
//      kF32   y = float(acc) * multipliers[n] [+ float_bias[n]]          (dequantized output:
//             multipliers[n] = input_scale * weight_scale[n]; the float bias when given)
//      kU8/kS8, requantization (the formulas of kernels/quantize's Requantize, bit for bit):
//        kFloat       y = clamp(nearbyint(float(acc) * multipliers[n]) + zero_point, min, max)
//                     (float arithmetic, rounding half to even; XNNPACK's "fp32")
//        kFixedPoint  p = int64(acc) * fixed_multipliers[n],
//                     y = clamp(((p + 2^(shifts[n]-1)) >> shifts[n]) + zero_point, min, max)
//                     (rounding half up; XNNPACK's "rndnu"; quant/qparams.h QuantizeMultiplier
//                     turns a real multiplier into the pair)
//        kFloatBias   v = float(acc) * multipliers[n] [+ float_bias[n]]      (the layer's float
//                     output, multipliers[n] = input_scale * weight_scale[n]: as kF32), then
//                     y = clamp(nearbyint(v * output_inverse_scale) + zero_point, min, max)
//                     with output_inverse_scale = 1.0f / output_scale. Four IEEE operations
//                     (convert, multiply, add, multiply) then the rounding: exactly what a float
//                     reference computes from the same float conv result (x86/FBGEMM's float
//                     bias, then PyTorch's quantize_val / fake_quantize, which multiply by the
//                     float inverse scale). The int32 bias (stage 2) may be used instead of or
//                     besides float_bias.
//        then the clamp saturates into the output type: min and max lie in its range. A fused
//        ReLU is min = zero_point (quantized 0.0); ReLU6 and the like are other clamps.
// Per-tensor vs per-channel is one parameter (per_channel): every per-channel array has one
// entry per output column, or exactly one entry when per_channel is false. Bias is always per
// column.
//
// The GEMM and convolution drivers apply the stage to each output tile while its accumulators
// are still in registers, so the int32 matrix never goes to memory unless kS32 is asked for. The
// scalar oracle is output_stage_ref.h (built on kernels/quantize's references).
#ifndef QLAB_KERNELS_QGEMM_OUTPUT_STAGE_H_
#define QLAB_KERNELS_QGEMM_OUTPUT_STAGE_H_

#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

enum class QOutputType : uint8_t {
  kS32,  // int32_t: acc (+ bias)
  kF32,  // float: dequantized
  kU8,   // uint8_t: requantized
  kS8,   // int8_t: requantized
};

enum class QRequantization : uint8_t {
  kFloat,       // fp32 multiplier
  kFixedPoint,  // int32 multiplier in [2^30, 2^31) and right shift in [31, 62]
  kFloatBias,   // fp32 accumulator scale, fp32 bias, then the fp32 inverse output scale
};

// QOutputStage: the parameters of the pipeline above. The kernels hold the pointers only for
// the duration of a call. Preconditions (validated by the operator that builds it):
//   - multipliers finite and > 0 (kF32, and kU8/kS8 with kFloat or kFloatBias);
//   - float_bias (optional, kF32 and kFloatBias) finite, one entry per output column;
//   - output_inverse_scale finite and > 0 (kU8/kS8 with kFloatBias);
//   - fixed_multipliers in [2^30, 2^31), shifts in [31, 62] (kU8/kS8 with kFixedPoint);
//   - min <= zero_point <= max is not required, but min <= max within the output type;
//   - acc + bias fits in int32 (true for any real layer: |acc| <= K * 255 * 128).
// Example, uint8 output with per-channel fp32 multipliers and fused ReLU:
//   QOutputStage s;
//   s.type = QOutputType::kU8;  s.bias = bias;  s.per_channel = true;
//   s.multipliers = mult;       s.zero_point = 3;  s.min = 3;  s.max = 255;
// The same layer with x86's float bias, as the fake-quant reference computes it:
//   s.requantization = QRequantization::kFloatBias;  s.bias = nullptr;
//   s.multipliers = acc_scales;  s.float_bias = bias_f32;  s.output_inverse_scale = 1.0f / y_scale;
struct QOutputStage {
  QOutputType type = QOutputType::kS32;
  const int32_t* bias = nullptr;
  bool per_channel = false;
  QRequantization requantization = QRequantization::kFloat;
  const float* multipliers = nullptr;
  const int32_t* fixed_multipliers = nullptr;
  const int32_t* shifts = nullptr;
  const float* float_bias = nullptr;  // per column; null: none
  float output_inverse_scale = 1.0f;
  int32_t zero_point = 0;
  int32_t min = 0;
  int32_t max = 0;
};

// Size in bytes of one output element of `type`.
constexpr size_t QOutputElementSize(QOutputType type) {
  return (type == QOutputType::kU8 || type == QOutputType::kS8) ? 1 : 4;
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QGEMM_OUTPUT_STAGE_H_
