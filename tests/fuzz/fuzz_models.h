// Small valid models and helpers shared by the fuzz targets and the seed
// generator (make_seeds.cc).
#ifndef BNSERVE_TESTS_FUZZ_FUZZ_MODELS_H_
#define BNSERVE_TESTS_FUZZ_FUZZ_MODELS_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bnserve/v1/snapshot.pb.h"

namespace bnserve::fuzz {

// Widths of the models built by TinySnapshot.
inline constexpr int kFeatures = 4;
inline constexpr int kClasses = 3;
inline constexpr int kOutputs = 2;  // regression

// A deterministic Dense->BN->relu x2 -> Dense network with non-trivial
// running statistics: classification (kClasses) or regression (kOutputs),
// kFeatures inputs, named "clf" / "reg" unless `model` is given.
v1::Snapshot TinySnapshot(v1::Task task, const std::string& model = "");

// Reports a violated invariant of the code under test and aborts, so that
// libFuzzer records the input as a crash.
[[noreturn]] inline void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "FUZZ INVARIANT VIOLATED: %s: %s\n", what,
               detail.c_str());
  std::abort();
}

}  // namespace bnserve::fuzz

#endif  // BNSERVE_TESTS_FUZZ_FUZZ_MODELS_H_
