// The resampling described in models/data/pil_resize.h. Arithmetic choices follow Pillow exactly
// where they can change a rounded pixel: weights computed in double with the filter argument
// multiplied by the reciprocal of the filter scale, window bounds truncated toward zero, and the
// 22-bit fixed-point conversion rounded half away from zero.
#include "models/data/pil_resize.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qlab::data {
namespace {

// Pillow's bilinear filter: a triangle of half-width 1.
double Triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Fixed-point value of a normalized weight, rounded half away from zero as Pillow does.
int32_t ToFixed(double weight) {
  const double scaled = weight * static_cast<double>(1 << kPilPrecisionBits);
  return static_cast<int32_t>(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
}

// Accumulator (which starts at half a unit, so the shift rounds) back to a clamped uint8.
uint8_t ClampShift(int64_t accumulator) {
  const int64_t v = accumulator >> kPilPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

constexpr int64_t kHalf = int64_t{1} << (kPilPrecisionBits - 1);

// One horizontal pass: every row of `in` resampled to `taps.first.size()` columns.
Image ResampleHorizontal(const Image& in, const PilTaps& taps) {
  Image out;
  out.height = in.height;
  out.width = static_cast<int>(taps.first.size());
  out.rgb.assign(static_cast<size_t>(out.height) * out.width * 3, 0);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* row = &in.rgb[static_cast<size_t>(y) * in.width * 3];
    uint8_t* out_row = &out.rgb[static_cast<size_t>(y) * out.width * 3];
    for (int x = 0; x < out.width; ++x) {
      const int32_t* k = &taps.coeffs[taps.offset[x]];
      const uint8_t* src = row + static_cast<size_t>(taps.first[x]) * 3;
      int64_t r = kHalf, g = kHalf, b = kHalf;
      for (int t = 0; t < taps.count[x]; ++t) {
        r += int64_t{src[3 * t + 0]} * k[t];
        g += int64_t{src[3 * t + 1]} * k[t];
        b += int64_t{src[3 * t + 2]} * k[t];
      }
      out_row[3 * x + 0] = ClampShift(r);
      out_row[3 * x + 1] = ClampShift(g);
      out_row[3 * x + 2] = ClampShift(b);
    }
  }
  return out;
}

// One vertical pass: every column of `in` resampled to `taps.first.size()` rows.
Image ResampleVertical(const Image& in, const PilTaps& taps) {
  Image out;
  out.height = static_cast<int>(taps.first.size());
  out.width = in.width;
  const size_t row_bytes = static_cast<size_t>(in.width) * 3;
  out.rgb.assign(static_cast<size_t>(out.height) * row_bytes, 0);
  for (int y = 0; y < out.height; ++y) {
    const int32_t* k = &taps.coeffs[taps.offset[y]];
    const uint8_t* src = &in.rgb[static_cast<size_t>(taps.first[y]) * row_bytes];
    uint8_t* out_row = &out.rgb[static_cast<size_t>(y) * row_bytes];
    for (size_t i = 0; i < row_bytes; ++i) {
      int64_t acc = kHalf;
      for (int t = 0; t < taps.count[y]; ++t) acc += int64_t{src[t * row_bytes + i]} * k[t];
      out_row[i] = ClampShift(acc);
    }
  }
  return out;
}

}  // namespace

PilTaps PilBilinearTaps(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  // Shrinking widens the filter (antialiasing); enlarging keeps the unit triangle.
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;
  const double inverse_filter_scale = 1.0 / filter_scale;
  PilTaps taps;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.offset.resize(out_size);
  std::vector<double> weights;
  for (int o = 0; o < out_size; ++o) {
    const double center = (o + 0.5) * scale;
    // Truncation toward zero, as Pillow's (int) casts.
    const int first = std::max(0, static_cast<int>(center - support + 0.5));
    const int last = std::min(in_size, static_cast<int>(center + support + 0.5));
    const int count = std::max(0, last - first);
    weights.assign(count, 0.0);
    double sum = 0.0;
    for (int t = 0; t < count; ++t) {
      weights[t] = Triangle((t + first - center + 0.5) * inverse_filter_scale);
      sum += weights[t];
    }
    taps.first[o] = first;
    taps.count[o] = count;
    taps.offset[o] = static_cast<int>(taps.coeffs.size());
    for (int t = 0; t < count; ++t) {
      taps.coeffs.push_back(ToFixed(sum != 0.0 ? weights[t] / sum : weights[t]));
    }
  }
  return taps;
}

absl::StatusOr<Image> PilResizeBilinear(const Image& image, int out_height, int out_width) {
  if (image.height <= 0 || image.width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resize an empty ", image.height, "x", image.width, " image"));
  }
  if (out_height <= 0 || out_width <= 0 || out_height > kMaxImageSide ||
      out_width > kMaxImageSide) {
    return absl::InvalidArgumentError(absl::StrCat("resize target ", out_height, "x", out_width,
                                                   " outside [1, ", kMaxImageSide, "] per side"));
  }
  // Pillow skips a pass whose side keeps its size: no rounding is applied in that direction.
  Image result = image;
  if (out_width != image.width) {
    result = ResampleHorizontal(result, PilBilinearTaps(image.width, out_width));
  }
  if (out_height != image.height) {
    result = ResampleVertical(result, PilBilinearTaps(image.height, out_height));
  }
  return result;
}

}  // namespace qlab::data
