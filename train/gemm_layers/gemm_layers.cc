// Conv2d / Linear forward and backward for training (gemm_layers.h) on kernels/fp32's GEMM:
// parallel weight packing into reusable scratch, the col2im glue around Fp32Gemm and
// Fp32Conv2dNhwc, the set-up of conv_filter_grad's dw kernel (padded input, tap offsets, OIHW
// reorder) and the fixed-order dbias sums.

#include "train/gemm_layers/gemm_layers.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/fp32/aligned_floats.h"
#include "kernels/fp32/conv_geometry.h"
#include "kernels/threadpool/pool_flags.h"
#include "train/gemm_layers/conv_filter_grad.h"

namespace qlab::train {

using kernels::AlignedFloats;
using kernels::Fp32ConvGeometry;
using kernels::Fp32Epilogue;
using kernels::Fp32PackedWeights;
using kernels::kFp32PanelColumns;

namespace {

// An aligned float buffer that grows to the largest size asked for and never shrinks.
class GrowingFloats {
 public:
  float* Get(size_t size) {
    if (data_.size() < size) data_ = AlignedFloats(size);
    return data_.data();
  }
  size_t capacity() const { return data_.size(); }

 private:
  AlignedFloats data_;
};

// Floats of im2col / dcol columns materialized at once (16 MiB): large enough that the GEMMs
// between chunks run long, small enough to stay out of the way of the activations.
constexpr size_t kColumnChunkFloats = size_t{4} << 20;

}  // namespace

struct GemmLayerScratch::Buffers {
  Fp32PackedWeights packed;    // B of the GEMM or convolution being run
  GrowingFloats weights;       // weights reordered before packing (OHWI, flipped)
  GrowingFloats columns;       // dcol chunks (dx of strided convs)
  GrowingFloats transposed;    // dy^T (dw of linear layers)
  GrowingFloats dw_taps;       // dw in [(kh, kw, ic)][out_c (rounded up to 16)] order
  GrowingFloats padded_input;  // x with its zero padding materialized (dw)
  GrowingFloats padded_dy;     // dy with rows rounded up to 16 channels (dw)
  std::vector<size_t> tap_offsets;
};

GemmLayerScratch::GemmLayerScratch() : buffers_(std::make_unique<Buffers>()) {}
GemmLayerScratch::~GemmLayerScratch() = default;
GemmLayerScratch::GemmLayerScratch(GemmLayerScratch&&) noexcept = default;
GemmLayerScratch& GemmLayerScratch::operator=(GemmLayerScratch&&) noexcept = default;

size_t GemmLayerScratch::CapacityFloats() const {
  if (buffers_ == nullptr) return 0;  // moved from
  const Buffers& b = *buffers_;
  return b.packed.data.size() + b.packed.bias.size() + b.columns.capacity() +
         b.transposed.capacity() + b.dw_taps.capacity();
}

GemmLayerScratch::Buffers& ScratchBuffers(GemmLayerScratch& scratch) {
  if (scratch.buffers_ == nullptr) scratch.buffers_ = std::make_unique<GemmLayerScratch::Buffers>();
  return *scratch.buffers_;
}

namespace {

using Buffers = GemmLayerScratch::Buffers;

// --- Packing into the reused Fp32PackedWeights (layout: kernels/fp32/fp32_gemm.h) ------------

// Sizes `w` for K x N (reallocating only to grow) and fills the zero-padded bias.
Fp32PackedWeights& PackedFor(Buffers& b, size_t k, size_t n, const float* bias) {
  Fp32PackedWeights& w = b.packed;
  w.k = k;
  w.n = n;
  w.panels = (n + kFp32PanelColumns - 1) / kFp32PanelColumns;
  if (w.data.size() < w.panels * k * kFp32PanelColumns) {
    w.data = AlignedFloats(w.panels * k * kFp32PanelColumns);
  }
  if (w.bias.size() < w.panels * kFp32PanelColumns) {
    w.bias = AlignedFloats(w.panels * kFp32PanelColumns);
  }
  std::fill(w.bias.data(), w.bias.data() + w.panels * kFp32PanelColumns, 0.0f);
  if (bias != nullptr) std::memcpy(w.bias.data(), bias, n * sizeof(float));
  return w;
}

// B[kk][col] = src[kk * ld + col] (row-major K x N).
void PackRows(const float* src, size_t ld, Fp32PackedWeights& w) {
  for (size_t p = 0; p < w.panels; ++p) {
    const size_t col0 = p * kFp32PanelColumns;
    const size_t valid = std::min(kFp32PanelColumns, w.n - col0);
    float* panel = w.data.data() + p * w.k * kFp32PanelColumns;
    for (size_t kk = 0; kk < w.k; ++kk) {
      float* dst = panel + kk * kFp32PanelColumns;
      std::memcpy(dst, src + kk * ld + col0, valid * sizeof(float));
      std::fill(dst + valid, dst + kFp32PanelColumns, 0.0f);
    }
  }
}

// Fills every panel of `w` in parallel, one panel per task: fill(p, panel) writes the K rows of
// 16 floats of panel p (columns 16 p ..), zeros past N included.
template <class Fill>
void PackPanels(Fp32PackedWeights& w, const Fill& fill, pthreadpool_t pool) {
  struct Context {
    Fp32PackedWeights* w;
    const Fill* fill;
  } context{&w, &fill};
  pthreadpool_parallelize_1d(
      pool,
      [](void* c, size_t p) {
        const Context& ctx = *static_cast<const Context*>(c);
        (*ctx.fill)(p, ctx.w->data.data() + p * ctx.w->k * kFp32PanelColumns);
      },
      &context, w.panels, kernels::PoolFlags(pool));
}

// Columns of panel p that exist (the last panel may be partial).
size_t ValidColumns(const Fp32PackedWeights& w, size_t p) {
  return std::min(kFp32PanelColumns, w.n - p * kFp32PanelColumns);
}

// B[kk = (t, i)][col = o] = weight[o][i][t] for weight [N][in_c][taps] (OIHW conv weights; a
// Linear's [out][in] with taps = 1): the forward's packing. Per row, the 16 columns come from 16
// weight rows read in step, so each row of the panel is one complete line.
void PackForwardWeights(const float* weight, size_t in_c, size_t taps, Fp32PackedWeights& w,
                        pthreadpool_t pool) {
  const size_t k = in_c * taps;
  PackPanels(
      w,
      [&](size_t p, float* panel) {
        const size_t valid = ValidColumns(w, p);
        const float* first = weight + p * kFp32PanelColumns * k;
        for (size_t i = 0; i < in_c; ++i) {
          for (size_t t = 0; t < taps; ++t) {
            float* dst = panel + (t * in_c + i) * kFp32PanelColumns;
            const float* src = first + i * taps + t;
            for (size_t c = 0; c < valid; ++c) dst[c] = src[c * k];
            std::fill(dst + valid, dst + kFp32PanelColumns, 0.0f);
          }
        }
      },
      pool);
}

// --- Small fixed-order reductions and reorders ------------------------------------------------

// sums[c] = sum over r of src[r][c], r increasing (the same order for any thread count).
struct ColumnSums {
  const float* src;
  size_t rows, cols;
  float* sums;
};
constexpr size_t kSumColumnsPerTask = 64;

void ColumnSumsTask(void* context, size_t task) {
  const ColumnSums& s = *static_cast<const ColumnSums*>(context);
  const size_t c0 = task * kSumColumnsPerTask;
  const size_t width = std::min(kSumColumnsPerTask, s.cols - c0);
  float acc[kSumColumnsPerTask] = {};
  for (size_t r = 0; r < s.rows; ++r) {
    const float* row = s.src + r * s.cols + c0;
    for (size_t c = 0; c < width; ++c) acc[c] += row[c];
  }
  std::memcpy(s.sums + c0, acc, width * sizeof(float));
}

void SumColumns(const float* src, size_t rows, size_t cols, float* sums, pthreadpool_t pool) {
  ColumnSums s{src, rows, cols, sums};
  pthreadpool_parallelize_1d(pool, &ColumnSumsTask, &s,
                             (cols + kSumColumnsPerTask - 1) / kSumColumnsPerTask,
                             kernels::PoolFlags(pool));
}

// dst[c][r] = src[r][c] for an R x C block (src row stride ld_src, dst row stride ld_dst).
void Transpose(const float* src, size_t rows, size_t cols, size_t ld_src, float* dst,
               size_t ld_dst) {
  constexpr size_t kBlock = 16;
  for (size_t r0 = 0; r0 < rows; r0 += kBlock) {
    const size_t r1 = std::min(rows, r0 + kBlock);
    for (size_t c0 = 0; c0 < cols; c0 += kBlock) {
      const size_t c1 = std::min(cols, c0 + kBlock);
      for (size_t r = r0; r < r1; ++r) {
        for (size_t c = c0; c < c1; ++c) dst[c * ld_dst + r] = src[r * ld_src + c];
      }
    }
  }
}

// --- Convolution helpers -----------------------------------------------------------------------

size_t Taps(const Fp32ConvGeometry& g) { return g.kernel_h * g.kernel_w; }
size_t Pixels(const Fp32ConvGeometry& g) { return g.batch * g.out_h * g.out_w; }

// col2im by gathering: dx[n][ih][iw][:] = sum over taps (kh, kw increasing) hitting (ih, iw) of
// dcol[(n - n0, oh, ow)][(kh, kw, :)], for the input rows of images n0 .. n1 - 1.
struct Col2im {
  const Fp32ConvGeometry* g;
  const float* dcol;
  size_t n0;
  float* dx;
};

// The output coordinate whose tap k reads input coordinate i, if any.
bool OutputCoordinate(size_t i, size_t k, size_t stride, size_t dilation, size_t pad,
                      size_t out_size, size_t* o) {
  const int64_t shifted = static_cast<int64_t>(i + pad) - static_cast<int64_t>(k * dilation);
  if (shifted < 0 || shifted % static_cast<int64_t>(stride) != 0) return false;
  *o = static_cast<size_t>(shifted) / stride;
  return *o < out_size;
}

// dst[i] += src[i] for i < n. Blocks of 16 through a local array: a fixed trip count with no
// possible aliasing is what GCC vectorizes at -O2 (a plain open-ended loop over two float
// pointers stays scalar there, and calling a dispatched SIMD kernel per pixel cost more than it
// saved: its per-call overhead is paid ~10^5 times per layer).
inline void AccumulateChannels(const float* src, size_t n, float* dst) {
  constexpr size_t kBlock = 16;
  size_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    float block[kBlock];
    std::memcpy(block, dst + i, sizeof(block));
    for (size_t j = 0; j < kBlock; ++j) block[j] += src[i + j];
    std::memcpy(dst + i, block, sizeof(block));
  }
  for (; i < n; ++i) dst[i] += src[i];
}

void Col2imRow(void* context, size_t row) {
  const Col2im& job = *static_cast<const Col2im*>(context);
  const Fp32ConvGeometry& g = *job.g;
  const size_t c = g.in_channels;
  const size_t k = Taps(g) * c;
  const size_t n = job.n0 + row / g.in_h;
  const size_t ih = row % g.in_h;
  float* out_row = job.dx + (n * g.in_h + ih) * g.in_w * c;
  std::fill(out_row, out_row + g.in_w * c, 0.0f);
  for (size_t kh = 0; kh < g.kernel_h; ++kh) {
    size_t oh;
    if (!OutputCoordinate(ih, kh, g.stride_h, g.dilation_h, g.pad_h, g.out_h, &oh)) continue;
    for (size_t kw = 0; kw < g.kernel_w; ++kw) {
      const float* taps =
          job.dcol + ((n - job.n0) * g.out_h + oh) * g.out_w * k + (kh * g.kernel_w + kw) * c;
      // Walk the output columns (iw = ow * stride + kw * dilation - pad): no division per
      // column, and each input column still receives its taps in (kh, kw) order, one per tap.
      const int64_t offset =
          static_cast<int64_t>(kw * g.dilation_w) - static_cast<int64_t>(g.pad_w);
      for (size_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t iw = static_cast<int64_t>(ow * g.stride_w) + offset;
        if (iw < 0 || iw >= static_cast<int64_t>(g.in_w)) continue;
        float* dst = out_row + static_cast<size_t>(iw) * c;
        AccumulateChannels(taps + ow * k, c, dst);
      }
    }
  }
}

// dx = conv_transpose(dy, w) through dcol = dy x W[out_c][K] and col2im, a chunk of images at a
// time. General (any stride, padding, dilation).
void ConvBackwardDataGemm(const ConvLayerShape& shape, const float* w_oihw, const float* dy,
                          float* dx, Buffers& b, pthreadpool_t pool) {
  const Fp32ConvGeometry& g = shape.geometry;
  const size_t oc = shape.out_channels, c = g.in_channels, taps = Taps(g), k = taps * c;
  // B[kk = o][col = (t, i)] = W[o][i][t]; each panel's 16 columns read from precomputed offsets.
  Fp32PackedWeights& packed = PackedFor(b, oc, k, nullptr);
  PackPanels(
      packed,
      [&](size_t p, float* panel) {
        const size_t valid = ValidColumns(packed, p);
        size_t source[kFp32PanelColumns];
        for (size_t col = 0; col < valid; ++col) {
          const size_t kk = p * kFp32PanelColumns + col;
          source[col] = (kk % c) * taps + kk / c;
        }
        for (size_t o = 0; o < oc; ++o) {
          float* dst = panel + o * kFp32PanelColumns;
          const float* filter = w_oihw + o * k;
          for (size_t col = 0; col < valid; ++col) dst[col] = filter[source[col]];
          std::fill(dst + valid, dst + kFp32PanelColumns, 0.0f);
        }
      },
      pool);
  const size_t image_pixels = g.out_h * g.out_w;
  const size_t images_per_chunk =
      std::clamp<size_t>(kColumnChunkFloats / std::max<size_t>(1, image_pixels * k), 1, g.batch);
  float* dcol = b.columns.Get(images_per_chunk * image_pixels * k);
  for (size_t n0 = 0; n0 < g.batch; n0 += images_per_chunk) {
    const size_t images = std::min(images_per_chunk, g.batch - n0);
    kernels::Fp32Gemm(dy + n0 * image_pixels * oc, images * image_pixels, oc, packed,
                      Fp32Epilogue{}, dcol, k, pool);
    Col2im job{&g, dcol, n0, dx};
    pthreadpool_parallelize_1d(pool, &Col2imRow, &job, images * g.in_h, kernels::PoolFlags(pool));
  }
}

// dx for stride 1: the convolution of dy (padding dilation * (k - 1) - pad) with the flipped
// weights, input and output channels swapped: B[(kh', kw', o)][i] = W[o][i][kh - 1 - kh'][..].
void ConvBackwardDataStride1(const ConvLayerShape& shape, const float* w_oihw, const float* dy,
                             float* dx, Buffers& b, pthreadpool_t pool) {
  const Fp32ConvGeometry& g = shape.geometry;
  const size_t oc = shape.out_channels, c = g.in_channels, taps = Taps(g);
  Fp32PackedWeights& packed = PackedFor(b, taps * oc, c, nullptr);
  PackPanels(
      packed,
      [&](size_t p, float* panel) {  // panel p: input channels 16 p .. 16 p + 15
        const size_t valid = ValidColumns(packed, p);
        // Row after row of the panel: filter by filter instead wrote `taps` rows oc * 64 bytes
        // apart at a time, which at 256-512 output channels fall into one L1 set.
        for (size_t flipped = 0; flipped < taps; ++flipped) {
          for (size_t o = 0; o < oc; ++o) {
            float* dst = panel + (flipped * oc + o) * kFp32PanelColumns;
            const float* src =
                w_oihw + (o * c + p * kFp32PanelColumns) * taps + (taps - 1 - flipped);
            for (size_t col = 0; col < valid; ++col) dst[col] = src[col * taps];
            std::fill(dst + valid, dst + kFp32PanelColumns, 0.0f);
          }
        }
      },
      pool);
  Fp32ConvGeometry t;
  t.batch = g.batch;
  t.in_h = g.out_h;
  t.in_w = g.out_w;
  t.in_channels = oc;
  t.kernel_h = g.kernel_h;
  t.kernel_w = g.kernel_w;
  t.pad_h = g.dilation_h * (g.kernel_h - 1) - g.pad_h;
  t.pad_w = g.dilation_w * (g.kernel_w - 1) - g.pad_w;
  t.dilation_h = g.dilation_h;
  t.dilation_w = g.dilation_w;
  t.out_h = g.in_h;
  t.out_w = g.in_w;
  kernels::Fp32Conv2dNhwc(t, dy, packed, Fp32Epilogue{}, dx, pool);
}

// Copies the images' NHWC rows into `padded` [batch][in_h + 2 pad_h][in_w + 2 pad_w][c] with
// zero borders, one padded row per task.
struct PadInput {
  const Fp32ConvGeometry* g;
  const float* x;
  float* padded;
};

void PadInputRow(void* context, size_t row) {
  const PadInput& job = *static_cast<const PadInput*>(context);
  const Fp32ConvGeometry& g = *job.g;
  const size_t c = g.in_channels, padded_h = g.in_h + 2 * g.pad_h;
  const size_t padded_w = g.in_w + 2 * g.pad_w;
  const size_t n = row / padded_h, ph = row % padded_h;
  float* dst = job.padded + row * padded_w * c;
  if (ph < g.pad_h || ph >= g.pad_h + g.in_h) {
    std::fill(dst, dst + padded_w * c, 0.0f);
    return;
  }
  kernels::PadRowColumns(job.x + (n * g.in_h + ph - g.pad_h) * g.in_w * c, g.in_w, c, g.pad_w,
                         padded_w, dst);
}

// dw[o][i][kh][kw] = sum over m (increasing) of dy[m][o] * x(m, (kh, kw, i)), by
// conv_filter_grad.h's kernel on the zero-padded input, then reordered from [(kh, kw, i)][o]
// to OIHW.
struct ReorderDw {
  const float* dwt;
  size_t ldw, out_c, in_c, taps;
  float* dw;
};

// Input channels [kReorderInputs * block, + kReorderInputs) of every filter, 16 filters at a
// time: each line of dwt read (16 filters of one (t, i)) is used whole at once, scattered into a
// small L1-resident tile, whose rows then go out to the 16 filters as consecutive floats. The
// first versions read dwt by columns instead (one float per line per filter, or 16 filters'
// line per row but one row block per task), and stalled on those loads: dwt rows are 1-2 KiB
// apart at 256-512 filters, so the lines waiting for reuse fell into a few L1 sets and were
// evicted first (perf annotate: ~85 % of the reorder's samples on the load; 4-5 % of a QAT
// ResNet18 step).
constexpr size_t kReorderInputs = 16;

void ReorderDwBlock(void* context, size_t block) {
  const ReorderDw& job = *static_cast<const ReorderDw*>(context);
  const size_t i0 = block * kReorderInputs;
  const size_t i1 = std::min(job.in_c, i0 + kReorderInputs);
  const size_t run = (i1 - i0) * job.taps;  // floats per filter in this block
  const size_t filter_size = job.in_c * job.taps;
  // tile[f][(i - i0) * taps + t] for filter o0 + f.
  thread_local std::vector<float> tile;
  tile.resize(kFp32PanelColumns * run);
  for (size_t o0 = 0; o0 < job.out_c; o0 += kFp32PanelColumns) {
    const size_t filters = std::min(kFp32PanelColumns, job.out_c - o0);
    for (size_t i = i0; i < i1; ++i) {
      for (size_t t = 0; t < job.taps; ++t) {
        const float* src = job.dwt + (t * job.in_c + i) * job.ldw + o0;
        float* dst = tile.data() + (i - i0) * job.taps + t;
        for (size_t f = 0; f < filters; ++f) dst[f * run] = src[f];
      }
    }
    for (size_t f = 0; f < filters; ++f) {
      std::memcpy(job.dw + (o0 + f) * filter_size + i0 * job.taps, tile.data() + f * run,
                  run * sizeof(float));
    }
  }
}

void ConvBackwardFilter(const ConvLayerShape& shape, const float* x, const float* dy, float* dw,
                        Buffers& b, pthreadpool_t pool) {
  const Fp32ConvGeometry& g = shape.geometry;
  const size_t oc = shape.out_channels, c = g.in_channels, taps = Taps(g), k = taps * c;
  ConvFilterGradProblem p;
  p.x = x;
  p.x_h = g.in_h + 2 * g.pad_h;
  p.x_w = g.in_w + 2 * g.pad_w;
  p.c = c;
  if (g.pad_h > 0 || g.pad_w > 0) {
    float* padded = b.padded_input.Get(g.batch * p.x_h * p.x_w * c);
    PadInput job{&g, x, padded};
    pthreadpool_parallelize_1d(pool, &PadInputRow, &job, g.batch * p.x_h, kernels::PoolFlags(pool));
    p.x = padded;
  }
  p.column_groups = (oc + kFp32PanelColumns - 1) / kFp32PanelColumns;
  const size_t ldw = p.column_groups * kFp32PanelColumns;
  p.dy = dy;
  p.dy_stride = oc;
  if (ldw != oc) {  // pad dy's rows to whole 16-column groups (zeros: discarded sums)
    const size_t pixels = Pixels(g);
    float* padded = b.padded_dy.Get(pixels * ldw);
    for (size_t m = 0; m < pixels; ++m) {
      std::memcpy(padded + m * ldw, dy + m * oc, oc * sizeof(float));
      std::fill(padded + m * ldw + oc, padded + (m + 1) * ldw, 0.0f);
    }
    p.dy = padded;
    p.dy_stride = ldw;
  }
  p.batch = g.batch;
  p.out_h = g.out_h;
  p.out_w = g.out_w;
  p.stride_h = g.stride_h;
  p.stride_w = g.stride_w;
  b.tap_offsets.resize(k);
  for (size_t kh = 0; kh < g.kernel_h; ++kh) {
    for (size_t kw = 0; kw < g.kernel_w; ++kw) {
      const size_t tap_offset = (kh * g.dilation_h * p.x_w + kw * g.dilation_w) * c;
      for (size_t i = 0; i < c; ++i) b.tap_offsets[(kh * g.kernel_w + kw) * c + i] = tap_offset + i;
    }
  }
  p.tap_offsets = b.tap_offsets.data();
  p.k = k;
  p.dwt = b.dw_taps.Get(k * ldw);
  ConvFilterGrad(p, pool);
  ReorderDw job{p.dwt, ldw, oc, c, taps, dw};
  pthreadpool_parallelize_1d(pool, &ReorderDwBlock, &job, (c + kReorderInputs - 1) / kReorderInputs,
                             kernels::PoolFlags(pool));
}

}  // namespace

