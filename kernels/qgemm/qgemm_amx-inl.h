// AMX-INT8 path of kernels/qgemm: the GEMM driver and tile micro-kernel that qgemm.cc's AVX3_DL
// target runs instead of its VNNI tiles when the CPU has AMX (amx_support.h) and the shape pays
// (M >= 16 rows, K >= 64 bytes). Textually included by qgemm.cc inside the AVX3_DL target's
// namespace, after the VNNI tile: it reuses that target's output stage (LoadPanelStage,
// StoreRows, Requantize), so every output type and requantization mode comes out bit-identical
// to the VNNI path and to qgemm_ref.h. The int32 sums are exact either way.
//
// Tiles (palette 1, all 16 rows x 64 bytes):
//   tmm0..3  C: int32 16 rows x 16 columns each; a 32-row x 32-column (2 x 2 tiles) block.
//   tmm4, 5  A: 16 rows x 64 K bytes (the block's rows 0-15 and 16-31).
//   tmm6, 7  B: 16 K groups x 64 bytes, one per panel.
// One step of K (64 bytes = 16 groups) is 2 A loads, 2 B loads and 4 TDPBUSD (each 16 x 16
// outputs x 64 products).
//
// B needs no repacking: PackedWeights (qgemm.h) keeps one K group of one panel as 64 contiguous
// bytes, exactly one B tile row in TDPBUSD's layout (4 consecutive K bytes per int32 column), so
// the B tile of panel p, K block kb is data + (p * k_groups + 16 * kb) * 64 at stride 64. When
// k_groups is not a multiple of 16, the last K block of each panel is copied into a per-thread,
// zero-padded 1 KiB buffer (loading in place would read past the panel, and past the array for
// the last panel).
//
// A is read in place when it can be (FindDirectRows): unsigned rows at a constant stride
// (plain rows, or one-tap indirection pointers stepping evenly, e.g. a 1x1/1 convolution or rows
// the conv driver gathered itself), K whole 64-byte blocks, and base and stride on cache lines
// (a tile row straddling two lines made in-place loads slower than a copy). Otherwise A is
// gathered: up to kAmxGatherRows rows (their `taps` segments copied back to back, the sign bit
// flipped for s8 activations) go into a per-thread buffer with a row stride of whole 64-byte K
// blocks, once per chunk of rows; every panel pair then reuses them. Partial 16-row tiles are
// always gathered, so that no tile reads past row M - 1. Nothing outside A is ever read. The
// bytes between K and the padded stride are left as they are: they only ever meet zero weights
// (the packed zero padding of the last group or the zero-padded tail buffer), and rows past M
// only produce sums that are never stored.
//
// Epilogue: the C tiles are stored to a per-thread 32 x 32 int32 buffer and each 16-int32 row
// goes through the same StoreRows as the VNNI tile's registers (zero-point correction, bias,
// requantization, store).
//
// Tile state: the configuration is loaded at the start of every call (it is per thread, and
// other libraries in the process, e.g. oneDNN in the benchmarks, load their own) and released at
// the end.
//
// Include guard: none on purpose (included once per Highway target pass, only for AVX3_DL).

#define QLAB_AMX_TARGET __attribute__((target(HWY_TARGET_STR ",avx512vnni,amx-tile,amx-int8")))

constexpr size_t kAmxTileRows = 16;
constexpr size_t kAmxTileBytes = 64;                               // bytes of one tile row
constexpr size_t kAmxKBlockGroups = kAmxTileBytes / kQGemmKGroup;  // 16 K groups per B tile
constexpr size_t kAmxBTileBytes = kAmxKBlockGroups * kGroupBytes;  // 1 KiB
constexpr size_t kAmxBlockRows = 2 * kAmxTileRows;                 // rows of a C block
constexpr size_t kAmxBlockColumns = 2 * kQGemmPanelColumns;        // columns of a C block
// Rows gathered at once: the conv driver's tiles (qconv.cc, 96 pixels) in one gather, while
// 96 x K bytes (54 KiB at K = 576, 432 KiB at K = 4608) stays within this core's L2.
constexpr size_t kAmxGatherRows = 96;
// Below these the tile setup and the gather cost more than they save: the VNNI tiles run.
constexpr size_t kAmxMinRows = 16;
constexpr size_t kAmxMinK = 64;

