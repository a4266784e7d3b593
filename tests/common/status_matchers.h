// StatusIs(code, substring): a gmock matcher for absl::Status and
// absl::StatusOr<T> that checks the exact code and that the message contains
// `substring`, so a test of bad input asserts the contract (the code and what
// the user reads), not merely "not OK".
#ifndef BNSERVE_TESTS_COMMON_STATUS_MATCHERS_H_
#define BNSERVE_TESTS_COMMON_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace bnserve::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P2(StatusIs, code, substring, "") {
  const absl::Status& status = ::bnserve::testing::GetStatus(arg);
  *result_listener << "whose status is " << status;
  return status.code() == code &&
         status.message().find(std::string(substring)) !=
             absl::string_view::npos;
}

}  // namespace bnserve::testing

#endif  // BNSERVE_TESTS_COMMON_STATUS_MATCHERS_H_
