// The single-example dense kernels: both agree with a double-precision
// reference on every shape class (row blocks of 8 and the rows after them,
// inputs with and without a tail of fewer than 8), with and without a bias,
// and are deterministic. The ReLU kernels give the same bits.
#include "model/dense_kernel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/relu_kernel.h"
#include "tests/common/skip.h"

namespace bnserve::model {
namespace {

struct Case {
  std::vector<float> w, b, x;
};

Case MakeCase(int out, int in, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Case c;
  c.w.resize(static_cast<size_t>(out) * in);
  c.b.resize(out);
  c.x.resize(in);
  for (float& v : c.w) v = u(rng);
  for (float& v : c.b) v = u(rng);
  for (float& v : c.x) v = u(rng);
  return c;
}

// y = W x + b in double, and the sum of |terms| per row (the scale of the
// rounding error any float summation order can make).
void Reference(const Case& c, bool bias, int out, int in,
               std::vector<double>* y, std::vector<double>* scale) {
  y->assign(out, 0.0);
  scale->assign(out, 0.0);
  for (int o = 0; o < out; ++o) {
    double s = bias ? c.b[o] : 0.0;
    double a = bias ? std::abs(c.b[o]) : 0.0;
    for (int i = 0; i < in; ++i) {
      const double t = static_cast<double>(c.w[o * in + i]) * c.x[i];
      s += t;
      a += std::abs(t);
    }
    (*y)[o] = s;
    (*scale)[o] = a;
  }
}

using KernelFn = void (*)(const float*, const float*, const float*, float*, int,
                          int);

void CheckKernel(KernelFn kernel, const std::string& name) {
  const int outs[] = {1, 2, 7, 8, 9, 10, 16, 17, 64, 128};
  const int ins[] = {1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 128, 300};
  uint32_t seed = 1;
  for (int out : outs) {
    for (int in : ins) {
      for (bool bias : {false, true}) {
        const Case c = MakeCase(out, in, seed++);
        // Guard values after y catch a store past out.
        std::vector<float> y(out + 8, 12345.0f);
        kernel(c.w.data(), bias ? c.b.data() : nullptr, c.x.data(), y.data(),
               out, in);
        std::vector<double> ref, scale;
        Reference(c, bias, out, in, &ref, &scale);
        for (int o = 0; o < out; ++o) {
          // float epsilon times the number of terms bounds the error of any
          // summation order, relative to the sum of the magnitudes.
          const double tol = 1.2e-7 * (in + 2) * scale[o] + 1e-30;
          ASSERT_NEAR(y[o], ref[o], tol)
              << name << " out=" << out << " in=" << in << " bias=" << bias
              << " row " << o;
        }
        for (int k = out; k < out + 8; ++k) {
          ASSERT_EQ(y[k], 12345.0f) << name << " wrote past out=" << out;
        }
      }
    }
  }
}

TEST(DenseKernelTest, GenericMatchesDoubleReference) {
  CheckKernel(&internal::DenseForwardGeneric, "generic");
}

TEST(DenseKernelTest, Avx2MatchesDoubleReference) {
  if (!internal::CpuHasAvx2Fma()) {
    BNSERVE_SKIP_OR_FAIL_IN_CI(
        "CPU without AVX2+FMA: the AVX2 kernel cannot "
        "run here");
  }
  CheckKernel(&internal::DenseForwardAvx2, "avx2");
}

TEST(DenseKernelTest, KernelsAgreeClosely) {
  if (!internal::CpuHasAvx2Fma()) {
    BNSERVE_SKIP_OR_FAIL_IN_CI(
        "CPU without AVX2+FMA: the AVX2 kernel cannot "
        "run here");
  }
  const Case c = MakeCase(128, 64, 99);
  std::vector<float> a(128), g(128);
  internal::DenseForwardAvx2(c.w.data(), c.b.data(), c.x.data(), a.data(), 128,
                             64);
  internal::DenseForwardGeneric(c.w.data(), c.b.data(), c.x.data(), g.data(),
                                128, 64);
  for (int o = 0; o < 128; ++o) EXPECT_NEAR(a[o], g[o], 1e-5) << o;
}

TEST(DenseKernelTest, DeterministicBitForBit) {
  const Case c = MakeCase(67, 131, 7);
  std::vector<float> first(67), again(67);
  DenseForward(c.w.data(), c.b.data(), c.x.data(), first.data(), 67, 131);
  for (int rep = 0; rep < 20; ++rep) {
    DenseForward(c.w.data(), c.b.data(), c.x.data(), again.data(), 67, 131);
    ASSERT_EQ(std::memcmp(first.data(), again.data(), sizeof(float) * 67), 0);
  }
}

TEST(DenseKernelTest, DispatchFollowsTheCpuAndTheEnvironment) {
  const char* env = std::getenv("BNSERVE_DENSE_KERNEL");
  const bool forced = env != nullptr && std::string(env) == "generic";
  EXPECT_STREQ(DenseKernelName(),
               internal::CpuHasAvx2Fma() && !forced ? "avx2-fma" : "generic");
}

// ReLU: the AVX2 kernel and the portable loop give the same bits for every
// length (blocks of 8 and tails), positive and negative values, signed
// zeros, infinities and NaN (both make NaN +0).
TEST(ReluKernelTest, Avx2MatchesGenericBitForBit) {
  if (!internal::CpuHasAvx2Fma()) {
    BNSERVE_SKIP_OR_FAIL_IN_CI("CPU without AVX2: the AVX2 kernel cannot run");
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  const float special[] = {0.0f,          -0.0f,          INFINITY, -INFINITY,
                           std::nanf(""), -std::nanf(""), 1e-40f,   -1e-40f};
  for (int n = 0; n <= 37; ++n) {
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = i % 3 == 0 ? special[i % 8] : u(rng);
    std::vector<float> a = x, g = x;
    internal::ReluAvx2(a.data(), n);
    internal::ReluGeneric(g.data(), n);
    // (n = 0: empty vectors may hold null, which memcmp must not get.)
    ASSERT_TRUE(n == 0 ||
                std::memcmp(a.data(), g.data(), sizeof(float) * n) == 0)
        << n;
    for (int i = 0; i < n; ++i) {
      EXPECT_FALSE(std::signbit(g[i])) << i;
      EXPECT_EQ(g[i], x[i] > 0.0f ? x[i] : 0.0f) << i;
    }
  }
}

}  // namespace
}  // namespace bnserve::model
