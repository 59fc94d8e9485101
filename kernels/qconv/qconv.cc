// QConvU8S8_NHWC: validation and weight packing (Create), and the tiled implicit-GEMM driver
// (Run) over kernels/qgemm's indirect GEMM. See qconv.h for the algorithm. No SIMD here: the
// arithmetic all happens in the GEMM micro-kernels (dispatched there); this file only decides
// which input bytes form each row of A and which thread computes which output tile.
#include "kernels/qconv/qconv.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace qlab::kernels {
namespace {

// Output pixels per tile: at most 8 VNNI row tiles of 12. Small enough that two threads get enough tiles to
// balance on the 7x7 and 14x14 layers when combined with the channel split below, large enough
// that the per-tile setup (indirection pointers, the stage's per-panel parameters) is noise.
constexpr size_t kTileRows = 96;
// Blocks are cut in multiples of the VNNI tile's 12 rows where possible, or of the AMX tile's
// 16 rows when the GEMM runs AMX (partial AMX tiles compute all 16 rows and copy their A rows).
constexpr size_t kRowTileMultiple = 12;
constexpr size_t kAmxRowTileMultiple = 16;
// The AMX path's K block (64 bytes): rows of whole blocks can be read in place.
constexpr size_t kAmxKBlockBytes = 64;

absl::Status CheckOutputArray(size_t size, size_t channels, const char* name) {
  if (size != 1 && size != channels) {
    return absl::InvalidArgumentError(absl::StrCat("QConv output stage: ", name, " has ", size,
                                                   " entries, want 1 or ", channels));
  }
  return absl::OkStatus();
}

absl::Status ValidateOutput(const QConvOutput& out, size_t channels) {
  const bool requantizes = out.type == QOutputType::kU8 || out.type == QOutputType::kS8;
  const bool float_multipliers =
      out.type == QOutputType::kF32 ||
      (requantizes && out.requantization != QRequantization::kFixedPoint);
  if (float_multipliers) {
    if (absl::Status s = CheckOutputArray(out.multipliers.size(), channels, "multipliers");
        !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < out.multipliers.size(); ++i) {
      if (!std::isfinite(out.multipliers[i]) || out.multipliers[i] <= 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat(
            "QConv output stage: multipliers[", i, "] = ", out.multipliers[i],
            " is not finite and positive"));
      }
    }
  }
  if (!out.float_bias.empty() && out.float_bias.size() != channels) {
    return absl::InvalidArgumentError(absl::StrCat("QConv output stage: float_bias has ",
                                                   out.float_bias.size(), " entries, want ",
                                                   channels));
  }
  for (size_t i = 0; i < out.float_bias.size(); ++i) {
    if (!std::isfinite(out.float_bias[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("QConv output stage: float_bias[", i, "] = ", out.float_bias[i],
                       " is not finite"));
    }
  }
  if (requantizes && out.requantization == QRequantization::kFloatBias &&
      (!std::isfinite(out.output_inverse_scale) || out.output_inverse_scale <= 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("QConv output stage: output_inverse_scale = ", out.output_inverse_scale,
                     " is not finite and positive"));
  }
  if (requantizes && out.requantization == QRequantization::kFixedPoint) {
    if (absl::Status s =
            CheckOutputArray(out.fixed_multipliers.size(), channels, "fixed_multipliers");
        !s.ok()) {
      return s;
    }
    if (out.shifts.size() != out.fixed_multipliers.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("QConv output stage: ", out.shifts.size(), " shifts for ",
                       out.fixed_multipliers.size(), " fixed_multipliers"));
    }
    for (size_t i = 0; i < out.shifts.size(); ++i) {
      if (out.fixed_multipliers[i] < (int32_t{1} << 30) || out.shifts[i] < 31 ||
          out.shifts[i] > 62) {
        return absl::InvalidArgumentError(absl::StrCat(
            "QConv output stage: fixed_multipliers[", i, "] = ", out.fixed_multipliers[i],
            " / shifts[", i, "] = ", out.shifts[i], " outside [2^30, 2^31) / [31, 62]"));
      }
    }
  }
  if (requantizes) {
    const int32_t lo = out.type == QOutputType::kU8 ? 0 : -128;
    const int32_t hi = out.type == QOutputType::kU8 ? 255 : 127;
    if (out.min > out.max || out.min < lo || out.max > hi) {
      return absl::InvalidArgumentError(absl::StrCat("QConv output stage: clamp [", out.min, ", ",
                                                     out.max, "] not within [", lo, ", ", hi,
                                                     "]"));
    }
    // The fixed-point stage clamps before adding the zero point (min - zp, max - zp).
    if (out.zero_point < -(1 << 24) || out.zero_point > (1 << 24)) {
      return absl::InvalidArgumentError(
          absl::StrCat("QConv output stage: zero_point ", out.zero_point, " out of range"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateShape(const QConvShape& s) {
  const std::pair<const char*, size_t> positive[] = {
      {"batch", s.batch},
      {"input_height", s.input_height},
      {"input_width", s.input_width},
      {"input_channels", s.input_channels},
      {"output_channels", s.output_channels},
      {"kernel_height", s.kernel_height},
      {"kernel_width", s.kernel_width},
      {"stride_height", s.stride_height},
      {"stride_width", s.stride_width}};
  for (const auto& [name, value] : positive) {
    if (value == 0) return absl::InvalidArgumentError(absl::StrCat("QConvShape: ", name, " is 0"));
  }
  if (s.padding_top >= s.kernel_height || s.padding_bottom >= s.kernel_height ||
      s.padding_left >= s.kernel_width || s.padding_right >= s.kernel_width) {
    return absl::InvalidArgumentError(absl::StrCat(
        "QConvShape: padding (", s.padding_top, ", ", s.padding_left, ", ", s.padding_bottom,
        ", ", s.padding_right, ") must be smaller than the kernel ", s.kernel_height, "x",
        s.kernel_width));
  }
  if (s.input_height + s.padding_top + s.padding_bottom < s.kernel_height ||
      s.input_width + s.padding_left + s.padding_right < s.kernel_width) {
    return absl::InvalidArgumentError(absl::StrCat("QConvShape: padded input ", s.input_height,
                                                   "x", s.input_width,
                                                   " smaller than the kernel"));
  }
  const size_t k = s.kernel_height * s.kernel_width * s.input_channels;
  if (k > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("QConvShape: K = kh * kw * cin = ", k, " exceeds 65536"));
  }
  return absl::OkStatus();
}

// The (per-thread) buffers of one tile: indirection pointers and, for im2col, the gathered rows.
// thread_local so that each pool thread allocates once and reuses.
struct TileScratch {
  std::vector<const uint8_t*> indirection;
  std::vector<uint8_t> rows;
};
thread_local TileScratch tile_scratch;

}  // namespace

absl::StatusOr<QConvU8S8_NHWC> QConvU8S8_NHWC::Create(const QConvShape& shape,
                                                      int32_t input_zero_point,
                                                      const int8_t* weights_ohwi,
                                                      const int32_t* bias,
                                                      const QConvOutput& output) {
  if (absl::Status s = ValidateShape(shape); !s.ok()) return s;
  if (input_zero_point < 0 || input_zero_point > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("QConv: input_zero_point ", input_zero_point, " outside [0, 255]"));
  }
  if (weights_ohwi == nullptr) return absl::InvalidArgumentError("QConv: weights are null");
  if (absl::Status s = ValidateOutput(output, shape.output_channels); !s.ok()) return s;

  QConvU8S8_NHWC conv;
  conv.shape_ = shape;
  conv.input_zero_point_ = input_zero_point;
  const size_t k = shape.kernel_height * shape.kernel_width * shape.input_channels;
  // Gathered (im2col) rows of a GEMM running AMX get K padded to whole 64-byte blocks with zero
  // weights (the stem: 147 -> 192): the tiles then read the rows in place instead of copying
  // them again, and no tail block is needed. Zero weights add nothing whatever the padding bytes
  // of a row hold, and leave the column sums (hence the zero-point correction) unchanged.
  const bool gathers = shape.kernel_height * shape.kernel_width > 1 &&
                       shape.input_channels % kQGemmKGroup != 0;
  const size_t packed_k =
      gathers && QGemmUsesAmx() ? (k + kAmxKBlockBytes - 1) / kAmxKBlockBytes * kAmxKBlockBytes
                                : k;
  if (packed_k == k) {
    // OHWI is B transposed: B[k][o] = w[o * K + k].
    conv.packed_ = PackWeightsStrided(weights_ohwi, k, shape.output_channels, 1, k);
  } else {
    std::vector<int8_t> padded(shape.output_channels * packed_k, 0);
    for (size_t o = 0; o < shape.output_channels; ++o) {
      std::memcpy(&padded[o * packed_k], weights_ohwi + o * k, k);
    }
    conv.packed_ =
        PackWeightsStrided(padded.data(), packed_k, shape.output_channels, 1, packed_k);
  }
  if (bias != nullptr) conv.bias_.assign(bias, bias + shape.output_channels);
  conv.output_ = output;
  conv.zero_row_.assign(shape.input_channels, static_cast<uint8_t>(input_zero_point));
  return conv;
}

absl::Status QConvU8S8_NHWC::Update(int32_t input_zero_point, PackedWeights& weights,
                                    const QConvOutput& output) {
  if (input_zero_point < 0 || input_zero_point > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("QConv: input_zero_point ", input_zero_point, " outside [0, 255]"));
  }
  if (weights.k != packed_.k || weights.n != packed_.n || weights.k_groups != packed_.k_groups ||
      weights.panels != packed_.panels || weights.data.size() != packed_.data.size() ||
      weights.column_sums.size() != packed_.column_sums.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "QConv: Update with weights packed as K = ", weights.k, ", N = ", weights.n,
        ", the operator's are K = ", packed_.k, ", N = ", packed_.n));
  }
  if (absl::Status s = ValidateOutput(output, shape_.output_channels); !s.ok()) return s;
  std::swap(packed_, weights);
  input_zero_point_ = input_zero_point;
  output_ = output;
  std::fill(zero_row_.begin(), zero_row_.end(), static_cast<uint8_t>(input_zero_point));
  return absl::OkStatus();
}

