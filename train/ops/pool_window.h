// The window of one pooling output along one axis, shared by the max-pool forward's SIMD kernel
// (max_pool_forward.cc) and the pooling backward passes (pool_grad.cc), so that both scan
// exactly the input positions kernels/fp32/fp32_pool.cc's forward does.
#ifndef QLAB_TRAIN_OPS_POOL_WINDOW_H_
#define QLAB_TRAIN_OPS_POOL_WINDOW_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace qlab::train::internal {

// Real input positions [begin, end) of the window (padding never takes part in a max, and is
// skipped by average pooling's scatter), and its padded extent [start, padded_end), whose length
// is count_include_pad's divisor.
struct Window {
  int64_t begin, end, start, padded_end;
};

inline Window AxisWindow(size_t o, size_t stride, size_t pad, size_t kernel, size_t size) {
  const int64_t start = static_cast<int64_t>(o * stride) - static_cast<int64_t>(pad);
  const int64_t padded_end =
      std::min(start + static_cast<int64_t>(kernel), static_cast<int64_t>(size + pad));
  return {std::max<int64_t>(start, 0), std::min(padded_end, static_cast<int64_t>(size)), start,
          padded_end};
}

}  // namespace qlab::train::internal

#endif  // QLAB_TRAIN_OPS_POOL_WINDOW_H_
