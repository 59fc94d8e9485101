// PthreadpoolPtr: an owning pointer to a raw pthreadpool, the pool type (pthreadpool_t) that the
// fp32 and training kernels take, for code that creates such pools itself (tests, benchmarks).
// A null pool is valid everywhere a kernel takes one: the calling thread then does all the work.
#ifndef QLAB_KERNELS_THREADPOOL_PTHREADPOOL_PTR_H_
#define QLAB_KERNELS_THREADPOOL_PTHREADPOOL_PTR_H_

#include <pthreadpool.h>

#include <cstddef>
#include <memory>

namespace qlab::kernels {

struct PthreadpoolDeleter {
  void operator()(pthreadpool* pool) const { pthreadpool_destroy(pool); }
};
using PthreadpoolPtr = std::unique_ptr<pthreadpool, PthreadpoolDeleter>;

// A pool of `threads` threads (the caller's included), or null for threads <= 1, as the engines
// run one thread: on the caller, without a pool.
inline PthreadpoolPtr MakePthreadpool(size_t threads) {
  return PthreadpoolPtr(threads > 1 ? pthreadpool_create(threads) : nullptr);
}

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_THREADPOOL_PTHREADPOOL_PTR_H_
