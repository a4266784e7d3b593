// The training GEMMs: the portable and the AVX2+FMA builds, each called
// directly (whatever the dispatch chose), agree with a double-precision
// reference for every transpose combination, with and without
// accumulation, on small odd shapes and on the shapes of the digits CNN;
// they agree with each other; the dispatched one is deterministic.
#include "model/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/dense_kernel.h"

namespace bnserve::model {
namespace {

using GemmFn = void (*)(const GemmOperand&, const GemmOperand&, float*, bool);

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// op(M)(i, j) of a stored rows x cols row-major matrix.
double At(const GemmOperand& op, int64_t i, int64_t j) {
  return op.transposed ? op.data[j * op.cols + i] : op.data[i * op.cols + j];
}

struct Shape3 {
  int64_t m, n, k;
};

// Runs `gemm` on m x k times k x n for all four transpose combinations and
// both modes, against a double reference with a tolerance scaled by the
// sum of the terms' magnitudes (the error bound of any summation order).
void CheckGemm(GemmFn gemm, const std::string& name, const Shape3& s,
               uint32_t seed) {
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (bool accumulate : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << name << " m=" << s.m << " n=" << s.n << " k=" << s.k
                     << " ta=" << ta << " tb=" << tb << " acc=" << accumulate);
        const std::vector<float> a = Random(s.m * s.k, seed++);
        const std::vector<float> b = Random(s.k * s.n, seed++);
        const GemmOperand aop{a.data(), ta ? s.k : s.m, ta ? s.m : s.k,
                              ta == 1};
        const GemmOperand bop{b.data(), tb ? s.n : s.k, tb ? s.k : s.n,
                              tb == 1};
        ASSERT_EQ(aop.op_rows(), s.m);
        ASSERT_EQ(bop.op_cols(), s.n);
        const std::vector<float> c0 = Random(s.m * s.n, seed++);
        // Guard values after c catch a store past the end.
        std::vector<float> c = c0;
        c.resize(s.m * s.n + 16, 12345.0f);
        gemm(aop, bop, c.data(), accumulate);
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.n; ++j) {
            double ref = accumulate ? c0[i * s.n + j] : 0.0;
            double mag = std::abs(ref);
            for (int64_t p = 0; p < s.k; ++p) {
              const double t = At(aop, i, p) * At(bop, p, j);
              ref += t;
              mag += std::abs(t);
            }
            const double tol = 1.2e-7 * (s.k + 2) * mag + 1e-30;
            ASSERT_NEAR(c[i * s.n + j], ref, tol) << i << ", " << j;
          }
        }
        for (int64_t i = s.m * s.n; i < s.m * s.n + 16; ++i) {
          ASSERT_EQ(c[i], 12345.0f) << "wrote past the end";
        }
      }
    }
  }
}

// Small and odd shapes (Eigen's lazy product below ~20, its blocked GEMM
// above; panels of 8, 24, 4 with remainders), then the digits CNN's: conv1
// 16 x 9 by 9 x 4096, conv2 32 x 144 by 144 x 1024 and its transposes, the
// dense 64 x 128 layer at batch 64.
const std::vector<Shape3>& Shapes() {
  static const auto* s = new std::vector<Shape3>{
      {1, 1, 1},     {2, 3, 4},     {7, 5, 3},       {9, 17, 33},
      {25, 31, 13},  {16, 4096, 9}, {32, 1024, 144}, {144, 1024, 32},
      {64, 64, 128}, {64, 128, 64}};
  return *s;
}

TEST(GemmTest, GenericMatchesDoubleReference) {
  uint32_t seed = 1;
  for (const Shape3& s : Shapes()) {
    CheckGemm(&internal::GemmGeneric, "generic", s, seed);
    seed += 100;
  }
}

TEST(GemmTest, Avx2MatchesDoubleReference) {
  if (!internal::CpuHasAvx2Fma()) GTEST_SKIP() << "CPU without AVX2+FMA";
  uint32_t seed = 1;
  for (const Shape3& s : Shapes()) {
    CheckGemm(&internal::GemmAvx2, "avx2", s, seed);
    seed += 100;
  }
}

TEST(GemmTest, BuildsAgreeClosely) {
  if (!internal::CpuHasAvx2Fma()) GTEST_SKIP() << "CPU without AVX2+FMA";
  // conv2's weight gradient: d (32 x 1024) times cols transposed.
  const std::vector<float> d = Random(32 * 1024, 7);
  const std::vector<float> cols = Random(144 * 1024, 8);
  std::vector<float> g(32 * 144), v(32 * 144);
  const GemmOperand a{d.data(), 32, 1024};
  const GemmOperand b{cols.data(), 144, 1024, true};
  internal::GemmGeneric(a, b, g.data(), false);
  internal::GemmAvx2(a, b, v.data(), false);
  bool differ = false;
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_NEAR(v[i], g[i], 2e-5 * 32) << i;
    differ = differ || v[i] != g[i];
  }
  // Not a requirement, but it shows the two builds really are two: FMA and
  // 8-lane sums round differently somewhere among 4608 sums of 1024 terms.
  EXPECT_TRUE(differ) << "the AVX2 build computed bit for bit what the "
                         "portable one did: is it built with -mavx2 -mfma?";
}

TEST(GemmTest, DeterministicBitForBit) {
  const std::vector<float> a = Random(33 * 70, 3), b = Random(70 * 45, 4);
  std::vector<float> first(33 * 45), again(33 * 45);
  Gemm({a.data(), 33, 70}, {b.data(), 70, 45}, first.data());
  for (int rep = 0; rep < 10; ++rep) {
    Gemm({a.data(), 33, 70}, {b.data(), 70, 45}, again.data());
    ASSERT_EQ(std::memcmp(first.data(), again.data(), sizeof(float) * 33 * 45),
              0);
  }
}

TEST(GemmTest, DispatchFollowsTheDenseKernel) {
  const char* env = std::getenv("BNSERVE_DENSE_KERNEL");
  const bool forced = env != nullptr && std::string(env) == "generic";
  EXPECT_STREQ(GemmKernelName(),
               internal::CpuHasAvx2Fma() && !forced ? "avx2-fma" : "generic");
  EXPECT_STREQ(GemmKernelName(), DenseKernelName());
}

}  // namespace
}  // namespace bnserve::model