void ConvForward(const ConvLayerShape& shape, const float* x, const float* w_oihw,
                 const float* bias, float* y, GemmLayerScratch& scratch, pthreadpool_t pool) {
  Buffers& b = ScratchBuffers(scratch);
  const Fp32ConvGeometry& g = shape.geometry;
  const size_t taps = Taps(g), c = g.in_channels;
  Fp32PackedWeights& packed = PackedFor(b, taps * c, shape.out_channels, bias);
  PackForwardWeights(w_oihw, c, taps, packed, pool);
  kernels::Fp32Conv2dNhwc(g, x, packed, Fp32Epilogue{}, y, pool);
}

void ConvBackward(const ConvLayerShape& shape, const float* x, const float* w_oihw, const float* dy,
                  float* dx, float* dw, float* dbias, GemmLayerScratch& scratch,
                  pthreadpool_t pool) {
  Buffers& b = ScratchBuffers(scratch);
  const Fp32ConvGeometry& g = shape.geometry;
  if (dbias != nullptr) SumColumns(dy, Pixels(g), shape.out_channels, dbias, pool);
  if (dw != nullptr) ConvBackwardFilter(shape, x, dy, dw, b, pool);
  if (dx != nullptr) {
    const bool stride1 = g.stride_h == 1 && g.stride_w == 1 &&
                         g.dilation_h * (g.kernel_h - 1) >= g.pad_h &&
                         g.dilation_w * (g.kernel_w - 1) >= g.pad_w;
    if (stride1) {
      ConvBackwardDataStride1(shape, w_oihw, dy, dx, b, pool);
    } else {
      ConvBackwardDataGemm(shape, w_oihw, dy, dx, b, pool);
    }
  }
}

