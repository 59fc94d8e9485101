// PackFakeQuantizedConvWeights: per panel, SIMD quantization of the panel's 16 OIHW weight rows
// into a per-thread buffer, then a table-driven gather into the packed (ky, kx, ci) order,
// written in order, one 4-byte K group at a time. See fake_quant_weights.h.
#include "kernels/qconv/fake_quant_weights.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/quantize/quantize.h"

namespace qlab::kernels {
namespace {

// One panel's quantized OIHW rows, each followed by a 0 byte that the K padding reads (so the
// gather needs no branch). thread_local: each pool thread allocates once.
thread_local std::vector<int8_t> panel_codes;

// sum of codes[0, n): in fixed blocks of 64 so that the compiler vectorizes the block's sum (an
// open-ended byte loop stays scalar at -O2 and was half of the packing time).
int32_t SumCodes(const int8_t* codes, size_t n) {
  constexpr size_t kBlock = 64;
  int32_t sum = 0;
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    int32_t block = 0;
    for (size_t j = 0; j < kBlock; ++j) block += codes[i + j];
    sum += block;
  }
  for (; i < n; ++i) sum += codes[i];
  return sum;
}

}  // namespace

void PackFakeQuantizedConvWeights(const float* w_oihw, const ConvWeightDims& dims,
                                  const float* scales, bool per_channel, size_t packed_k,
                                  PackedWeights& packed, ThreadPool* pool) {
  const size_t k = dims.k();
  const size_t n = dims.output_channels;
  const size_t taps = dims.kernel_height * dims.kernel_width;
  const size_t cin = dims.input_channels;
  packed.k = packed_k;
  packed.n = n;
  packed.k_groups = (packed_k + kQGemmKGroup - 1) / kQGemmKGroup;
  packed.panels = (n + kQGemmPanelColumns - 1) / kQGemmPanelColumns;
  const size_t group_bytes = kQGemmPanelColumns * kQGemmKGroup;  // one group of one panel
  packed.data.resize(packed.panels * packed.k_groups * group_bytes);
  packed.column_sums.resize(packed.panels * kQGemmPanelColumns);

  // Position in an OIHW row of packed K index kk ((ky, kx, ci) order; OIHW holds (ci, ky, kx)),
  // or k (the row's trailing 0) for the padding of K to packed_k and to whole groups.
  const size_t padded_k = packed.k_groups * kQGemmKGroup;
  std::vector<uint32_t> offsets(padded_k, static_cast<uint32_t>(k));
  for (size_t tap = 0; tap < taps; ++tap) {
    for (size_t ci = 0; ci < cin; ++ci) offsets[tap * cin + ci] = ci * taps + tap;
  }
  const size_t row_stride = k + 1;

  auto pack_panel = [&](size_t panel) {
    const size_t c0 = panel * kQGemmPanelColumns;
    const size_t columns = std::min(kQGemmPanelColumns, n - c0);
    std::vector<int8_t>& codes = panel_codes;
    codes.resize(columns * row_stride);
    int32_t* sums = packed.column_sums.data() + c0;
    for (size_t c = 0; c < columns; ++c) {
      int8_t* row = codes.data() + c * row_stride;
      const AffineParams params{per_channel ? scales[c0 + c] : scales[0], 0, -128, 127};
      Quantize(w_oihw + (c0 + c) * k, k, params, row);
      row[k] = 0;
      sums[c] = SumCodes(row, k);
    }
    std::fill(sums + columns, packed.column_sums.data() + c0 + kQGemmPanelColumns, 0);
    // Written in order: group g holds 4 consecutive K values of column 0, of column 1, ...
    int8_t* dst = packed.data.data() + panel * packed.k_groups * group_bytes;
    const size_t missing = (kQGemmPanelColumns - columns) * kQGemmKGroup;
    // Offsets and the rows' base in locals: int8 stores may alias anything, so the compiler
    // would otherwise reload them after every byte written.
    const int8_t* const first_row = codes.data();
    for (size_t g = 0; g < packed.k_groups; ++g) {
      const uint32_t o0 = offsets[g * kQGemmKGroup], o1 = offsets[g * kQGemmKGroup + 1],
                     o2 = offsets[g * kQGemmKGroup + 2], o3 = offsets[g * kQGemmKGroup + 3];
      const int8_t* row = first_row;
      for (size_t c = 0; c < columns; ++c, row += row_stride) {
        // One 4-byte store (little-endian: K value j at byte j) instead of four byte stores.
        const uint32_t group = static_cast<uint32_t>(static_cast<uint8_t>(row[o0])) |
                               static_cast<uint32_t>(static_cast<uint8_t>(row[o1])) << 8 |
                               static_cast<uint32_t>(static_cast<uint8_t>(row[o2])) << 16 |
                               static_cast<uint32_t>(static_cast<uint8_t>(row[o3])) << 24;
        std::memcpy(dst, &group, sizeof(group));
        dst += kQGemmKGroup;
      }
      std::memset(dst, 0, missing);
      dst += missing;
    }
  };
  ParallelFor(pool, packed.panels, pack_panel);
}

}  // namespace qlab::kernels