// The 64-byte operand of ldtilecfg (Intel SDM, "TILECFG"): palette 1, then per tile the bytes per
// row (colsb) and the rows.
struct alignas(64) AmxTileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Per-thread buffers, grown on demand and reused across calls.
struct AmxScratch {
  std::vector<uint8_t> a;       // gathered rows (+ 64 bytes of alignment slack)
  std::vector<uint8_t> b_tail;  // zero-padded last K block of each panel of the call
  alignas(64) int32_t c[kAmxBlockRows * kAmxBlockColumns];
};
thread_local AmxScratch amx_scratch;

// A 64-byte aligned view of at least `bytes` bytes of v.
inline uint8_t* AmxAlignedBuffer(std::vector<uint8_t>& v, size_t bytes) {
  if (v.size() < bytes + 64) v.resize(bytes + 64);
  const uintptr_t address = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + ((64 - address % 64) % 64);
}

// Copies `bytes` activation bytes (flipping their sign bit for s8), 64 at a time, the last
// partial chunk with masked loads and stores: nothing outside [src, src + bytes) is read.
template <bool kFlipSign>
QLAB_AMX_TARGET HWY_INLINE void AmxCopySegment(const uint8_t* src, size_t bytes, uint8_t* dst) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  size_t i = 0;
  for (; i + 64 <= bytes; i += 64) {
    __m512i v = _mm512_loadu_si512(src + i);
    if (kFlipSign) v = _mm512_xor_si512(v, flip);
    _mm512_storeu_si512(dst + i, v);
  }
  if (i < bytes) {
    const __mmask64 mask = ~uint64_t{0} >> (64 - (bytes - i));
    __m512i v = _mm512_maskz_loadu_epi8(mask, src + i);
    if (kFlipSign) v = _mm512_xor_si512(v, flip);
    _mm512_mask_storeu_epi8(dst + i, mask, v);
  }
}

// Rows m0 .. m0 + rows - 1 of A into `a` (row stride lda).
template <bool kFlipSign>
QLAB_AMX_TARGET HWY_NOINLINE void AmxGatherRows(const GemmArgs& g, size_t m0, size_t rows,
                                                uint8_t* a, size_t lda) {
  for (size_t r = 0; r < rows; ++r) {
    uint8_t* row = a + r * lda;
    for (size_t t = 0; t < g.taps; ++t) {
      AmxCopySegment<kFlipSign>(RowSegment(g, m0 + r, t), g.tap_k, row + t * g.tap_k);
    }
  }
}

// One C block: kRowTiles x kPanelTiles tiles of 16 x 16 sums over all K blocks, stored to c
// (row stride kAmxBlockColumns). b[p] is panel p's packed data, b_tail[p] its zero-padded last
// K block (used only when k_blocks > full_blocks). NOINLINE, and a memory barrier before the
// first tile load: GCC's tile loads are assembly statements that do not tell the compiler which
// memory they read (the tile stores do clobber memory).
template <size_t kRowTiles, size_t kPanelTiles>
QLAB_AMX_TARGET HWY_NOINLINE void AmxBlock(const uint8_t* a, size_t lda,
                                           const int8_t* const (&b)[2],
                                           const int8_t* const (&b_tail)[2], size_t full_blocks,
                                           size_t k_blocks, int32_t* c) {
  // GCC 12's _tile_loadd is an asm statement without a memory operand: this barrier makes every
  // store to A and B (e.g. the gather, inlined by a future change) happen before the loads.
  __asm__ volatile("" ::: "memory");
  _tile_zero(0);
  if (kPanelTiles > 1) _tile_zero(1);
  if (kRowTiles > 1) _tile_zero(2);
  if (kRowTiles > 1 && kPanelTiles > 1) _tile_zero(3);
  // One loop over the K blocks rather than a lambda for the step: clang does not give a lambda
  // its enclosing function's target attribute, and the tile intrinsics need amx-tile/amx-int8.
  for (size_t kb = 0; kb < k_blocks; ++kb) {
    const bool tail = kb >= full_blocks;  // only the last block, when k_blocks > full_blocks
    const int8_t* b0 = tail ? b_tail[0] : b[0] + kb * kAmxBTileBytes;
    const int8_t* b1 = tail ? b_tail[1] : b[1] + kb * kAmxBTileBytes;
    const uint8_t* a0 = a + kb * kAmxTileBytes;
    _tile_loadd(6, b0, kAmxTileBytes);
    if (kPanelTiles > 1) _tile_loadd(7, b1, kAmxTileBytes);
    _tile_loadd(4, a0, lda);
    _tile_dpbusd(0, 4, 6);
    if (kPanelTiles > 1) _tile_dpbusd(1, 4, 7);
    if (kRowTiles > 1) {
      _tile_loadd(5, a0 + kAmxTileRows * lda, lda);
      _tile_dpbusd(2, 5, 6);
      if (kPanelTiles > 1) _tile_dpbusd(3, 5, 7);
    }
  }
  constexpr size_t kStride = kAmxBlockColumns * sizeof(int32_t);
  _tile_stored(0, c, kStride);
  if (kPanelTiles > 1) _tile_stored(1, c + kQGemmPanelColumns, kStride);
  if (kRowTiles > 1) _tile_stored(2, c + kAmxTileRows * kAmxBlockColumns, kStride);
  if (kRowTiles > 1 && kPanelTiles > 1) {
    _tile_stored(3, c + kAmxTileRows * kAmxBlockColumns + kQGemmPanelColumns, kStride);
  }
}

