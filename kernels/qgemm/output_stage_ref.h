// Scalar reference (oracle) of the output stage in kernels/qgemm/output_stage.h.
//
// Applies the pipeline to an exact int32 accumulator matrix (from QGemmXS8S32Ref or a reference
// convolution), one row at a time, straight from the formulas: bias in plain integer arithmetic,
// then kernels/quantize's own reference requantization and dequantization (RequantizeRef,
// RequantizeFixedPointRef, DequantizeRef), so that the fused GEMM epilogue is held to exactly the
// semantics of the stand-alone requantize kernels. The float-bias mode is the float layer output
// followed by kernels/quantize's own quantization rounding (ClampRoundedRef, as QuantizeRef and
// FakeQuantizeRef apply it to v * inverse_scale). Every Highway target must reproduce it bit for
// bit, floats included (each step is one IEEE operation; qlab builds with -ffp-contract=off).
#ifndef QLAB_KERNELS_QGEMM_OUTPUT_STAGE_REF_H_
#define QLAB_KERNELS_QGEMM_OUTPUT_STAGE_REF_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/qgemm/output_stage.h"
#include "kernels/quantize/quantize.h"
#include "kernels/quantize/quantize_ref.h"

namespace qlab::kernels {

// output_stage_s32_to_{s32,f32,u8,s8}_ref: acc is M x N (stride ldacc); `out` is M x N elements
// of the stage's output type with row stride ldc (in elements).
inline void QOutputStageRef(const int32_t* acc, size_t m, size_t n, size_t ldacc,
                            const QOutputStage& stage, void* out, size_t ldc) {
  std::vector<int32_t> row(n);
  // Per-channel parameters are {1, n, 1} dims; per-tensor ones {1, 1, n}.
  const ChannelDims dims = stage.per_channel ? ChannelDims{1, n, 1} : ChannelDims{1, 1, n};
  const std::vector<int32_t> zero_zero_points(dims.channels, 0);
  const RequantizeOutput requant{stage.zero_point, stage.min, stage.max};
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const int64_t biased = int64_t{acc[i * ldacc + j]} + (stage.bias ? stage.bias[j] : 0);
      row[j] = static_cast<int32_t>(biased);
    }
    switch (stage.type) {
      case QOutputType::kS32:
        for (size_t j = 0; j < n; ++j) static_cast<int32_t*>(out)[i * ldc + j] = row[j];
        break;
      case QOutputType::kF32:
        // float(acc - 0) * scale: dequantization with zero point 0.
        DequantizeRef(row.data(), dims, stage.multipliers, zero_zero_points.data(),
                      static_cast<float*>(out) + i * ldc);
        if (stage.float_bias != nullptr) {
          for (size_t j = 0; j < n; ++j)
            static_cast<float*>(out)[i * ldc + j] += stage.float_bias[j];
        }
        break;
      case QOutputType::kU8:
      case QOutputType::kS8: {
        auto requantize = [&](auto* y) {
          using Q = std::remove_pointer_t<decltype(y)>;
          if (stage.requantization == QRequantization::kFloatBias) {
            for (size_t j = 0; j < n; ++j) {
              const float scale = stage.multipliers[stage.per_channel ? j : 0];
              float value = static_cast<float>(row[j]) * scale;  // the layer's float output
              if (stage.float_bias != nullptr) value += stage.float_bias[j];
              y[i * ldc + j] = static_cast<Q>(ClampRoundedRef(
                  value * stage.output_inverse_scale, stage.zero_point, stage.min, stage.max));
            }
          } else if (stage.requantization == QRequantization::kFloat) {
            RequantizeRef(row.data(), dims, stage.multipliers, requant, y + i * ldc);
          } else {
            RequantizeFixedPointRef(row.data(), dims, stage.fixed_multipliers, stage.shifts,
                                    requant, y + i * ldc);
          }
        };
        if (stage.type == QOutputType::kU8) {
          requantize(static_cast<uint8_t*>(out));
        } else {
          requantize(static_cast<int8_t*>(out));
        }
        break;
      }
    }
  }
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QGEMM_OUTPUT_STAGE_REF_H_
