// Gemm built with -mavx2 -mfma (model/CMakeLists.txt), run only on CPUs that
// have both (model/gemm.cc decides).
//
// One definition rule: Eigen's templates are instantiated here with other
// code than in every other file, and the linker keeps one copy of each
// template instantiation by its name. So this file renames Eigen's
// namespace (the macro below, before any Eigen header) and exports nothing
// but internal::GemmAvx2, whose interface has no Eigen type; the test
// model_gemm_avx2_symbols checks the object file for any other global
// symbol. Include no other header of the project that includes Eigen.
#include "model/gemm.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)

#define Eigen bnserve_avx2_eigen
#include <Eigen/Core>

#include "model/gemm_eigen.inc"

namespace bnserve::model::internal {

void GemmAvx2(const GemmOperand& a, const GemmOperand& b, float* c,
              bool accumulate) {
  GemmWithEigen(a, b, c, accumulate);
}

}  // namespace bnserve::model::internal

#else  // not built for AVX2+FMA: never chosen, the portable code

namespace bnserve::model::internal {

void GemmAvx2(const GemmOperand& a, const GemmOperand& b, float* c,
              bool accumulate) {
  GemmGeneric(a, b, c, accumulate);
}

}  // namespace bnserve::model::internal

#endif
