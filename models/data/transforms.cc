// torchvision-equivalent preprocessing (models/data/transforms.h). Each function mirrors one
// torchvision 0.14 functional on PIL images; comments give the torchvision rule it reproduces.
#include "models/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/check.h"
#include "core/status_macros.h"
#include "models/data/pil_resize.h"
#include "models/data/random.h"

namespace qlab::data {

void ToTensorNormalize(const Image& image, const NormalizeParams& params, float* chw) {
  const size_t plane = static_cast<size_t>(image.height) * image.width;
  for (int c = 0; c < 3; ++c) {
    const float mean = params.mean[c], std = params.std[c];
    float* out = chw + c * plane;
    for (size_t i = 0; i < plane; ++i) {
      // Three float32 roundings in torchvision's order: /255, -mean, /std. Not (x - m*255)/(s*255)
      // or a multiply by 1/255: those differ in the last bit.
      const float unit = static_cast<float>(image.rgb[3 * i + c]) / 255.0f;
      out[i] = (unit - mean) / std;
    }
  }
}

absl::StatusOr<Image> ResizeShorterSide(const Image& image, int size) {
  if (image.height <= 0 || image.width <= 0 || size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resize a ", image.height, "x",
                                                   image.width, " image to shorter side ", size));
  }
  // torchvision: short, long = sorted sides; new_long = int(size * long / short) (Python true
  // division of exact integers, then truncation): the double quotient below is the same value.
  const bool width_is_short = image.width <= image.height;
  const int64_t short_side = width_is_short ? image.width : image.height;
  const int64_t long_side = width_is_short ? image.height : image.width;
  const double new_long_exact =
      static_cast<double>(int64_t{size} * long_side) / static_cast<double>(short_side);
  if (new_long_exact > kMaxImageSide) {
    return absl::InvalidArgumentError(absl::StrCat("resizing ", image.height, "x", image.width,
                                                   " to shorter side ", size, " exceeds ",
                                                   kMaxImageSide, " pixels per side"));
  }
  const int new_long = static_cast<int>(new_long_exact);
  return width_is_short ? PilResizeBilinear(image, new_long, size)
                        : PilResizeBilinear(image, size, new_long);
}

Image FlipHorizontal(const Image& image) {
  Image out = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < 3; ++c) out.at(y, x, c) = image.at(y, image.width - 1 - x, c);
    }
  }
  return out;
}

Image PaddedCrop(const Image& image, int pad, int top, int left, int crop_height,
                 int crop_width) {
  QLAB_CHECK(top >= 0 && left >= 0 && top + crop_height <= image.height + 2 * pad &&
             left + crop_width <= image.width + 2 * pad);
  Image out;
  out.height = crop_height;
  out.width = crop_width;
  out.rgb.assign(static_cast<size_t>(crop_height) * crop_width * 3, 0);
  for (int y = 0; y < crop_height; ++y) {
    const int source_y = top + y - pad;
    if (source_y < 0 || source_y >= image.height) continue;  // zero padding row
    for (int x = 0; x < crop_width; ++x) {
      const int source_x = left + x - pad;
      if (source_x < 0 || source_x >= image.width) continue;
      for (int c = 0; c < 3; ++c) out.at(y, x, c) = image.at(source_y, source_x, c);
    }
  }
  return out;
}

absl::StatusOr<Image> CenterCrop(const Image& image, int crop_height, int crop_width) {
  if (crop_height <= 0 || crop_width <= 0 || crop_height > kMaxImageSide ||
      crop_width > kMaxImageSide) {
    return absl::InvalidArgumentError(
        absl::StrCat("center crop ", crop_height, "x", crop_width, " out of range"));
  }
  // torchvision pads a too-small image with zeros first: left/top get deficit // 2, right/bottom
  // (deficit + 1) // 2, so the image sits at the centre of the padded canvas.
  const int pad_top = crop_height > image.height ? (crop_height - image.height) / 2 : 0;
  const int pad_left = crop_width > image.width ? (crop_width - image.width) / 2 : 0;
  const int padded_height = std::max(image.height, crop_height);
  const int padded_width = std::max(image.width, crop_width);
  // int(round((side - crop) / 2.0)): Python rounds halves to even, as nearbyint does by default.
  const int top = static_cast<int>(std::nearbyint((padded_height - crop_height) / 2.0));
  const int left = static_cast<int>(std::nearbyint((padded_width - crop_width) / 2.0));
  Image out;
  out.height = crop_height;
  out.width = crop_width;
  out.rgb.assign(static_cast<size_t>(crop_height) * crop_width * 3, 0);
  for (int y = 0; y < crop_height; ++y) {
    const int source_y = top + y - pad_top;
    if (source_y < 0 || source_y >= image.height) continue;
    for (int x = 0; x < crop_width; ++x) {
      const int source_x = left + x - pad_left;
      if (source_x < 0 || source_x >= image.width) continue;
      for (int c = 0; c < 3; ++c) out.at(y, x, c) = image.at(source_y, source_x, c);
    }
  }
  return out;
}

absl::Status CifarEvalTransform::Apply(const Image& image, uint64_t /*sample_key*/,
                                       float* chw) const {
  if (image.height != size_ || image.width != size_) {
    return absl::InvalidArgumentError(absl::StrCat("CIFAR transform expects ", size_, "x", size_,
                                                   " images, got ", image.height, "x",
                                                   image.width));
  }
  ToTensorNormalize(image, params_, chw);
  return absl::OkStatus();
}

absl::Status ImageNetEvalTransform::Apply(const Image& image, uint64_t /*sample_key*/,
                                          float* chw) const {
  QLAB_ASSIGN_OR_RETURN(Image resized, ResizeShorterSide(image, resize_));
  QLAB_ASSIGN_OR_RETURN(Image cropped, CenterCrop(resized, crop_, crop_));
  ToTensorNormalize(cropped, params_, chw);
  return absl::OkStatus();
}

CifarTrainTransform::Draw CifarTrainTransform::DrawFor(uint64_t sample_key) const {
  SplitMix64 rng(MixSeed(seed_, sample_key));
  // RandomCrop: offsets uniform in [0, padded - size] per axis; then RandomHorizontalFlip(0.5).
  const uint64_t positions = static_cast<uint64_t>(2 * padding_ + 1);
  Draw draw;
  draw.top = static_cast<int>(rng.Below(positions));
  draw.left = static_cast<int>(rng.Below(positions));
  draw.flip = (rng.Next() >> 63) != 0;
  return draw;
}

absl::Status CifarTrainTransform::Apply(const Image& image, uint64_t sample_key,
                                        float* chw) const {
  if (image.height != size_ || image.width != size_) {
    return absl::InvalidArgumentError(absl::StrCat("CIFAR training transform expects ", size_,
                                                   "x", size_, " images, got ", image.height,
                                                   "x", image.width));
  }
  const Draw draw = DrawFor(sample_key);
  Image cropped = PaddedCrop(image, padding_, draw.top, draw.left, size_, size_);
  if (draw.flip) cropped = FlipHorizontal(cropped);
  ToTensorNormalize(cropped, params_, chw);
  return absl::OkStatus();
}

}  // namespace qlab::data
