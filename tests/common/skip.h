// Skipping a test when a prerequisite is missing, honestly: outside CI the
// test is skipped with the reason (ctest reports it as Skipped and
// scripts/run-ctest.sh lists it); in CI (environment variable CI=true), where
// scripts/install-deps.sh has installed everything, the test fails instead,
// so CI can never go green without running a check.
#ifndef BNSERVE_TESTS_COMMON_SKIP_H_
#define BNSERVE_TESTS_COMMON_SKIP_H_

#include <cstdlib>
#include <string_view>

#include "gtest/gtest.h"

namespace bnserve::testing {

// True when the environment variable CI is "true" or "1".
inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr &&
         (std::string_view(ci) == "true" || std::string_view(ci) == "1");
}

}  // namespace bnserve::testing

// Use in a TEST body or SetUp: returns from it, skipping (outside CI) or
// failing (CI=true) with `reason` (anything that streams into a gtest
// message).
#define BNSERVE_SKIP_OR_FAIL_IN_CI(reason)                                     \
  do {                                                                         \
    if (::bnserve::testing::InCi()) {                                          \
      GTEST_FAIL() << reason                                                   \
                   << " (CI=true: a test may not skip in CI; install what is " \
                      "missing, see scripts/install-deps.sh)";                 \
    } else {                                                                   \
      GTEST_SKIP() << reason;                                                  \
    }                                                                          \
  } while (0)

#endif  // BNSERVE_TESTS_COMMON_SKIP_H_