// The output stage of one C block's panel column (rows m0 .. m0 + rows - 1 of the output): whole
// 16-row tiles through StoreRows<16> as VNNI tiles do with their registers, a partial tile row
// by row.
HWY_INLINE void AmxStoreBlockPanel(const GemmArgs& g, const PanelStage& ps, size_t m0, size_t rows,
                                   const int32_t* c) {
  const DI di;
  size_t r = 0;
  for (; r + kAmxTileRows <= rows; r += kAmxTileRows) {
    VI acc[kAmxTileRows][1];
    QLAB_UNROLL
    for (size_t i = 0; i < kAmxTileRows; ++i) {
      acc[i][0] = hn::Load(di, c + (r + i) * kAmxBlockColumns);
    }
    StoreRows<kAmxTileRows>(g, ps, m0 + r, acc);
  }
  for (; r < rows; ++r) StoreRowFromMemory(g, ps, m0 + r, c + r * kAmxBlockColumns);
}

// A's rows when they can feed the A tiles in place: row m at base + m * stride.
struct AmxDirectRows {
  const uint8_t* base = nullptr;  // null: gather
  size_t stride = 0;
};

// Plain rows (lda), or one-tap indirection whose pointers step by a constant positive stride
// (a 1x1 stride-1 convolution, or rows the caller gathered itself), qualify when K is whole
// 64-byte blocks (a tile row then never reads past K) and no sign flip is needed.
template <bool kFlipSign>
HWY_INLINE AmxDirectRows FindDirectRows(const GemmArgs& g) {
  AmxDirectRows direct;
  if (kFlipSign || g.taps != 1 || g.k % kAmxTileBytes != 0) return direct;
  // Rows must also start on cache lines: a tile row straddling two lines costs two accesses,
  // which makes in-place loads slower than the gather (measured: 1.6-1.8x slower convs).
  const auto aligned = [](uintptr_t v) { return v % kAmxTileBytes == 0; };
  if (g.indirection == nullptr) {
    if (!aligned(reinterpret_cast<uintptr_t>(g.a)) || !aligned(g.lda)) return direct;
    direct.base = g.a;
    direct.stride = g.lda;
    return direct;
  }
  const uintptr_t first = reinterpret_cast<uintptr_t>(g.indirection[0]);
  const uintptr_t second = reinterpret_cast<uintptr_t>(g.indirection[1]);  // m >= 16
  if (second <= first || !aligned(first) || !aligned(second - first)) return direct;
  const uintptr_t stride = second - first;
  for (size_t r = 2; r < g.m; ++r) {
    if (reinterpret_cast<uintptr_t>(g.indirection[r]) != first + r * stride) return direct;
  }
  direct.base = g.indirection[0];
  direct.stride = stride;
  return direct;
}

// Whether a C block of this many rows reads A in place: only whole 16-row tiles do.
inline bool AmxDirectBlock(size_t block_rows) {
  return block_rows == kAmxBlockRows || block_rows == kAmxTileRows;
}

