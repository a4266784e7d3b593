#include "model/gemm.h"

#include <Eigen/Core>
#include <cstring>

#include "model/dense_kernel.h"
#include "model/gemm_eigen.inc"

namespace bnserve::model {

namespace internal {

void GemmGeneric(const GemmOperand& a, const GemmOperand& b, float* c,
                 bool accumulate) {
  GemmWithEigen(a, b, c, accumulate);
}

}  // namespace internal

namespace {

using GemmFn = void (*)(const GemmOperand&, const GemmOperand&, float*, bool);

GemmFn Chosen() {
  static const GemmFn fn = std::strcmp(DenseKernelName(), "avx2-fma") == 0
                               ? &internal::GemmAvx2
                               : &internal::GemmGeneric;
  return fn;
}

}  // namespace

void Gemm(const GemmOperand& a, const GemmOperand& b, float* c,
          bool accumulate) {
  Chosen()(a, b, c, accumulate);
}

const char* GemmKernelName() {
  return Chosen() == &internal::GemmAvx2 ? "avx2-fma" : "generic";
}

}  // namespace bnserve::model
