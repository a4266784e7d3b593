// Batch-norm maths against hand-computed numbers and PyTorch's
// nn.BatchNorm1d (reference numbers in torch_reference.inc).
#include "model/batch_norm.h"

#include <vector>

#include "gtest/gtest.h"

namespace bnserve::model {
namespace {

#include "tests/model/torch_reference.inc"

Matrix FromVector(const std::vector<float>& v, int rows) {
  return Eigen::Map<const Matrix>(v.data(), rows,
                                  static_cast<Eigen::Index>(v.size()) / rows);
}

RowVector Row(const std::vector<float>& v) {
  return Eigen::Map<const RowVector>(v.data(), v.size());
}

void ExpectNear(const Matrix& actual, const std::vector<float>& expected,
                float tol, const char* what) {
  ASSERT_EQ(actual.size(), static_cast<Eigen::Index>(expected.size())) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual.data()[i], expected[i],
                tol * std::max(1.0f, std::abs(expected[i])))
        << what << "[" << i << "]";
  }
}

TEST(BatchNormTest, ForwardTrainMatchesHandComputedValues) {
  // One unit, batch {1, 2, 3, 6}: mean 3, biased variance (4+1+0+9)/4 = 3.5.
  BatchNorm bn = BatchNorm::Create(1, {});
  bn.gamma << 2.0f;
  bn.beta << 0.5f;
  Matrix z(4, 1);
  z << 1, 2, 3, 6;
  Matrix out;
  BatchNormCache cache;
  ASSERT_TRUE(BatchNormForwardTrain(bn, z, &out, &cache).ok());
  EXPECT_FLOAT_EQ(cache.mean(0), 3.0f);
  EXPECT_FLOAT_EQ(cache.var(0), 3.5f);
  const float inv_std = 1.0f / std::sqrt(3.5f + 1e-5f);
  EXPECT_FLOAT_EQ(out(0, 0), 2.0f * (-2.0f) * inv_std + 0.5f);
  EXPECT_FLOAT_EQ(out(3, 0), 2.0f * 3.0f * inv_std + 0.5f);
}

TEST(BatchNormTest, BackwardMatchesHandComputedValues) {
  // Three examples {0, 1, 5}, gamma 1, eps 0, upstream gradient {1, 0, 0}.
  BatchNorm bn = BatchNorm::Create(1, {.momentum = 0.1f, .eps = 0.0f});
  Matrix z(3, 1);
  z << 0, 1, 5;
  Matrix out, dz;
  BatchNormCache cache;
  ASSERT_TRUE(BatchNormForwardTrain(bn, z, &out, &cache).ok());
  // mean 2, var (4 + 1 + 9) / 3 = 14/3, x_hat = {-2, -1, 3} / sqrt(14/3).
  Matrix dout(3, 1);
  dout << 1, 0, 0;
  RowVector dgamma, dbeta;
  BatchNormBackward(bn, cache, dout, &dz, &dgamma, &dbeta);
  const double s = std::sqrt(14.0 / 3.0);
  EXPECT_NEAR(dbeta(0), 1.0, 1e-6);
  EXPECT_NEAR(dgamma(0), -2.0 / s, 1e-6);
  // dz_i = 1/(3 s) * (3*dout_i - 1 - x_hat_i * (-2/s)).
  const double xh[3] = {-2 / s, -1 / s, 3 / s};
  const double d[3] = {1, 0, 0};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(dz(i, 0), 1.0 / (3 * s) * (3 * d[i] - 1 + xh[i] * 2 / s), 1e-6)
        << i;
  }
}

TEST(BatchNormTest, OneExampleMinibatchIsRejected) {
  BatchNorm bn = BatchNorm::Create(2, {});
  Matrix z(1, 2);
  z << 1, 2;
  Matrix out;
  BatchNormCache cache;
  absl::Status s = BatchNormForwardTrain(bn, z, &out, &cache);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at least 2"), std::string::npos) << s;
}

