// The window of one pooling output along one axis: the input positions kernels/fp32/fp32_pool.cc's
// forward scans, and the training engine's max-pool forward and pooling backward passes
// (train/ops/max_pool_forward.cc, pool_grad.cc) with it, so that all of them agree exactly.
#ifndef QLAB_KERNELS_FP32_POOL_WINDOW_H_
#define QLAB_KERNELS_FP32_POOL_WINDOW_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace qlab::kernels {

// Real input positions [begin, end) of the window (padding never takes part in a max, and is
// skipped by average pooling's scatter), and its padded extent [start, padded_end), whose length
// is count_include_pad's divisor.
struct PoolWindow {
  int64_t begin, end, start, padded_end;
};

// The window of output coordinate o along an axis of `size` inputs.
inline PoolWindow PoolAxisWindow(size_t o, size_t stride, size_t pad, size_t kernel, size_t size) {
  const int64_t start = static_cast<int64_t>(o * stride) - static_cast<int64_t>(pad);
  const int64_t padded_end =
      std::min(start + static_cast<int64_t>(kernel), static_cast<int64_t>(size + pad));
  return {std::max<int64_t>(start, 0), std::min(padded_end, static_cast<int64_t>(size)), start,
          padded_end};
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_FP32_POOL_WINDOW_H_
