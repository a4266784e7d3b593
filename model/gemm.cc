#include "model/gemm.h"

#include <Eigen/Core>
#include <atomic>
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

using internal::GemmFn;

std::atomic<GemmFn>& Chosen() {
  static std::atomic<GemmFn> fn{std::strcmp(DenseKernelName(), "avx2-fma") == 0
                                    ? &internal::GemmAvx2
                                    : &internal::GemmGeneric};
  return fn;
}

}  // namespace

namespace internal {

GemmFn SetGemmForTesting(GemmFn fn) { return Chosen().exchange(fn); }

}  // namespace internal

void Gemm(const GemmOperand& a, const GemmOperand& b, float* c,
          bool accumulate) {
  Chosen().load(std::memory_order_relaxed)(a, b, c, accumulate);
}

const char* GemmKernelName() {
  return Chosen().load(std::memory_order_relaxed) == &internal::GemmAvx2
             ? "avx2-fma"
             : "generic";
}

}  // namespace bnserve::model