void QConvU8S8_NHWC::Run(const uint8_t* input, void* output, ThreadPool* pool) const {
  const QConvShape& s = shape_;
  const size_t out_h = s.output_height(), out_w = s.output_width();
  const size_t m = s.batch * out_h * out_w;
  const size_t cin = s.input_channels;
  const size_t kernel_taps = s.kernel_height * s.kernel_width;
  const size_t k = kernel_taps * cin;
  // Pointers straight into the input when every tap is whole K groups (or there is one tap);
  // else gather each row (im2col) and hand the GEMM one-tap rows. With AMX, rows of whole
  // 64-byte K blocks are gathered too: contiguous rows feed the A tiles in place, while
  // per-tap pointers would make the GEMM copy every row anyway (qgemm_amx-inl.h), and the
  // gather copies a kernel row of kw * cin bytes at once.
  const bool amx = QGemmUsesAmx();
  const bool gather =
      kernel_taps > 1 && (cin % kQGemmKGroup != 0 || (amx && k % kAmxKBlockBytes == 0));
  // A gathered row holds K bytes, then (K padded at Create) bytes that meet zero weights.
  const size_t row_bytes = gather ? packed_.k : k;
  const uint8_t* const input_end = input + s.batch * s.input_height * s.input_width * cin;
  const size_t taps = gather ? 1 : kernel_taps;

  QOutputStage stage;
  stage.type = output_.type;
  stage.bias = bias_.empty() ? nullptr : bias_.data();
  // Per-channel iff the array this stage reads has more than one entry (Create checked 1 or
  // output_channels).
  const bool fixed = (output_.type == QOutputType::kU8 || output_.type == QOutputType::kS8) &&
                     output_.requantization == QRequantization::kFixedPoint;
  stage.per_channel =
      (fixed ? output_.fixed_multipliers.size() : output_.multipliers.size()) > 1;
  stage.requantization = output_.requantization;
  stage.multipliers = output_.multipliers.data();
  stage.fixed_multipliers = output_.fixed_multipliers.data();
  stage.shifts = output_.shifts.data();
  stage.float_bias = output_.float_bias.empty() ? nullptr : output_.float_bias.data();
  stage.output_inverse_scale = output_.output_inverse_scale;
  stage.zero_point = output_.zero_point;
  stage.min = output_.min;
  stage.max = output_.max;
  const size_t element_size = QOutputElementSize(output_.type);

  // Tiles: row blocks x panel ranges. With one thread a tile spans all channels; with more, the
  // channels are split (in pairs of panels, the VNNI tile width) until there are about 8 tiles
  // per thread, so that the deep, narrow layers (7x7 pixels, 512 channels) keep both cores busy.
  const size_t threads = pool != nullptr ? pool->threads() : 1;
  // Blocks of at most kTileRows pixels, of (nearly) equal sizes in whole VNNI row tiles.
  const size_t row_blocks = (m + kTileRows - 1) / kTileRows;
  const size_t row_multiple = amx ? kAmxRowTileMultiple : kRowTileMultiple;
  const size_t block_rows =
      ((m + row_blocks - 1) / row_blocks + row_multiple - 1) / row_multiple * row_multiple;
  const size_t panel_pairs = (packed_.panels + 1) / 2;
  size_t channel_splits = 1;
  if (threads > 1) {
    const size_t wanted = 8 * threads;
    channel_splits = std::min(panel_pairs, std::max<size_t>(1, (wanted + row_blocks - 1) /
                                                                   row_blocks));
  }
  const size_t pairs_per_split = (panel_pairs + channel_splits - 1) / channel_splits;
  channel_splits = (panel_pairs + pairs_per_split - 1) / pairs_per_split;

  // Offset of tap (ky, kx) from the window's top-left input pixel, in bytes.
  std::vector<size_t> tap_offsets(taps);
  if (!gather) {
    for (size_t ky = 0; ky < s.kernel_height; ++ky) {
      for (size_t kx = 0; kx < s.kernel_width; ++kx) {
        tap_offsets[ky * s.kernel_width + kx] = (ky * s.input_width + kx) * cin;
      }
    }
  }

  auto run_tile = [&](size_t tile) {
    const size_t block = tile / channel_splits;
    const size_t split = tile % channel_splits;
    const size_t m0 = block * block_rows;
    if (m0 >= m) return;  // rounding block_rows up can leave the last block empty
    const size_t rows = std::min(block_rows, m - m0);
    const size_t panel_begin = split * pairs_per_split * 2;
    const size_t panel_end = std::min(packed_.panels, panel_begin + pairs_per_split * 2);

    TileScratch& scratch = tile_scratch;
    scratch.indirection.resize(rows * taps);
    // Gathered rows start on a cache line (the AMX tiles load them in place: a row that
    // straddles two lines costs two accesses); + 64 bytes of slack for the alignment.
    // + 64 more for the 32-byte copies of short kernel rows below.
    uint8_t* gathered = nullptr;
    if (gather) {
      scratch.rows.resize(rows * row_bytes + 128);
      const uintptr_t address = reinterpret_cast<uintptr_t>(scratch.rows.data());
      gathered = scratch.rows.data() + (64 - address % 64) % 64;
    }
    // Output coordinates of pixel m0, then stepped along (no divisions per row: at K = 64 they
    // would cost as much as the row's multiply-adds).
    size_t ox = m0 % out_w, oy = (m0 / out_w) % out_h, b = m0 / (out_w * out_h);
    for (size_t r = 0; r < rows; ++r, ++ox) {
      if (ox == out_w) {
        ox = 0;
        if (++oy == out_h) {
          oy = 0;
          ++b;
        }
      }
      const uint8_t* image = input + b * s.input_height * s.input_width * cin;
      // Input coordinates of tap (0, 0), offset by the padding so that they stay unsigned.
      const size_t iy0 = oy * s.stride_height, ix0 = ox * s.stride_width;
      const bool window_inside = iy0 >= s.padding_top && ix0 >= s.padding_left &&
                                 iy0 + s.kernel_height - s.padding_top <= s.input_height &&
                                 ix0 + s.kernel_width - s.padding_left <= s.input_width;
      if (window_inside && !gather) {
        // Most pixels: every tap at a fixed offset from the window's corner.
        const uint8_t* corner =
            image + ((iy0 - s.padding_top) * s.input_width + (ix0 - s.padding_left)) * cin;
        const uint8_t** out = &scratch.indirection[r * taps];
        for (size_t t = 0; t < taps; ++t) out[t] = corner + tap_offsets[t];
        continue;
      }
      uint8_t* row = gather ? gathered + r * row_bytes : nullptr;
      for (size_t ky = 0; ky < s.kernel_height; ++ky) {
        const size_t iy = iy0 + ky;  // padded coordinate
        const bool y_inside = iy >= s.padding_top && iy - s.padding_top < s.input_height;
        const uint8_t* input_row =
            y_inside ? image + (iy - s.padding_top) * s.input_width * cin : nullptr;
        if (gather && y_inside && ix0 >= s.padding_left &&
            ix0 + s.kernel_width - s.padding_left <= s.input_width) {
          // The whole kernel row is inside: one contiguous run of kw * cin bytes. Runs of at
          // most 32 bytes (the stem's 7 x 3) copy a fixed 32 bytes, inlined instead of a
          // library call per run; the excess lands where the next kernel row, the next row or
          // the padding is written afterwards, or in the buffer's slack.
          uint8_t* dst = row + ky * s.kernel_width * cin;
          const uint8_t* src = input_row + (ix0 - s.padding_left) * cin;
          const size_t run = s.kernel_width * cin;
          if (run <= 32 && src + 32 <= input_end) {
            std::memcpy(dst, src, 32);
          } else {
            std::memcpy(dst, src, run);
          }
          continue;
        }
        for (size_t kx = 0; kx < s.kernel_width; ++kx) {
          const size_t ix = ix0 + kx;
          const bool inside =
              y_inside && ix >= s.padding_left && ix - s.padding_left < s.input_width;
          const uint8_t* src =
              inside ? input_row + (ix - s.padding_left) * cin : zero_row_.data();
          if (gather) {
            std::memcpy(row + (ky * s.kernel_width + kx) * cin, src, cin);
          } else {
            scratch.indirection[r * taps + ky * s.kernel_width + kx] = src;
          }
        }
      }
      if (gather) scratch.indirection[r] = row;
    }
    uint8_t* c = static_cast<uint8_t*>(output) + m0 * s.output_channels * element_size;
    QIGemmU8S8_OutputStage(scratch.indirection.data(), rows, taps, input_zero_point_, packed_,
                           panel_begin, panel_end, stage, c, s.output_channels);
  };
  ParallelFor(pool, row_blocks * channel_splits, run_tile);
}

}  // namespace qlab::kernels
