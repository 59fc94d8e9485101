// Highway implementation of conv_filter_grad.h, compiled once per target (Highway's skeleton:
// self-include through foreach_target.h, dispatch under HWY_ONCE).
//
// Tiles (kRows K rows x kVecs vectors of output channels, accumulators in registers):
//   AVX3, AVX3_DL  6 rows x 4 vectors (64 channels), 14 x 2 (32) or 16 x 1 (16): accumulators,
//                  dy vectors and the broadcast fit the 32 zmm registers (7 x 4 spilled one);
//                  per output pixel kVecs loads of dy, kRows broadcasts of x, kRows * kVecs FMAs.
//   others         one 16-channel group as 16 / lanes vectors, rows as the 16 registers allow.
//   SCALAR         one row by 16 single-float "vectors".
// When the input has at least 8 channels a row tile stays inside one filter tap, so its rows
// are consecutive floats of the input pixel (constant displacements); otherwise (the RGB stems)
// rows cross taps and each row reads through its own offset.
//
// Blocking: the output pixels are walked in blocks of about kBlockPixels (whole output rows);
// within a block each thread runs all of its tiles, so the block's dy rows and input rows stay in
// L2 while every tile reads them. Between blocks the accumulators are parked in dwt (exact).

#include "train/gemm_layers/conv_filter_grad.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/threadpool/pool_flags.h"

#ifndef QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_CC_SHARED_
#define QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_CC_SHARED_
namespace qlab::train::conv_filter_grad_internal {

// Rows kk0 .. kk0 + rows - 1 of dwt; `contiguous`: all inside one tap.
struct RowTile {
  size_t kk0;
  size_t rows;
  bool contiguous;
};

// Output pixels per block: 512 pixels of 64 channels are 128 KiB of dy, and the input rows they
// read about as much; both stay in L2 (2 MiB per core here) while the block's tiles run.
inline constexpr size_t kBlockPixels = 512;

// Unrolls the tiles' constant-trip loops so that the accumulators live in registers.
#define QLAB_DW_UNROLL _Pragma("GCC unroll 32")

// Splits n rows into the fewest parts of at most max_rows, sizes differing by at most one.
inline void SplitRows(size_t begin, size_t n, size_t max_rows, bool contiguous,
                      std::vector<RowTile>& tiles) {
  const size_t parts = (n + max_rows - 1) / max_rows;
  for (size_t part = 0, start = 0; part < parts; ++part) {
    const size_t rows = n / parts + (part < n % parts ? 1 : 0);
    tiles.push_back({begin + start, rows, contiguous});
    start += rows;
  }
}

}  // namespace qlab::train::conv_filter_grad_internal
#endif  // QLAB_TRAIN_GEMM_LAYERS_CONV_FILTER_GRAD_CC_SHARED_

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "train/gemm_layers/conv_filter_grad.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace qlab::train {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using conv_filter_grad_internal::kBlockPixels;
using conv_filter_grad_internal::RowTile;

// Vector registers: a tile holds kRows * kVecs accumulators, kVecs dy vectors and one broadcast.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr size_t kDwRegisters = 32;
#else
constexpr size_t kDwRegisters = 16;
#endif

// One tile over output rows [row_begin, row_end): rows kk0 .. kk0 + kRows - 1 of dwt, columns
// col0 .. col0 + kVecs * lanes - 1.
template <size_t kRows, size_t kVecs, bool kContiguous>
HWY_NOINLINE void DwTile(const ConvFilterGradProblem& p, size_t kk0, size_t col0, size_t row_begin,
                         size_t row_end) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  constexpr size_t kLanes = hn::MaxLanes(d);
  const size_t ldw = 16 * p.column_groups;
  float* out = p.dwt + kk0 * ldw + col0;
  V acc[kRows][kVecs];
  QLAB_DW_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_DW_UNROLL
    for (size_t v = 0; v < kVecs; ++v) {
      acc[r][v] = row_begin == 0 ? hn::Zero(d) : hn::LoadU(d, out + r * ldw + v * kLanes);
    }
  }
  size_t offsets[kRows];
  QLAB_DW_UNROLL
  for (size_t r = 0; r < kRows; ++r) offsets[r] = p.tap_offsets[kk0 + (kContiguous ? 0 : r)];
  const size_t x_step = p.stride_w * p.c;
  for (size_t row = row_begin; row < row_end; ++row) {
    const size_t n = row / p.out_h, oh = row % p.out_h;
    const float* field = p.x + (n * p.x_h + oh * p.stride_h) * p.x_w * p.c;
    const float* g = p.dy + row * p.out_w * p.dy_stride + col0;
    for (size_t ow = 0; ow < p.out_w; ++ow, field += x_step, g += p.dy_stride) {
      V b[kVecs];
      QLAB_DW_UNROLL
      for (size_t v = 0; v < kVecs; ++v) b[v] = hn::LoadU(d, g + v * kLanes);
      QLAB_DW_UNROLL
      for (size_t r = 0; r < kRows; ++r) {
        const V a = hn::Set(d, kContiguous ? field[offsets[0] + r] : field[offsets[r]]);
        QLAB_DW_UNROLL
        for (size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::MulAdd(a, b[v], acc[r][v]);
      }
    }
  }
  QLAB_DW_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    QLAB_DW_UNROLL
    for (size_t v = 0; v < kVecs; ++v) hn::StoreU(acc[r][v], d, out + r * ldw + v * kLanes);
  }
}

