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
//      kF32   y = float(acc) * multipliers[n]                            (dequantized output:
//             multipliers[n] = input_scale * weight_scale[n])
//      kU8/kS8, requantization (the formulas of kernels/quantize's Requantize, bit for bit):
//        kFloat       y = clamp(nearbyint(float(acc) * multipliers[n]) + zero_point, min, max)
//                     (float arithmetic, rounding half to even; XNNPACK's "fp32")
//        kFixedPoint  p = int64(acc) * fixed_multipliers[n],
//                     y = clamp(((p + 2^(shifts[n]-1)) >> shifts[n]) + zero_point, min, max)
//                     (rounding half up; XNNPACK's "rndnu"; quant/qparams.h QuantizeMultiplier
//                     turns a real multiplier into the pair)
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
};

// QOutputStage: the parameters of the pipeline above. The kernels hold the pointers only for
// the duration of a call. Preconditions (validated by the operator that builds it):
//   - multipliers finite and > 0 (kF32, and kU8/kS8 with kFloat);
//   - fixed_multipliers in [2^30, 2^31), shifts in [31, 62] (kU8/kS8 with kFixedPoint);
//   - min <= zero_point <= max is not required, but min <= max within the output type;
//   - acc + bias fits in int32 (true for any real layer: |acc| <= K * 255 * 128).
// Example, uint8 output with per-channel fp32 multipliers and fused ReLU:
//   QOutputStage s;
//   s.type = QOutputType::kU8;  s.bias = bias;  s.per_channel = true;
//   s.multipliers = mult;       s.zero_point = 3;  s.min = 3;  s.max = 255;
struct QOutputStage {
  QOutputType type = QOutputType::kS32;
  const int32_t* bias = nullptr;
  bool per_channel = false;
  QRequantization requantization = QRequantization::kFloat;
  const float* multipliers = nullptr;
  const int32_t* fixed_multipliers = nullptr;
  const int32_t* shifts = nullptr;
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
