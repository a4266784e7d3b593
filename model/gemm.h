// The matrix products of minibatch training: conv2d's im2col GEMMs and the
// dense layers' batch products, forward and backward.
//
// Like the single-example dense kernel (model/dense_kernel.h), the code is
// chosen once per process from the CPU: on x86-64 with AVX2 and FMA, Eigen's
// GEMM compiled for AVX2+FMA (model/gemm_avx2.cc, built with -mavx2 -mfma),
// else the same Eigen code built for the portable baseline. Both are
// deterministic: the same inputs always give the same bits within one
// process. They may differ from each other in the last bits (the AVX2 build
// fuses multiply and add and sums in 8 lanes instead of 4).
// BNSERVE_DENSE_KERNEL=generic forces the portable code for both.
//
// Pure functions; thread-safe.
#ifndef BNSERVE_MODEL_GEMM_H_
#define BNSERVE_MODEL_GEMM_H_

#include <cstdint>

namespace bnserve::model {

// A rows x cols row-major contiguous matrix, used as is or transposed.
struct GemmOperand {
  const float* data;
  int64_t rows;
  int64_t cols;
  bool transposed = false;

  int64_t op_rows() const { return transposed ? cols : rows; }
  int64_t op_cols() const { return transposed ? rows : cols; }
};

// c = op(a) op(b), with op(a) m x k and op(b) k x n (a.op_cols() must equal
// b.op_rows()); c is m x n, row-major and contiguous, and must not overlap a
// or b. With `accumulate`, c += op(a) op(b) instead.
void Gemm(const GemmOperand& a, const GemmOperand& b, float* c,
          bool accumulate = false);

// "avx2-fma" or "generic": the code Gemm uses in this process.
const char* GemmKernelName();

namespace internal {
// The two builds, for tests and benchmarks. GemmAvx2 only when
// CpuHasAvx2Fma() (model/dense_kernel.h); on other architectures it is the
// portable code.
void GemmGeneric(const GemmOperand& a, const GemmOperand& b, float* c,
                 bool accumulate);
void GemmAvx2(const GemmOperand& a, const GemmOperand& b, float* c,
              bool accumulate);

using GemmFn = void (*)(const GemmOperand&, const GemmOperand&, float*, bool);
// Tests only: makes Gemm run `fn` (GemmGeneric, or GemmAvx2 when
// CpuHasAvx2Fma()) from now on in this process, so that one test can compare
// whole training steps on both builds; returns the previous choice. Not to
// be called while another thread may be in Gemm.
GemmFn SetGemmForTesting(GemmFn fn);
}  // namespace internal

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_GEMM_H_
