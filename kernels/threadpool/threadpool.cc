// ThreadPool over pthreadpool: see threadpool.h.
#include "kernels/threadpool/threadpool.h"

#include <pthreadpool.h>

#include <cstddef>
#include <functional>

#include "kernels/threadpool/pool_flags.h"

namespace qlab::kernels {
namespace {

// pthreadpool takes a C callback and a context pointer: the context is the std::function.
void CallItem(void* context, size_t i) {
  (*static_cast<const std::function<void(size_t)>*>(context))(i);
}

}  // namespace

ThreadPool::ThreadPool(size_t threads) {
  if (threads > 1) pool_ = pthreadpool_create(threads);
}

ThreadPool::ThreadPool(pthreadpool* pool, Borrowed) : pool_(pool), owned_(false) {}

ThreadPool::~ThreadPool() {
  if (pool_ != nullptr && owned_) pthreadpool_destroy(pool_);
}

size_t ThreadPool::threads() const {
  return pool_ != nullptr ? pthreadpool_get_threads_count(pool_) : 1;
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (pool_ == nullptr || n <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  pthreadpool_parallelize_1d(pool_, &CallItem, const_cast<std::function<void(size_t)>*>(&fn), n,
                             PoolFlags(pool_));
}

void ParallelFor(ThreadPool* pool, size_t n, const std::function<void(size_t)>& fn) {
  if (pool == nullptr) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  pool->ParallelFor(n, fn);
}

}  // namespace qlab::kernels
