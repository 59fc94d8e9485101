// Status propagation helpers for qlab's API boundaries.
//
// Every recoverable failure in qlab travels as absl::Status / absl::StatusOr. Debian's Abseil
// (20220623) predates Abseil's own RETURN_IF_ERROR / ASSIGN_OR_RETURN, so qlab defines the pair
// here, prefixed to avoid clashing with any later Abseil or third-party definition.
//
//   absl::StatusOr<Tensor> LoadAndQuantize(const std::string& path) {
//     QLAB_ASSIGN_OR_RETURN(Tensor weights, LoadTensor(path));
//     QLAB_RETURN_IF_ERROR(ValidateWeights(weights));
//     return Quantize(weights);
//   }
#ifndef QLAB_CORE_STATUS_MACROS_H_
#define QLAB_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if it is not OK.
#define QLAB_RETURN_IF_ERROR(expr)                                 \
  do {                                                             \
    ::absl::Status qlab_status_macro_internal_status = (expr);     \
    if (!qlab_status_macro_internal_status.ok()) {                 \
      return qlab_status_macro_internal_status;                    \
    }                                                              \
  } while (false)

#define QLAB_STATUS_MACROS_CONCAT_INNER(a, b) a##b
#define QLAB_STATUS_MACROS_CONCAT(a, b) QLAB_STATUS_MACROS_CONCAT_INNER(a, b)

#define QLAB_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) {                                  \
    return std::move(statusor).status();                 \
  }                                                      \
  lhs = std::move(statusor).value()

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status from the enclosing
// function, otherwise moves the value into `lhs`, which may be a declaration (`Tensor t`) or an
// existing variable. Expands to several statements: do not use as the body of an unbraced `if`.
#define QLAB_ASSIGN_OR_RETURN(lhs, rexpr) \
  QLAB_ASSIGN_OR_RETURN_IMPL(             \
      QLAB_STATUS_MACROS_CONCAT(qlab_statusor_, __LINE__), lhs, rexpr)

#endif  // QLAB_CORE_STATUS_MACROS_H_