// DwTile for a runtime row count 1 <= rows <= kRows.
template <size_t kRows, size_t kVecs, bool kContiguous>
HWY_INLINE void DwTileUpTo(size_t rows, const ConvFilterGradProblem& p, size_t kk0, size_t col0,
                           size_t row_begin, size_t row_end) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      return DwTileUpTo<kRows - 1, kVecs, kContiguous>(rows, p, kk0, col0, row_begin, row_end);
    }
  }
  DwTile<kRows, kVecs, kContiguous>(p, kk0, col0, row_begin, row_end);
}

template <size_t kVecs>
constexpr size_t DwMaxRows() {
  if constexpr (kVecs + 2 > kDwRegisters) {
    return 1;  // SCALAR: 16 one-float "vectors"
  } else {
    return std::min<size_t>(16, (kDwRegisters - 1 - kVecs) / kVecs);
  }
}

struct DwSchedule {
  const ConvFilterGradProblem* p;
  const RowTile* row_tiles;
  size_t row_tile_count;
  size_t groups_per_tile;  // 16-column groups per column tile
  size_t col_tiles;
  size_t tasks;
  size_t block_rows;  // output rows per block
};

template <size_t kVecs>
void DwRunTile(const DwSchedule& s, const RowTile& t, size_t col0, size_t r0, size_t r1) {
  constexpr size_t kRows = DwMaxRows<kVecs>();
  if (t.contiguous) {
    DwTileUpTo<kRows, kVecs, true>(t.rows, *s.p, t.kk0, col0, r0, r1);
  } else {
    DwTileUpTo<kRows, kVecs, false>(t.rows, *s.p, t.kk0, col0, r0, r1);
  }
}

void DwTask(void* context, size_t task) {
  const DwSchedule& s = *static_cast<const DwSchedule*>(context);
  const hn::ScalableTag<float> d;
  constexpr size_t kLanes = hn::MaxLanes(d);
  const size_t total = s.row_tile_count * s.col_tiles;
  const size_t begin = total * task / s.tasks, end = total * (task + 1) / s.tasks;
  const size_t out_rows = s.p->batch * s.p->out_h;
  const size_t vecs = s.groups_per_tile * 16 / kLanes;
  for (size_t r0 = 0; r0 < out_rows; r0 += s.block_rows) {
    const size_t r1 = std::min(out_rows, r0 + s.block_rows);
    for (size_t i = begin; i < end; ++i) {
      const RowTile& t = s.row_tiles[i / s.col_tiles];
      const size_t col0 = (i % s.col_tiles) * s.groups_per_tile * 16;
      if constexpr (16 / kLanes <= 1) {  // AVX3: 1, 2 or 4 zmm per tile
        if (vecs == 4) {
          DwRunTile<4>(s, t, col0, r0, r1);
        } else if (vecs == 2) {
          DwRunTile<2>(s, t, col0, r0, r1);
        } else {
          DwRunTile<1>(s, t, col0, r0, r1);
        }
      } else {
        DwRunTile<16 / kLanes>(s, t, col0, r0, r1);
      }
    }
  }
}

void ConvFilterGradDriver(const ConvFilterGradProblem& p, pthreadpool_t pool) {
  if (p.k == 0 || p.column_groups == 0) return;
  const hn::ScalableTag<float> d;
  constexpr size_t kLanes = hn::MaxLanes(d);
  // Column groups per tile: as many as fit the accumulators (AVX-512 only; narrower targets
  // cover one 16-column group with several vectors).
  size_t groups = 1;
  if constexpr (kLanes == 16) {
    groups = p.column_groups % 4 == 0 ? 4 : p.column_groups % 2 == 0 ? 2 : 1;
  }
  const size_t vecs = groups * 16 / kLanes;
  const size_t max_rows = vecs == 1   ? DwMaxRows<1>()
                          : vecs == 2 ? DwMaxRows<2>()
                          : vecs == 4 ? DwMaxRows<4>()
                                      : DwMaxRows<16>();
  std::vector<RowTile> tiles;
  if (p.c >= 8) {  // tiles inside one tap: constant displacements
    for (size_t kk = 0; kk < p.k; kk += p.c) {
      conv_filter_grad_internal::SplitRows(kk, p.c, max_rows, true, tiles);
    }
  } else {
    conv_filter_grad_internal::SplitRows(0, p.k, max_rows, false, tiles);
  }
  DwSchedule s;
  s.p = &p;
  s.row_tiles = tiles.data();
  s.row_tile_count = tiles.size();
  s.groups_per_tile = groups;
  s.col_tiles = p.column_groups / groups;
  // One task per thread: each walks all pixel blocks over its own tiles. The split changes
  // which thread computes an element, never the element's summation order.
  s.tasks = std::max<size_t>(1, pthreadpool_get_threads_count(pool));
  s.tasks = std::min(s.tasks, s.row_tile_count * s.col_tiles);
  s.block_rows = std::max<size_t>(1, kBlockPixels / p.out_w);
  pthreadpool_parallelize_1d(pool, &DwTask, &s, s.tasks, kernels::PoolFlags(pool));
}

}  // namespace HWY_NAMESPACE
}  // namespace qlab::train
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace qlab::train {

HWY_EXPORT(ConvFilterGradDriver);

void ConvFilterGrad(const ConvFilterGradProblem& problem, pthreadpool_t pool) {
  HWY_DYNAMIC_DISPATCH(ConvFilterGradDriver)(problem, pool);
}

}  // namespace qlab::train
#endif  // HWY_ONCE
