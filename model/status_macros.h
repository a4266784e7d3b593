// Early-return helpers for absl::Status / absl::StatusOr (Abseil 20220623 on
// Debian 12 ships neither RETURN_IF_ERROR nor ASSIGN_OR_RETURN).
#ifndef BNSERVE_MODEL_STATUS_MACROS_H_
#define BNSERVE_MODEL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// if it is not OK.
#define BNSERVE_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::absl::Status bnserve_status_ = (expr);           \
    if (!bnserve_status_.ok()) return bnserve_status_; \
  } while (0)

#define BNSERVE_STATUS_CONCAT_INNER_(a, b) a##b
#define BNSERVE_STATUS_CONCAT_(a, b) BNSERVE_STATUS_CONCAT_INNER_(a, b)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status from
// the enclosing function. `lhs` may be a declaration: `auto x`.
#define BNSERVE_ASSIGN_OR_RETURN(lhs, rexpr) \
  BNSERVE_ASSIGN_OR_RETURN_IMPL_(            \
      BNSERVE_STATUS_CONCAT_(bnserve_statusor_, __LINE__), lhs, rexpr)

#define BNSERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // BNSERVE_MODEL_STATUS_MACROS_H_