TEST(BatchNormTest, MatchesPyTorchForwardBackwardAndRunningStatistics) {
  BatchNorm ema = BatchNorm::Create(3, {});
  ema.gamma = Row(kBnGamma);
  ema.beta = Row(kBnBeta);
  BatchNorm cum = BatchNorm::Create(3, {.average = v1::AVERAGE_CUMULATIVE});
  const std::vector<const std::vector<float>*> xs = {&kBnX0, &kBnX1, &kBnX2,
                                                     &kBnX3};
  const std::vector<const std::vector<float>*> ups = {
      &kBnUpstream0, &kBnUpstream1, &kBnUpstream2, &kBnUpstream3};
  const std::vector<const std::vector<float>*> outs = {&kBnOut0, &kBnOut1,
                                                       &kBnOut2, &kBnOut3};
  const std::vector<const std::vector<float>*> gxs = {&kBnGradX0, &kBnGradX1,
                                                      &kBnGradX2, &kBnGradX3};
  const std::vector<const std::vector<float>*> ggs = {
      &kBnGradGamma0, &kBnGradGamma1, &kBnGradGamma2, &kBnGradGamma3};
  const std::vector<const std::vector<float>*> gbs = {
      &kBnGradBeta0, &kBnGradBeta1, &kBnGradBeta2, &kBnGradBeta3};
  const std::vector<const std::vector<float>*> means = {
      &kBnEmaMean0, &kBnEmaMean1, &kBnEmaMean2, &kBnEmaMean3};
  const std::vector<const std::vector<float>*> vars = {
      &kBnEmaVar0, &kBnEmaVar1, &kBnEmaVar2, &kBnEmaVar3};
  const std::vector<const std::vector<float>*> cmeans = {
      &kBnCumMean0, &kBnCumMean1, &kBnCumMean2, &kBnCumMean3};
  const std::vector<const std::vector<float>*> cvars = {
      &kBnCumVar0, &kBnCumVar1, &kBnCumVar2, &kBnCumVar3};
  for (size_t i = 0; i < xs.size(); ++i) {
    SCOPED_TRACE(i);
    const Matrix x = FromVector(*xs[i], kBnRows[i]);
    Matrix out, dz;
    BatchNormCache cache;
    ASSERT_TRUE(BatchNormForwardTrain(ema, x, &out, &cache).ok());
    ExpectNear(out, *outs[i], 1e-5f, "out");
    RowVector dgamma, dbeta;
    BatchNormBackward(ema, cache, FromVector(*ups[i], kBnRows[i]), &dz, &dgamma,
                      &dbeta);
    ExpectNear(dz, *gxs[i], 1e-4f, "grad x");
    ExpectNear(dgamma, *ggs[i], 1e-5f, "grad gamma");
    ExpectNear(dbeta, *gbs[i], 1e-5f, "grad beta");
    UpdateRunningStatistics(&ema, cache, kBnRows[i]);
    ExpectNear(ema.running_mean, *means[i], 1e-6f, "ema running_mean");
    ExpectNear(ema.running_var, *vars[i], 1e-6f, "ema running_var");

    Matrix unused;
    BatchNormCache cum_cache;
    ASSERT_TRUE(BatchNormForwardTrain(cum, x, &unused, &cum_cache).ok());
    UpdateRunningStatistics(&cum, cum_cache, kBnRows[i]);
    ExpectNear(cum.running_mean, *cmeans[i], 1e-6f, "cumulative mean");
    ExpectNear(cum.running_var, *cvars[i], 1e-6f, "cumulative var");
  }
  EXPECT_EQ(ema.num_batches_tracked, 4);
  EXPECT_EQ(cum.stats_source, v1::STATS_SOURCE_CUMULATIVE);
  Matrix eval_out;
  BatchNormForwardInference(ema, FromVector(kBnEvalX, 2), &eval_out);
  ExpectNear(eval_out, kBnEvalOut, 1e-5f, "eval out");
}

TEST(BatchNormTest, BiasedEstimatorStoresBatchVarianceAsIs) {
  // Keras parity: running_var = (1 - a) * 1 + a * var_B with var_B biased.
  BatchNorm bn = BatchNorm::Create(
      1, {.momentum = 0.01f, .variance = v1::VARIANCE_BIASED});
  Matrix z(4, 1);
  z << 1, 2, 3, 6;  // var_B = 3.5, unbiased 14/3
  Matrix out;
  BatchNormCache cache;
  ASSERT_TRUE(BatchNormForwardTrain(bn, z, &out, &cache).ok());
  UpdateRunningStatistics(&bn, cache, 4);
  EXPECT_FLOAT_EQ(bn.running_mean(0), 0.01f * 3.0f);
  EXPECT_FLOAT_EQ(bn.running_var(0), 0.99f + 0.01f * 3.5f);

  BatchNorm unbiased = BatchNorm::Create(1, {.momentum = 0.01f});
  ASSERT_TRUE(BatchNormForwardTrain(unbiased, z, &out, &cache).ok());
  UpdateRunningStatistics(&unbiased, cache, 4);
  EXPECT_FLOAT_EQ(unbiased.running_var(0), 0.99f + 0.01f * 14.0f / 3.0f);
}

TEST(BatchNormTest, InferenceUsesRunningStatisticsNotTheBatch) {
  BatchNorm bn = BatchNorm::Create(2, {});
  bn.running_mean << 1.0f, -2.0f;
  bn.running_var << 4.0f, 0.25f;
  bn.gamma << 3.0f, 1.0f;
  bn.beta << 0.0f, 1.0f;
  Matrix z(2, 2);
  z << 3, -2, 3, -1;  // identical first column: batch stats would give 0
  Matrix out;
  BatchNormForwardInference(bn, z, &out);
  EXPECT_NEAR(out(0, 0), 3.0f * 2.0f / std::sqrt(4.0f + 1e-5f), 1e-5);
  EXPECT_NEAR(out(1, 1), 1.0f / std::sqrt(0.25f + 1e-5f) + 1.0f, 1e-5);
  EXPECT_NEAR(out(0, 1), 1.0f, 1e-6);
}

}  // namespace
}  // namespace bnserve::model
