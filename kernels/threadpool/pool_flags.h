// How a pthreadpool's workers wait between parallel calls: spinning (pthreadpool's default, the
// lowest latency: inference at batch 1) or sleeping in the kernel (PTHREADPOOL_FLAG_YIELD_WORKERS).
//
// Spinning workers burn their core between calls. On a machine with more runnable threads than
// cores (two training runs, a build beside a benchmark) a spinning worker takes the core its own
// caller needs, and every parallel call then waits for a descheduled thread: measured on this
// 2-core machine with one other busy process, QAT training of ResNet20 ran at 100 img/s with
// spinning workers and 120-150 img/s with sleeping ones. Long-running throughput work (training)
// registers its pool as yielding; every qlab kernel passes PoolFlags(pool) to pthreadpool, so the
// choice is the pool owner's, not each kernel's.
#ifndef QLAB_KERNELS_THREADPOOL_POOL_FLAGS_H_
#define QLAB_KERNELS_THREADPOOL_POOL_FLAGS_H_

#include <pthreadpool.h>

#include <cstdint>

namespace qlab::kernels {

// Marks `pool` as yielding (true) or spinning (false, the default). At most 16 pools can be
// yielding at once (a training engine owns one); beyond that the pool stays spinning. Call
// SetYieldingPool(pool, false) before destroying a yielding pool.
void SetYieldingPool(pthreadpool_t pool, bool yielding);

// The flags to pass to pthreadpool_parallelize_*: PTHREADPOOL_FLAG_YIELD_WORKERS for a yielding
// pool, 0 otherwise (and for null).
uint32_t PoolFlags(pthreadpool_t pool);

}  // namespace qlab::kernels

#endif  // QLAB_KERNELS_THREADPOOL_POOL_FLAGS_H_
