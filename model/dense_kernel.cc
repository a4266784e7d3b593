#include "model/dense_kernel.h"

#include <Eigen/Core>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BNSERVE_HAVE_AVX2_KERNEL 1
#include <immintrin.h>
#else
#define BNSERVE_HAVE_AVX2_KERNEL 0
#endif

namespace bnserve::model {
namespace internal {

void DenseForwardGeneric(const float* w, const float* b, const float* x,
                         float* y, int out, int in) {
  using RowMajor =
      Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const RowMajor> weight(w, out, in);
  Eigen::Map<const Eigen::VectorXf> xv(x, in);
  Eigen::Map<Eigen::VectorXf> yv(y, out);
  yv.noalias() = weight * xv;
  if (b != nullptr) yv += Eigen::Map<const Eigen::VectorXf>(b, out);
}

#if BNSERVE_HAVE_AVX2_KERNEL

bool CpuHasAvx2Fma() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

namespace {

// Lanes [0, n) set, for masked loads of a row's last n < 8 values.
__attribute__((target("avx2"))) inline __m256i TailMask(int n) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes);
}

__attribute__((target("avx2"))) inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace

// Dot-product form over the row-major weights, eight rows at a time: the
// eight accumulators are independent FMA chains (enough to hide the FMA
// latency), x is loaded once per eight rows, and the eight sums are reduced
// together with a tree of horizontal adds into one vector.
__attribute__((target("avx2,fma"))) void DenseForwardAvx2(
    const float* w, const float* b, const float* x, float* y, int out, int in) {
  const int full = in & ~7;
  const int rest = in - full;
  const __m256i mask = TailMask(rest);
  int o = 0;
  for (; o + 8 <= out; o += 8) {
    const float* r = w + static_cast<long>(o) * in;
    __m256 a[8];
    for (int k = 0; k < 8; ++k) a[k] = _mm256_setzero_ps();
    for (int i = 0; i < full; i += 8) {
      const __m256 xv = _mm256_loadu_ps(x + i);
      for (int k = 0; k < 8; ++k) {
        a[k] = _mm256_fmadd_ps(_mm256_loadu_ps(r + k * in + i), xv, a[k]);
      }
    }
    if (rest > 0) {
      const __m256 xv = _mm256_maskload_ps(x + full, mask);
      for (int k = 0; k < 8; ++k) {
        a[k] = _mm256_fmadd_ps(_mm256_maskload_ps(r + k * in + full, mask), xv,
                               a[k]);
      }
    }
    // [s0 .. s7] = the eight horizontal sums, in row order.
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
    const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
    const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1);
    const __m256 u1 = _mm256_hadd_ps(t2, t3);
    __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                             _mm256_permute2f128_ps(u0, u1, 0x31));
    if (b != nullptr) s = _mm256_add_ps(s, _mm256_loadu_ps(b + o));
    _mm256_storeu_ps(y + o, s);
  }
  for (; o < out; ++o) {
    const float* r = w + static_cast<long>(o) * in;
    __m256 a = _mm256_setzero_ps();
    for (int i = 0; i < full; i += 8) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(x + i), a);
    }
    if (rest > 0) {
      a = _mm256_fmadd_ps(_mm256_maskload_ps(r + full, mask),
                          _mm256_maskload_ps(x + full, mask), a);
    }
    y[o] = HorizontalSum(a) + (b != nullptr ? b[o] : 0.0f);
  }
}

#else  // !BNSERVE_HAVE_AVX2_KERNEL

bool CpuHasAvx2Fma() { return false; }

void DenseForwardAvx2(const float* w, const float* b, const float* x, float* y,
                      int out, int in) {
  DenseForwardGeneric(w, b, x, y, out, in);
}

#endif  // BNSERVE_HAVE_AVX2_KERNEL

}  // namespace internal

namespace {

using Kernel = void (*)(const float*, const float*, const float*, float*, int,
                        int);

struct Choice {
  Kernel kernel;
  const char* name;
};

Choice Choose() {
  const char* env = std::getenv("BNSERVE_DENSE_KERNEL");
  const bool force_generic = env != nullptr && std::strcmp(env, "generic") == 0;
  if (!force_generic && internal::CpuHasAvx2Fma()) {
    return {&internal::DenseForwardAvx2, "avx2-fma"};
  }
  return {&internal::DenseForwardGeneric, "generic"};
}

const Choice& Chosen() {
  static const Choice choice = Choose();
  return choice;
}

}  // namespace

void DenseForward(const float* w, const float* b, const float* x, float* y,
                  int out, int in) {
  Chosen().kernel(w, b, x, y, out, in);
}

const char* DenseKernelName() { return Chosen().name; }

}  // namespace bnserve::model
