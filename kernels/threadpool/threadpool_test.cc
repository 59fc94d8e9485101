// Tests of kernels/threadpool: every item runs exactly once for 1 and 2 threads, and both
// threads take part when there is enough work.
#include "kernels/threadpool/threadpool.h"

#include <pthreadpool.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace qlab::kernels {
namespace {

TEST(ThreadPoolTest, EveryItemRunsOnce) {
  for (size_t threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (size_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> counts(n);
      pool.ParallelFor(n, [&](size_t i) { counts[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(counts[i].load(), 1) << "item " << i;
    }
  }
}

TEST(ThreadPoolTest, NullPoolRunsInline) {
  const std::thread::id caller = std::this_thread::get_id();
  size_t calls = 0;
  ParallelFor(nullptr, 5, [&](size_t) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    ++calls;
  });
  EXPECT_EQ(calls, 5u);
}

TEST(ThreadPoolTest, TwoThreadsBothWork) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> ids;
  // Items that wait for each other's presence would deadlock on one thread; instead each item
  // spins briefly so that the second thread has time to pick up work.
  pool.ParallelFor(64, [&](size_t) {
    volatile double x = 0;
    for (int i = 0; i < 200000; ++i) x = x + 1.0;
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 2u);
}

// A borrowed pthreadpool runs the items and survives the wrapper (the owner destroys it).
TEST(ThreadPoolTest, BorrowedPoolIsUsedNotDestroyed) {
  pthreadpool_t raw = pthreadpool_create(2);
  ASSERT_NE(raw, nullptr);
  for (int round = 0; round < 2; ++round) {
    ThreadPool borrowed(raw, ThreadPool::Borrowed{});
    EXPECT_EQ(borrowed.threads(), 2u);
    std::vector<std::atomic<int>> counts(100);
    borrowed.ParallelFor(counts.size(), [&](size_t i) { counts[i].fetch_add(1); });
    for (size_t i = 0; i < counts.size(); ++i) EXPECT_EQ(counts[i].load(), 1) << "item " << i;
  }
  EXPECT_EQ(pthreadpool_get_threads_count(raw), 2u);  // still alive after two wrappers
  pthreadpool_destroy(raw);
  ThreadPool inline_pool(nullptr, ThreadPool::Borrowed{});
  EXPECT_EQ(inline_pool.threads(), 1u);
}

}  // namespace
}  // namespace qlab::kernels
