// ThreadSanitizer's view of pthreadpool's hand-offs, linked into every binary under
// --config=tsan only (.bazelrc: --custom_malloc=//tests:tsan_pthreadpool_sync).
//
// qlab links Debian's libpthreadpool, which is not instrumented: TSan does not see that a
// worker starts an item only after the caller has published the item's inputs, nor that the
// caller continues only after every item is done (pthreadpool synchronizes with atomics and
// futexes inside the library). Every write a kernel makes before pthreadpool_parallelize_1d and
// reads in its items would be reported as a race. This definition interposes the library's
// (the executable's symbol wins; the real one is found with dlsym(RTLD_NEXT)) and states both
// edges with TSan's annotations: the caller releases before the call and acquires after it,
// each item acquires before it runs and releases after. Items acquire only the caller's release,
// never each other's, so two items touching the same memory are still reported.
// pthreadpool_parallelize_1d is the only pthreadpool entry point qlab calls.
//
// It also carries the suppressions for reports inside other uninstrumented system libraries
// (__tsan_default_suppressions, read by the TSan runtime at start).
#include <dlfcn.h>
#include <pthreadpool.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

namespace {

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

Parallelize1d RealParallelize1d() {
  static const Parallelize1d real =
      reinterpret_cast<Parallelize1d>(dlsym(RTLD_NEXT, "pthreadpool_parallelize_1d"));
  if (real == nullptr) {
    std::fprintf(stderr,
                 "tsan_pthreadpool_sync: libpthreadpool's pthreadpool_parallelize_1d "
                 "not found\n");
    std::abort();
  }
  return real;
}

}  // namespace

// GDAL (loaded by OpenCV's image decoding) takes two of its own mutexes in both orders while
// imread opens a file: a lock-order report on the main thread entirely within libgdal.
extern "C" const char* __tsan_default_suppressions() { return "deadlock:libgdal.so\n"; }

extern "C" void pthreadpool_parallelize_1d(pthreadpool_t pool, pthreadpool_task_1d_t function,
                                           void* context, size_t range, uint32_t flags) {
  Call call{function, context, 0, 0};
  __tsan_release(&call.start);
  RealParallelize1d()(pool, &AnnotatedItem, &call, range, flags);
  __tsan_acquire(&call.done);
}
