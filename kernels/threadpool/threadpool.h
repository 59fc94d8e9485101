// ThreadPool: the threads qlab's kernels split their work over (both cores of the target machine).
//
// A thin owner of a pthreadpool (Debian's libpthreadpool, the pool XNNPACK uses): the calling
// thread takes part in the work, so ThreadPool(2) adds one worker thread and ThreadPool(1) none
// (everything runs inline on the caller). Kernels take a `ThreadPool*` and split their output
// into independent tiles (ParallelFor items), so results never depend on the thread count:
// every tile is computed by exactly the same code whichever thread runs it.
#ifndef QLAB_KERNELS_THREADPOOL_THREADPOOL_H_
#define QLAB_KERNELS_THREADPOOL_THREADPOOL_H_

#include <cstddef>
#include <functional>

struct pthreadpool;

namespace qlab::kernels {

class ThreadPool {
 public:
  // threads >= 1 (0 is treated as 1). If the worker threads cannot be created, the pool runs
  // everything on the caller (threads() then reports 1).
  explicit ThreadPool(size_t threads);
  // Wraps `pool` (may be null: everything inline) without owning it, so that kernels taking a
  // ThreadPool* run on a pthreadpool someone else created and configured (the training engine's,
  // registered as yielding: pool_flags.h). `pool` must outlive this object.
  struct Borrowed {};
  ThreadPool(pthreadpool* pool, Borrowed);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t threads() const;

  // Calls fn(i) once for every i in [0, n), spread over the threads, and returns when all calls
  // have returned. Calls may run in any order and concurrently: items must be independent.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  pthreadpool* pool_ = nullptr;  // null: run inline
  bool owned_ = true;
};

// ParallelFor on `pool`, or inline on the caller when pool is null.
void ParallelFor(ThreadPool* pool, size_t n, const std::function<void(size_t)>& fn);

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_THREADPOOL_THREADPOOL_H_
