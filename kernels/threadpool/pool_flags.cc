// SetYieldingPool / PoolFlags: a small lock-free registry of yielding pools.
#include "kernels/threadpool/pool_flags.h"

#include <atomic>

namespace qlab::kernels {
namespace {

constexpr int kSlots = 16;
std::atomic<pthreadpool_t> yielding_pools[kSlots];

}  // namespace

void SetYieldingPool(pthreadpool_t pool, bool yielding) {
  if (pool == nullptr) return;
  for (auto& slot : yielding_pools) {
    if (slot.load(std::memory_order_acquire) == pool) {
      if (!yielding) slot.store(nullptr, std::memory_order_release);
      return;
    }
  }
  if (!yielding) return;
  for (auto& slot : yielding_pools) {
    pthreadpool_t expected = nullptr;
    if (slot.compare_exchange_strong(expected, pool, std::memory_order_acq_rel)) return;
  }
}

uint32_t PoolFlags(pthreadpool_t pool) {
  if (pool == nullptr) return 0;
  for (const auto& slot : yielding_pools) {
    if (slot.load(std::memory_order_acquire) == pool) return PTHREADPOOL_FLAG_YIELD_WORKERS;
  }
  return 0;
}

}  // namespace qlab::kernels