template <bool kFlipSign>
QLAB_AMX_TARGET HWY_NOINLINE void AmxGemm(const GemmArgs& g) {
  AmxTileConfig config = {};
  config.palette_id = 1;
  for (size_t t = 0; t < 8; ++t) {
    config.rows[t] = kAmxTileRows;
    config.colsb[t] = kAmxTileBytes;
  }
  _tile_loadconfig(&config);

  AmxScratch& scratch = amx_scratch;
  const size_t full_blocks = g.k_groups / kAmxKBlockGroups;
  const size_t k_blocks = (g.k_groups + kAmxKBlockGroups - 1) / kAmxKBlockGroups;
  const size_t tail_groups = g.k_groups - full_blocks * kAmxKBlockGroups;
  const size_t lda = k_blocks * kAmxTileBytes;
  const size_t panel_count = g.panel_end - g.panel_begin;

  uint8_t* b_tail = nullptr;
  if (tail_groups != 0) {
    b_tail = AmxAlignedBuffer(scratch.b_tail, panel_count * kAmxBTileBytes);
    for (size_t i = 0; i < panel_count; ++i) {
      const int8_t* src =
          g.packed +
          ((g.panel_begin + i) * g.k_groups + full_blocks * kAmxKBlockGroups) * kGroupBytes;
      uint8_t* dst = b_tail + i * kAmxBTileBytes;
      std::memcpy(dst, src, tail_groups * kGroupBytes);
      std::memset(dst + tail_groups * kGroupBytes, 0, kAmxBTileBytes - tail_groups * kGroupBytes);
    }
  }
  uint8_t* a = AmxAlignedBuffer(scratch.a, kAmxGatherRows * lda);
  // Rows at a constant stride, K a whole number of blocks and no sign flip: the A tiles load
  // straight from the activations, except in a partial row tile (which would read past M).
  const AmxDirectRows direct = FindDirectRows<kFlipSign>(g);

  for (size_t m_begin = 0; m_begin < g.m; m_begin += kAmxGatherRows) {
    const size_t rows = std::min(kAmxGatherRows, g.m - m_begin);
    if (direct.base == nullptr) {
      AmxGatherRows<kFlipSign>(g, m_begin, rows, a, lda);
    } else if (!AmxDirectBlock(rows % kAmxBlockRows)) {
      const size_t r0 = rows - rows % kAmxBlockRows;
      AmxGatherRows<kFlipSign>(g, m_begin + r0, rows - r0, a + r0 * lda, lda);
    }
    // Panel pairs outer, 32-row blocks inner: a pair's weights (2 x K x 16 bytes) are read from
    // L2 once per gathered block and then served from L1 to each row block.
    for (size_t p0 = g.panel_begin; p0 < g.panel_end; p0 += 2) {
      const size_t panels = std::min<size_t>(2, g.panel_end - p0);
      const size_t p1 = p0 + panels - 1;  // == p0 for an odd last panel (its tiles are skipped)
      const int8_t* const b[2] = {g.packed + p0 * g.k_groups * kGroupBytes,
                                  g.packed + p1 * g.k_groups * kGroupBytes};
      const int8_t* const tails[2] = {
          b_tail != nullptr
              ? reinterpret_cast<const int8_t*>(b_tail + (p0 - g.panel_begin) * kAmxBTileBytes)
              : nullptr,
          b_tail != nullptr
              ? reinterpret_cast<const int8_t*>(b_tail + (p1 - g.panel_begin) * kAmxBTileBytes)
              : nullptr};
      const PanelStage stages[2] = {LoadPanelStage(g, p0), LoadPanelStage(g, p1)};
      for (size_t r0 = 0; r0 < rows; r0 += kAmxBlockRows) {
        const size_t block_rows = std::min(kAmxBlockRows, rows - r0);
        const bool from_input = direct.base != nullptr && AmxDirectBlock(block_rows);
        const uint8_t* block_a =
            from_input ? direct.base + (m_begin + r0) * direct.stride : a + r0 * lda;
        const size_t stride = from_input ? direct.stride : lda;
        if (block_rows > kAmxTileRows) {
          if (panels > 1) {
            AmxBlock<2, 2>(block_a, stride, b, tails, full_blocks, k_blocks, scratch.c);
          } else {
            AmxBlock<2, 1>(block_a, stride, b, tails, full_blocks, k_blocks, scratch.c);
          }
        } else if (panels > 1) {
          AmxBlock<1, 2>(block_a, stride, b, tails, full_blocks, k_blocks, scratch.c);
        } else {
          AmxBlock<1, 1>(block_a, stride, b, tails, full_blocks, k_blocks, scratch.c);
        }
        for (size_t p = 0; p < panels; ++p) {
          AmxStoreBlockPanel(g, stages[p], m_begin + r0, block_rows,
                             scratch.c + p * kQGemmPanelColumns);
        }
      }
    }
  }
  _tile_release();
}

#undef QLAB_AMX_TARGET