void LinearForward(size_t batch, size_t in, size_t out, const float* x, const float* w,
                   const float* bias, float* y, GemmLayerScratch& scratch, pthreadpool_t pool) {
  Buffers& b = ScratchBuffers(scratch);
  Fp32PackedWeights& packed = PackedFor(b, in, out, bias);
  PackForwardWeights(w, in, 1, packed, pool);
  kernels::Fp32Gemm(x, batch, in, packed, Fp32Epilogue{}, y, out, pool);
}

void LinearBackward(size_t batch, size_t in, size_t out, const float* x, const float* w,
                    const float* dy, float* dx, float* dw, float* dbias, GemmLayerScratch& scratch,
                    pthreadpool_t pool) {
  Buffers& b = ScratchBuffers(scratch);
  if (dbias != nullptr) SumColumns(dy, batch, out, dbias, pool);
  if (dx != nullptr) {  // dx[b][i] = sum_o dy[b][o] w[o][i]: B = w as [K = out][N = in]
    Fp32PackedWeights& packed = PackedFor(b, out, in, nullptr);
    PackRows(w, in, packed);
    kernels::Fp32Gemm(dy, batch, out, packed, Fp32Epilogue{}, dx, in, pool);
  }
  if (dw != nullptr) {  // dw[o][i] = sum_b dy[b][o] x[b][i]: A = dy^T, B = x as [K = batch][in]
    float* dyt = b.transposed.Get(out * batch);
    Transpose(dy, batch, out, out, dyt, batch);
    Fp32PackedWeights& packed = PackedFor(b, batch, in, nullptr);
    PackRows(x, in, packed);
    kernels::Fp32Gemm(dyt, out, batch, packed, Fp32Epilogue{}, dw, in, pool);
  }
}

}  // namespace qlab::train
