// Transforms: decoded RGB Images to normalized float32 CHW pixels, exactly as torchvision 0.14
// computes them from PIL images, plus qlab's seeded CIFAR training augmentation.
//
// A Transform has a fixed output size so the batch loader can lay out NCHW batches up front, and
// is stateless (const, thread-safe): randomness comes only from the `sample_key` the loader passes
// (derived from a seed, the epoch and the sample index), so a sample's augmentation is the same
// whatever thread, batch size or prefetch depth produced it.
//
//   CifarEvalTransform cifar;                          // ToTensor + Normalize(ImageNet stats)
//   ImageNetEvalTransform imagenet;                    // Resize(256) + CenterCrop(224) + ...
//   CifarTrainTransform train(/*seed=*/7);             // pad 4 + random crop 32 + flip + ...
//   std::vector<float> chw(3 * 32 * 32);
//   QLAB_RETURN_IF_ERROR(cifar.Apply(image, /*sample_key=*/0, chw.data()));
#ifndef QLAB_MODELS_DATA_TRANSFORMS_H_
#define QLAB_MODELS_DATA_TRANSFORMS_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "models/data/image.h"

namespace qlab::data {

// Per-channel RGB statistics of torchvision's Normalize. The shared CIFAR checkpoints were trained
// with the ImageNet values (../shared/data/README.md).
struct NormalizeParams {
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};

// ToTensor + Normalize: chw[c][y][x] = (rgb / 255 - mean[c]) / std[c], each operation rounded to
// float32 in that order, which is what torchvision does (byte tensor .float().div(255), then
// .sub_(mean).div_(std)), so the result is bit-identical.
void ToTensorNormalize(const Image& image, const NormalizeParams& params, float* chw);

// torchvision's Resize(size) with one int: the shorter side becomes `size`, the longer
// int(size * long / short) (truncated), then PIL's antialiased bilinear resampling.
absl::StatusOr<Image> ResizeShorterSide(const Image& image, int size);

// torchvision's CenterCrop: zero padding first when the image is smaller than the crop (left/top
// get the floor of half the deficit), then the window at round((side - crop) / 2) with Python's
// round-half-to-even.
absl::StatusOr<Image> CenterCrop(const Image& image, int crop_height, int crop_width);

// torchvision's horizontal flip and zero-padded crop window (RandomCrop(padding=...) picks the
// window; qlab picks it from a seeded generator instead of torch's global one).
Image FlipHorizontal(const Image& image);
// The crop_height x crop_width window at (top, left) of `image` padded by `pad` zero pixels on
// every side. The window must lie inside the padded image (a caller bug otherwise).
Image PaddedCrop(const Image& image, int pad, int top, int left, int crop_height, int crop_width);

class Transform {
 public:
  virtual ~Transform() = default;
  virtual int out_height() const = 0;
  virtual int out_width() const = 0;
  // Writes 3 * out_height() * out_width() floats (CHW) to `chw`. Errors name the problem (e.g. an
  // image of the wrong size); the loader adds the file name.
  virtual absl::Status Apply(const Image& image, uint64_t sample_key, float* chw) const = 0;
};

// CIFAR evaluation: the image must already be 32x32 (no resize), then ToTensorNormalize.
class CifarEvalTransform : public Transform {
 public:
  explicit CifarEvalTransform(NormalizeParams params = {}, int size = 32)
      : params_(params), size_(size) {}
  int out_height() const override { return size_; }
  int out_width() const override { return size_; }
  absl::Status Apply(const Image& image, uint64_t sample_key, float* chw) const override;

 private:
  NormalizeParams params_;
  int size_;
};

// ImageNet evaluation: Resize(resize) + CenterCrop(crop) + ToTensor + Normalize.
class ImageNetEvalTransform : public Transform {
 public:
  explicit ImageNetEvalTransform(NormalizeParams params = {}, int resize = 256, int crop = 224)
      : params_(params), resize_(resize), crop_(crop) {}
  int out_height() const override { return crop_; }
  int out_width() const override { return crop_; }
  absl::Status Apply(const Image& image, uint64_t sample_key, float* chw) const override;

 private:
  NormalizeParams params_;
  int resize_, crop_;
};

// CIFAR training augmentation: RandomCrop(32, padding=4) (zero fill) + RandomHorizontalFlip(0.5)
// + ToTensor + Normalize. The crop offsets and the flip are drawn from a generator seeded by
// (seed, sample_key): reproducible, and independent between samples.
class CifarTrainTransform : public Transform {
 public:
  explicit CifarTrainTransform(uint64_t seed, NormalizeParams params = {}, int size = 32,
                               int padding = 4)
      : seed_(seed), params_(params), size_(size), padding_(padding) {}
  int out_height() const override { return size_; }
  int out_width() const override { return size_; }
  absl::Status Apply(const Image& image, uint64_t sample_key, float* chw) const override;

  // The draw Apply makes for `sample_key`: crop offsets in the padded image, flip or not.
  struct Draw {
    int top, left;
    bool flip;
  };
  Draw DrawFor(uint64_t sample_key) const;

 private:
  uint64_t seed_;
  NormalizeParams params_;
  int size_, padding_;
};

}  // namespace qlab::data

#endif  // QLAB_MODELS_DATA_TRANSFORMS_H_
