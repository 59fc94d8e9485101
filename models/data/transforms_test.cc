// Unit tests of the preprocessing building blocks on hand-computed cases. Agreement with
// torchvision on real images is preprocess_conformance_test's job.
#include "models/data/transforms.h"

#include <cmath>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "models/data/pil_resize.h"

namespace qlab::data {
namespace {

Image Gradient(int height, int width) {
  Image image;
  image.height = height;
  image.width = width;
  image.rgb.resize(static_cast<size_t>(height) * width * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at(y, x, 0) = static_cast<uint8_t>((7 * x + 3 * y) % 256);
      image.at(y, x, 1) = static_cast<uint8_t>((x * y) % 256);
      image.at(y, x, 2) = static_cast<uint8_t>(255 - (11 * y) % 256);
    }
  }
  return image;
}

TEST(PilResizeTest, DownscaleTapsMatchHandComputation) {
  // 4 -> 2: scale 2, support 2. Output 0 is centred at 1.0 and reads inputs 0..2 with triangle
  // weights 0.75, 0.75, 0.25 (arguments -0.25, 0.25, 0.75), normalized to 3/7, 3/7, 1/7.
  const PilTaps taps = PilBilinearTaps(4, 2);
  ASSERT_EQ(taps.first[0], 0);
  ASSERT_EQ(taps.count[0], 3);
  const double unit = 1 << kPilPrecisionBits;
  EXPECT_EQ(taps.coeffs[taps.offset[0] + 0], static_cast<int32_t>(3.0 / 7 * unit + 0.5));
  EXPECT_EQ(taps.coeffs[taps.offset[0] + 1], static_cast<int32_t>(3.0 / 7 * unit + 0.5));
  EXPECT_EQ(taps.coeffs[taps.offset[0] + 2], static_cast<int32_t>(1.0 / 7 * unit + 0.5));
  // Output 1 is centred at 3.0: inputs 1..3 (4 is past the edge), weights 1/4, 3/4, 3/4.
  EXPECT_EQ(taps.first[1], 1);
  EXPECT_EQ(taps.count[1], 3);
}

TEST(PilResizeTest, UpscaleUsesTwoTapTriangle) {
  // 2 -> 4: scale 0.5, support 1. Output 1 is centred at 0.75: inputs 0 and 1 weigh 0.75 and 0.25.
  const PilTaps taps = PilBilinearTaps(2, 4);
  EXPECT_EQ(taps.first[1], 0);
  ASSERT_EQ(taps.count[1], 2);
  EXPECT_EQ(taps.coeffs[taps.offset[1]], 3 << (kPilPrecisionBits - 2));
  EXPECT_EQ(taps.coeffs[taps.offset[1] + 1], 1 << (kPilPrecisionBits - 2));
}

TEST(PilResizeTest, WeightsSumToOneForManyRatios) {
  for (int in : {1, 2, 3, 7, 32, 227, 500}) {
    for (int out : {1, 2, 5, 31, 224, 256, 341}) {
      const PilTaps taps = PilBilinearTaps(in, out);
      for (int o = 0; o < out; ++o) {
        int64_t sum = 0;
        for (int t = 0; t < taps.count[o]; ++t) sum += taps.coeffs[taps.offset[o] + t];
        // Each of <= ksize weights is rounded to the nearest unit: the sum is off by a few units.
        EXPECT_NEAR(sum, 1 << kPilPrecisionBits, taps.count[o]) << in << "->" << out;
        EXPECT_GE(taps.first[o], 0);
        EXPECT_LE(taps.first[o] + taps.count[o], in);
      }
    }
  }
}

TEST(PilResizeTest, SameSizeIsIdentityAndConstantStaysConstant) {
  const Image image = Gradient(9, 13);
  absl::StatusOr<Image> same = PilResizeBilinear(image, 9, 13);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->rgb, image.rgb);
  Image flat = Gradient(10, 10);
  std::fill(flat.rgb.begin(), flat.rgb.end(), 77);
  for (auto [h, w] : {std::pair{3, 4}, std::pair{25, 17}, std::pair{10, 31}}) {
    absl::StatusOr<Image> resized = PilResizeBilinear(flat, h, w);
    ASSERT_TRUE(resized.ok());
    for (uint8_t v : resized->rgb) ASSERT_EQ(v, 77);
  }
  EXPECT_FALSE(PilResizeBilinear(flat, 0, 4).ok());
  EXPECT_FALSE(PilResizeBilinear(Image{}, 4, 4).ok());
}

TEST(TransformsTest, ResizeShorterSideFollowsTorchvisionSizeRule) {
  // 375 wide, 500 high: width is short; new height int(256 * 500 / 375) = int(341.33) = 341.
  absl::StatusOr<Image> portrait = ResizeShorterSide(Gradient(500, 375), 256);
  ASSERT_TRUE(portrait.ok());
  EXPECT_EQ(portrait->width, 256);
  EXPECT_EQ(portrait->height, 341);
  absl::StatusOr<Image> square = ResizeShorterSide(Gradient(227, 227), 256);
  ASSERT_TRUE(square.ok());
  EXPECT_EQ(square->height, 256);
  EXPECT_EQ(square->width, 256);
}

