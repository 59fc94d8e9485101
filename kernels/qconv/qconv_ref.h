// Scalar reference (oracle) of kernels/qconv/qconv.h: the convolution as seven plain loops.
//
// Written straight from the definition, sharing nothing with the operator (no packing, no
// indirection, no im2col, no column sums): the input zero point is subtracted from every input
// byte, padding taps are skipped (they would contribute (zp - zp) * w = 0, which is what the
// operator's zero-point rows compute), sums are int64. The output stage is then
// output_stage_ref.h's. The operator must reproduce it bit for bit.
#ifndef QLAB_KERNELS_QCONV_QCONV_REF_H_
#define QLAB_KERNELS_QCONV_QCONV_REF_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/qconv/qconv.h"
#include "kernels/qgemm/output_stage.h"
#include "kernels/qgemm/output_stage_ref.h"

namespace qlab::kernels {

// conv_nhwc_u8s8s32_ref: acc is batch x OH x OW x cout int32.
inline void QConvU8S8S32_NHWC_Ref(const QConvShape& s, const uint8_t* input,
                                  int32_t input_zero_point, const int8_t* weights_ohwi,
                                  int32_t* acc) {
  const size_t out_h = s.output_height(), out_w = s.output_width();
  for (size_t b = 0; b < s.batch; ++b) {
    for (size_t oy = 0; oy < out_h; ++oy) {
      for (size_t ox = 0; ox < out_w; ++ox) {
        for (size_t o = 0; o < s.output_channels; ++o) {
          int64_t sum = 0;
          for (size_t ky = 0; ky < s.kernel_height; ++ky) {
            const int64_t iy = static_cast<int64_t>(oy * s.stride_height + ky) -
                               static_cast<int64_t>(s.padding_top);
            if (iy < 0 || iy >= static_cast<int64_t>(s.input_height)) continue;
            for (size_t kx = 0; kx < s.kernel_width; ++kx) {
              const int64_t ix = static_cast<int64_t>(ox * s.stride_width + kx) -
                                 static_cast<int64_t>(s.padding_left);
              if (ix < 0 || ix >= static_cast<int64_t>(s.input_width)) continue;
              for (size_t ci = 0; ci < s.input_channels; ++ci) {
                const int64_t x =
                    input[((b * s.input_height + static_cast<size_t>(iy)) * s.input_width +
                           static_cast<size_t>(ix)) *
                              s.input_channels +
                          ci];
                const int64_t w =
                    weights_ohwi[((o * s.kernel_height + ky) * s.kernel_width + kx) *
                                     s.input_channels +
                                 ci];
                sum += (x - input_zero_point) * w;
              }
            }
          }
          acc[((b * out_h + oy) * out_w + ox) * s.output_channels + o] =
              static_cast<int32_t>(sum);
        }
      }
    }
  }
}

// The full operator: 7-loop convolution, then the output stage. `output` holds
// batch x OH x OW x cout elements of stage.type.
inline void QConvU8S8_NHWC_Ref(const QConvShape& s, const uint8_t* input,
                               int32_t input_zero_point, const int8_t* weights_ohwi,
                               const QOutputStage& stage, void* output) {
  const size_t m = s.batch * s.output_height() * s.output_width();
  std::vector<int32_t> acc(m * s.output_channels);
  QConvU8S8S32_NHWC_Ref(s, input, input_zero_point, weights_ohwi, acc.data());
  QOutputStageRef(acc.data(), m, s.output_channels, s.output_channels, stage, output,
                  s.output_channels);
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_QCONV_QCONV_REF_H_
