// QLAB_CHECK: stop the program when an internal invariant is broken.
//
// Recoverable errors (bad files, bad shapes, bad user parameters) are absl::Status values; a CHECK
// is only for states that mean qlab itself is wrong, where continuing would compute garbage.
// Debian's Abseil (20220623) has no public CHECK, hence this small one. It is always on, also in
// optimized builds: the conditions it guards are cheap and outside hot loops.
#ifndef QLAB_CORE_CHECK_H_
#define QLAB_CORE_CHECK_H_

namespace qlab::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const char* message);
}  // namespace qlab::internal

// QLAB_CHECK(cond) and QLAB_CHECK_MSG(cond, "why") abort with the file, line and condition.
#define QLAB_CHECK_MSG(condition, message)                                            \
  do {                                                                                \
    if (__builtin_expect(!(condition), 0)) {                                          \
      ::qlab::internal::CheckFailed(__FILE__, __LINE__, #condition, (message));       \
    }                                                                                 \
  } while (false)

#define QLAB_CHECK(condition) QLAB_CHECK_MSG(condition, "")

#endif  // QLAB_CORE_CHECK_H_