TEST(TransformsTest, CenterCropRoundsHalfToEven) {
  // (257 - 224) / 2 = 16.5 rounds to 16; (259 - 224) / 2 = 17.5 rounds to 18 (Python round).
  const Image a = Gradient(257, 259);
  absl::StatusOr<Image> crop = CenterCrop(a, 224, 224);
  ASSERT_TRUE(crop.ok());
  EXPECT_EQ(crop->at(0, 0, 0), a.at(16, 18, 0));
  EXPECT_EQ(crop->at(0, 0, 1), a.at(16, 18, 1));
  EXPECT_EQ(crop->at(223, 223, 2), a.at(16 + 223, 18 + 223, 2));
}

TEST(TransformsTest, CenterCropPadsSmallImagesWithZeros) {
  // 3 wide into 6: padding left 1, right 2; the crop is the whole padded canvas.
  const Image small = Gradient(2, 3);
  absl::StatusOr<Image> crop = CenterCrop(small, 2, 6);
  ASSERT_TRUE(crop.ok());
  for (int y = 0; y < 2; ++y) {
    EXPECT_EQ(crop->at(y, 0, 2), 0);
    for (int x = 0; x < 3; ++x) EXPECT_EQ(crop->at(y, x + 1, 2), small.at(y, x, 2));
    EXPECT_EQ(crop->at(y, 4, 2), 0);
    EXPECT_EQ(crop->at(y, 5, 2), 0);
  }
}

TEST(TransformsTest, ToTensorNormalizeRoundsLikeTorchvision) {
  Image image = Gradient(1, 2);
  image.at(0, 0, 0) = 255;
  image.at(0, 1, 0) = 0;
  std::vector<float> chw(6);
  ToTensorNormalize(image, NormalizeParams{}, chw.data());
  const float one = 255.0f / 255.0f;
  EXPECT_EQ(chw[0], (one - 0.485f) / 0.229f);
  EXPECT_EQ(chw[1], (0.0f - 0.485f) / 0.229f);
  EXPECT_EQ(chw[2], (static_cast<float>(image.at(0, 0, 1)) / 255.0f - 0.456f) / 0.224f);
}

TEST(TransformsTest, FlipAndPaddedCrop) {
  const Image image = Gradient(4, 5);
  const Image flipped = FlipHorizontal(image);
  EXPECT_EQ(flipped.at(2, 0, 1), image.at(2, 4, 1));
  EXPECT_EQ(FlipHorizontal(flipped).rgb, image.rgb);
  // Window at (0, 0) of the 2-padded image: two rows and two columns of zeros, then the image.
  const Image crop = PaddedCrop(image, 2, 0, 0, 4, 5);
  EXPECT_EQ(crop.at(0, 0, 0), 0);
  EXPECT_EQ(crop.at(1, 4, 1), 0);
  EXPECT_EQ(crop.at(2, 2, 0), image.at(0, 0, 0));
  EXPECT_EQ(crop.at(3, 4, 2), image.at(1, 2, 2));
  EXPECT_EQ(PaddedCrop(image, 2, 2, 2, 4, 5).rgb, image.rgb);
}

TEST(TransformsTest, CifarAugmentationIsSeededAndCoversAllDraws) {
  const CifarTrainTransform augment(/*seed=*/123);
  const Image image = Gradient(32, 32);
  std::vector<float> a(3 * 32 * 32), b(3 * 32 * 32);
  ASSERT_TRUE(augment.Apply(image, 5, a.data()).ok());
  ASSERT_TRUE(augment.Apply(image, 5, b.data()).ok());
  EXPECT_EQ(a, b);
  ASSERT_TRUE(CifarTrainTransform(123).Apply(image, 5, b.data()).ok());
  EXPECT_EQ(a, b);  // a new transform object with the same seed draws the same

  std::set<std::pair<int, int>> offsets;
  int flips = 0;
  for (uint64_t key = 0; key < 4000; ++key) {
    const CifarTrainTransform::Draw draw = augment.DrawFor(key);
    ASSERT_GE(draw.top, 0);
    ASSERT_LE(draw.top, 8);
    ASSERT_GE(draw.left, 0);
    ASSERT_LE(draw.left, 8);
    offsets.insert({draw.top, draw.left});
    flips += draw.flip;
  }
  EXPECT_EQ(offsets.size(), 81u);  // every window of RandomCrop(32, padding=4)
  EXPECT_NEAR(flips, 2000, 200);   // p = 0.5; 200 is > 6 standard deviations (31.6)
  const CifarTrainTransform::Draw other = CifarTrainTransform(124).DrawFor(5);
  const CifarTrainTransform::Draw same_key = augment.DrawFor(5);
  EXPECT_FALSE(other.top == same_key.top && other.left == same_key.left &&
               other.flip == same_key.flip && CifarTrainTransform(125).DrawFor(5).top == same_key.top &&
               CifarTrainTransform(126).DrawFor(5).top == same_key.top);

  // The augmented pixels are the padded crop (flipped if drawn), normalized.
  const CifarTrainTransform::Draw draw = augment.DrawFor(5);
  Image expected = PaddedCrop(image, 4, draw.top, draw.left, 32, 32);
  if (draw.flip) expected = FlipHorizontal(expected);
  ToTensorNormalize(expected, NormalizeParams{}, b.data());
  EXPECT_EQ(a, b);
  EXPECT_FALSE(augment.Apply(Gradient(31, 32), 0, a.data()).ok());
}

}  // namespace
}  // namespace qlab::data
