// PIL-identical antialiased bilinear resize: the resampling torchvision 0.14's Resize applies to
// PIL images (Image.resize(size, BILINEAR) in Pillow 9.x), written from Pillow's documented
// algorithm so qlab's ImageNet preprocessing produces the same uint8 pixels torchvision does.
//
// It is NOT OpenCV's INTER_LINEAR (a 2-tap interpolation that aliases when shrinking):
//  - Separable: a horizontal pass, then a vertical pass, each skipped when that side keeps its
//    size. The intermediate image is rounded and clamped to uint8 between the passes.
//  - Each output pixel o samples around center = (o + 0.5) * scale in input coordinates with a
//    triangle filter whose support grows with the downscale factor (support = max(scale, 1));
//    taps are input pixels [int(center - support + 0.5), int(center + support + 0.5)) clipped to
//    the image, weights triangle((i - center + 0.5) / max(scale, 1)) normalized to sum to 1.
//  - The normalized weights become 22-bit fixed point (rounded half away from zero); each output
//    accumulates from 2^21 (a rounding half) and is shifted right by 22 and clamped to [0, 255].
//
//   QLAB_ASSIGN_OR_RETURN(Image small, PilResizeBilinear(image, /*out_height=*/256,
//                                                        /*out_width=*/341));
#ifndef QLAB_MODELS_DATA_PIL_RESIZE_H_
#define QLAB_MODELS_DATA_PIL_RESIZE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "models/data/image.h"

namespace qlab::data {

// The fixed-point taps of one resampling pass from `in_size` to `out_size` pixels. Output pixel o
// reads input pixels first[o] .. first[o] + count[o] - 1 with weights
// coeffs[offset[o] .. offset[o] + count[o]), each in units of 2^-kPilPrecisionBits.
struct PilTaps {
  std::vector<int> first, count, offset;
  std::vector<int32_t> coeffs;
};

// Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2, leaving headroom for 255 * sum(weights).
inline constexpr int kPilPrecisionBits = 22;

// Taps of the antialiased bilinear (triangle) filter. Both sizes must be positive.
PilTaps PilBilinearTaps(int in_size, int out_size);

// `image` resized to out_height x out_width as PIL's resize(BILINEAR) does. InvalidArgument for a
// non-positive or oversized target or an empty input.
absl::StatusOr<Image> PilResizeBilinear(const Image& image, int out_height, int out_width);

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_PIL_RESIZE_H_
