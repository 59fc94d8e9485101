// ThreadSanitizer's view of the synchronization inside uninstrumented system libraries, linked
// into every binary under --config=tsan only (.bazelrc: --custom_malloc=//tests:tsan_system_sync).
//
// qlab links Debian's prebuilt libpthreadpool and Abseil, neither built with TSan. Both
// synchronize with their own atomics and futexes, which TSan does not see, so every hand-off
// through them would be reported as a data race:
//   * pthreadpool: a worker starts an item only after the caller has published its inputs, and
//     the caller continues only after every item is done;
//   * absl::Mutex (the prefetching data loader): what one holder wrote, the next holder reads.
// The definitions below interpose the libraries' own (the executable's symbols win; the real
// ones are found with dlsym(RTLD_NEXT)) and state those edges with TSan's annotations. Items of
// one parallel call acquire only the caller's release, never each other's, and a mutex's edges
// exist only between its holders, so real races (two items writing the same memory, data touched
// without the lock) are still reported. Only the entry points qlab calls are covered:
// pthreadpool_parallelize_1d and absl::Mutex's Lock, Unlock and Await (through MutexLock).
//
// It also carries the suppressions for reports inside other uninstrumented system libraries
// (__tsan_default_suppressions, read by the TSan runtime at start).
#include <dlfcn.h>
#include <pthreadpool.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"

namespace {

// The next definition of `symbol` after this executable's: the library's.
void* Real(const char* symbol) {
  void* real = dlsym(RTLD_NEXT, symbol);
  if (real == nullptr) {
    std::fprintf(stderr, "tsan_system_sync: %s not found in the system libraries\n", symbol);
    std::abort();
  }
  return real;
}

struct Call {
  pthreadpool_task_1d_t function;
  void* context;
  char start;  // addresses the annotations synchronize on
  char done;
};

void AnnotatedItem(void* call_ptr, size_t i) {
  Call* call = static_cast<Call*>(call_ptr);
  __tsan_acquire(&call->start);
  call->function(call->context, i);
  __tsan_release(&call->done);
}

using Parallelize1d = void (*)(pthreadpool_t, pthreadpool_task_1d_t, void*, size_t, uint32_t);
using MutexMethod = void (*)(absl::Mutex*);
using MutexAwait = void (*)(absl::Mutex*, const absl::Condition&);

}  // namespace

// GDAL (loaded by OpenCV's image decoding) takes two of its own mutexes in both orders while
// imread opens a file: a lock-order report on the main thread entirely within libgdal.
extern "C" const char* __tsan_default_suppressions() { return "deadlock:libgdal.so\n"; }

extern "C" void pthreadpool_parallelize_1d(pthreadpool_t pool, pthreadpool_task_1d_t function,
                                           void* context, size_t range, uint32_t flags) {
  static const auto real = reinterpret_cast<Parallelize1d>(Real("pthreadpool_parallelize_1d"));
  Call call{function, context, 0, 0};
  __tsan_release(&call.start);
  real(pool, &AnnotatedItem, &call, range, flags);
  __tsan_acquire(&call.done);
}

// Member functions called through plain function pointers with the object as first argument:
// the Itanium C++ ABI passes `this` that way.
namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto real = reinterpret_cast<MutexMethod>(Real("_ZN4absl7debian35Mutex4LockEv"));
  real(this);
  __tsan_acquire(this);
}

void Mutex::Unlock() {
  static const auto real = reinterpret_cast<MutexMethod>(Real("_ZN4absl7debian35Mutex6UnlockEv"));
  __tsan_release(this);
  real(this);
}

// Await may release the mutex while it waits (other holders come between) and holds it again on
// return. Its condition is evaluated with the mutex logically held, by this thread or by another
// one inside its Unlock, at points only the library knows: each evaluation is wrapped to acquire
// before it reads and release after, as a holder would.
namespace {
struct AnnotatedCondition {
  Mutex* mu;
  const Condition* cond;
};
bool EvalAnnotated(void* arg) {
  const AnnotatedCondition* c = static_cast<const AnnotatedCondition*>(arg);
  __tsan_acquire(c->mu);
  const bool holds = c->cond->Eval();
  __tsan_release(c->mu);
  return holds;
}
}  // namespace

void Mutex::Await(const Condition& cond) {
  static const auto real =
      reinterpret_cast<MutexAwait>(Real("_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE"));
  AnnotatedCondition annotated{this, &cond};
  __tsan_release(this);
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl
