// The single-example dense layer kernel behind Network::Forward, the
// serving hot path: y = W x + b for one example.
//
// Which kernel runs is decided once per process from the CPU: on x86-64 with
// AVX2 and FMA (every x86 server since 2013) a hand-written kernel, else the
// portable Eigen one that the build's flags allow. Both are deterministic:
// the same inputs always give the same bits on the same machine, and every
// caller of Forward in a process (Predict, PredictBatch, the warm-up) uses
// the same kernel, so one example predicted alone equals the same row inside
// a batch bit for bit. The two kernels sum in different orders and so may
// differ in the last bits (about 1e-7 relative), as two BLAS libraries do.
//
// Setting the environment variable BNSERVE_DENSE_KERNEL=generic before the
// first call forces the portable kernel (to compare, or to rule it out); the
// training GEMMs (model/gemm.h) follow the same choice.
//
// Pure functions; thread-safe.
#ifndef BNSERVE_MODEL_DENSE_KERNEL_H_
#define BNSERVE_MODEL_DENSE_KERNEL_H_

namespace bnserve::model {

// y[0..out) = W x + b, with W out x in, row-major and contiguous, x of `in`
// values, b of `out` values or null. `y` must not overlap `x`, `w` or `b`.
void DenseForward(const float* w, const float* b, const float* x, float* y,
                  int out, int in);

// "avx2-fma" or "generic": the kernel DenseForward uses in this process.
const char* DenseKernelName();

namespace internal {
// The two kernels, for tests and benchmarks.
void DenseForwardGeneric(const float* w, const float* b, const float* x,
                         float* y, int out, int in);
// Whether this CPU can run DenseForwardAvx2 (false on non-x86 builds).
bool CpuHasAvx2Fma();
// Only to be called when CpuHasAvx2Fma().
void DenseForwardAvx2(const float* w, const float* b, const float* x, float* y,
                      int out, int in);
}  // namespace internal

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_DENSE_KERNEL_H_
