// Deterministic parallel loops shared by the kernels of train/ops: fixed-size blocks of rows
// (or elements) handed to pthreadpool, and per-channel sums reduced block by block.
//
// Why blocks of a fixed size: the training engine must produce the same results file whatever
// the number of threads. A reduction split per thread would add its partial sums in an order
// that depends on the thread count; here the split depends only on the problem size (blocks of
// kRowsPerBlock rows), each block sums its rows in row order into its own slot, and the slots
// are added in block order on the calling thread. Any pool, or none, gives the same bits.
#ifndef QLAB_TRAIN_OPS_PARALLEL_BLOCKS_H_
#define QLAB_TRAIN_OPS_PARALLEL_BLOCKS_H_

#include <pthreadpool.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/threadpool/pool_flags.h"

namespace qlab::train::internal {

// Rows per block: large enough that scheduling and the per-block partial sums cost nothing next
// to the block's work, small enough that a ResNet activation (thousands of rows) feeds 2 cores.
inline constexpr size_t kRowsPerBlock = 256;

inline size_t BlockCount(size_t rows, size_t rows_per_block) {
  return (rows + rows_per_block - 1) / rows_per_block;
}

// Calls body(begin, end) for consecutive row ranges [begin, end) of at most `rows_per_block`
// rows covering [0, rows), possibly concurrently. `body` must only write state of its own rows.
template <class Body>
void ParallelForRowBlocks(size_t rows, size_t rows_per_block, const Body& body,
                          pthreadpool_t pool) {
  struct Context {
    const Body* body;
    size_t rows;
    size_t rows_per_block;
  };
  Context context{&body, rows, rows_per_block};
  pthreadpool_parallelize_1d(
      pool,
      [](void* opaque, size_t block) {
        const Context& c = *static_cast<const Context*>(opaque);
        const size_t begin = block * c.rows_per_block;
        (*c.body)(begin, std::min(begin + c.rows_per_block, c.rows));
      },
      &context, BlockCount(rows, rows_per_block), kernels::PoolFlags(pool));
}

// sums[0, width) = the sum over blocks, in block order, of what accumulate(begin, end, partial)
// adds into a zeroed partial[0, width) for the rows [begin, end) of each block of
// `rows_per_block` rows. With accumulate adding its rows in row order, the result depends on
// `rows` and `rows_per_block` only, never on the pool.
template <class Accumulate>
void BlockedSums(size_t rows, size_t rows_per_block, size_t width, const Accumulate& accumulate,
                 double* sums, pthreadpool_t pool) {
  const size_t blocks = BlockCount(rows, rows_per_block);
  std::vector<double> partial(blocks * width, 0.0);
  ParallelForRowBlocks(
      rows, rows_per_block,
      [&](size_t begin, size_t end) {
        accumulate(begin, end, partial.data() + (begin / rows_per_block) * width);
      },
      pool);
  std::fill(sums, sums + width, 0.0);
  for (size_t b = 0; b < blocks; ++b) {
    const double* block = partial.data() + b * width;
    for (size_t i = 0; i < width; ++i) sums[i] += block[i];
  }
}

}  // namespace qlab::train::internal

#endif  // QLAB_TRAIN_OPS_PARALLEL_BLOCKS_H_
