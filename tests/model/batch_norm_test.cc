// Batch-norm maths against hand-computed numbers and PyTorch's
// nn.BatchNorm1d (reference numbers in torch_reference.inc).
#include "model/batch_norm.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "model/network.h"
#include "tests/model/test_util.h"

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

// Batch norm over the channels of an image (PyTorch BatchNorm2d) and as the
// first layer of a network (input normalization).
namespace bnserve::model {
namespace {

// Two 2x[2x2] examples: channel 0 holds 1..8 (4 values per example),
// channel 1 the constant 3.
TEST(BatchNormTest, ChannelStatisticsAreOverAllNHWValues) {
  BatchNorm bn = BatchNorm::Create(2, {.momentum = 0.5f});
  const Shape in = Shape::Image(2, 2, 2);
  Matrix z(2, 8);
  z << 1, 2, 3, 4, 3, 3, 3, 3,  //
      5, 6, 7, 8, 3, 3, 3, 3;
  Matrix out;
  LayerCache cache;
  bn.ForwardTrain(in, z, &out, &cache);
  EXPECT_EQ(cache.count, 8);
  EXPECT_FLOAT_EQ(cache.mean(0), 4.5f);
  EXPECT_FLOAT_EQ(cache.var(0), 5.25f);  // biased: 42 / 8
  EXPECT_FLOAT_EQ(cache.mean(1), 3.0f);
  EXPECT_FLOAT_EQ(cache.var(1), 0.0f);
  const float inv_std = 1.0f / std::sqrt(5.25f + 1e-5f);
  EXPECT_FLOAT_EQ(out(1, 3), (8.0f - 4.5f) * inv_std);
  EXPECT_FLOAT_EQ(out(0, 0), (1.0f - 4.5f) * inv_std);
  EXPECT_FLOAT_EQ(out(1, 7), 0.0f);
  bn.AfterStep(cache);
  // Unbiased with n = N*H*W = 8: 5.25 * 8 / 7 = 6.
  EXPECT_FLOAT_EQ(bn.running_mean(0), 0.5f * 4.5f);
  EXPECT_FLOAT_EQ(bn.running_var(0), 0.5f * 1.0f + 0.5f * 6.0f);
  EXPECT_FLOAT_EQ(bn.running_var(1), 0.5f);
  EXPECT_EQ(bn.num_batches_tracked, 1);
}

// BatchNorm2d over [C, H, W] equals BatchNorm1d over the N*H*W rows of
// per-position channel vectors, in training (values, gradients, running
// statistics) and in inference.
TEST(BatchNormTest, OverChannelsEqualsOverFeaturesOfTheTransposedValues) {
  const int m = 3, c = 3, h = 2, w = 3, plane = h * w;
  const Shape in = Shape::Image(c, h, w);
  BatchNorm bn2 = BatchNorm::Create(c, {});
  bn2.gamma << 1.5f, -0.5f, 0.8f;
  bn2.beta << 0.1f, 0.2f, -0.3f;
  BatchNorm bn1 = bn2;
  const Matrix z = test::RandomMatrix(m, c * plane, 4, 2.0f, 1.0f);
  const Matrix dout = test::RandomMatrix(m, c * plane, 5);
  auto rows = [&](const Matrix& a) {  // m x (c*plane) -> (m*plane) x c
    Matrix t(m * plane, c);
    for (int r = 0; r < m; ++r) {
      for (int ch = 0; ch < c; ++ch) {
        for (int k = 0; k < plane; ++k)
          t(r * plane + k, ch) = a(r, ch * plane + k);
      }
    }
    return t;
  };
  Matrix out2, out1;
  LayerCache cache2, cache1;
  bn2.ForwardTrain(in, z, &out2, &cache2);
  bn1.ForwardTrain(Shape::Flat(c), rows(z), &out1, &cache1);
  EXPECT_TRUE(rows(out2).isApprox(out1, 1e-5f));
  Matrix dz2, dz1;
  LayerGradients g2, g1;
  bn2.Backward(in, z, out2, dout, cache2, &dz2, &g2);
  bn1.Backward(Shape::Flat(c), rows(z), out1, rows(dout), cache1, &dz1, &g1);
  EXPECT_TRUE(rows(dz2).isApprox(dz1, 1e-4f)) << rows(dz2) << "\n\n" << dz1;
  ASSERT_EQ(g2.size(), 2u);
  EXPECT_TRUE(g2[0].isApprox(g1[0], 1e-5f));
  EXPECT_TRUE(g2[1].isApprox(g1[1], 1e-5f));
  bn2.AfterStep(cache2);
  bn1.AfterStep(cache1);
  EXPECT_TRUE(bn2.running_mean.isApprox(bn1.running_mean, 1e-6f));
  EXPECT_TRUE(bn2.running_var.isApprox(bn1.running_var, 1e-6f));
  // Inference, one example at a time.
  Matrix y2(1, c * plane), y1(plane, c);
  bn2.Forward(in, z.row(1).data(), y2.data(), nullptr);
  const Matrix zt = rows(z);
  for (int k = 0; k < plane; ++k) {
    bn1.Forward(Shape::Flat(c), zt.row(plane + k).data(), y1.row(k).data(),
                nullptr);
  }
  for (int ch = 0; ch < c; ++ch) {
    for (int k = 0; k < plane; ++k) {
      EXPECT_FLOAT_EQ(y2(0, ch * plane + k), y1(k, ch));
    }
  }
}

TEST(BatchNormTest, LayerGradientsMatchFiniteDifferencesOverChannels) {
  for (const Shape& in :
       {Shape::Image(3, 2, 3), Shape::Image(2, 1, 1), Shape::Flat(4)}) {
    SCOPED_TRACE(in.ToString());
    BatchNorm bn = BatchNorm::Create(in.channels, {});
    bn.gamma = RowVector::LinSpaced(in.channels, 0.5f, -1.5f);
    bn.beta = RowVector::LinSpaced(in.channels, -0.3f, 0.3f);
    const Matrix x =
        test::RandomMatrix(3, static_cast<int>(in.size()), 6, 1.5f, 0.5f);
    EXPECT_EQ(test::CheckLayerGradients(&bn, in, x, 1e-2f, 2e-3, 2e-2),
              x.size() + 2 * in.channels);
  }
}

TEST(BatchNormTest, NetworkGradientsMatchFiniteDifferencesAsTheFirstLayer) {
  using namespace test;  // NOLINT: spec helpers
  // Flat: input BN -> dense -> BN -> tanh -> dense (the shorthand).
  v1::NetworkSpec flat;
  flat.set_task(v1::TASK_REGRESSION);
  flat.set_input_features(4);
  flat.set_output_dim(2);
  flat.add_hidden(5);
  flat.set_input_norm(true);
  flat.set_hidden_activation(v1::ACTIVATION_TANH);
  Network net = *Network::Create(flat, 3);
  ASSERT_NE(net.layer_as<BatchNorm>(0), nullptr);
  PerturbBatchNorms(&net, 1);
  Batch batch = RandomBatch(6, 4, 2, 2, 10.0f, 5.0f);
  batch.targets = RandomMatrix(6, 2, 3);
  EXPECT_EQ(CheckNetworkGradients(net, batch, 1e-2f, 2e-3, 2e-2),
            4 * 2 + 4 * 5 + 5 * 2 + 5 * 2 + 2);
  // Image: BN2d -> conv (padded) -> BN2d -> relu -> flatten -> dense.
  Network cnn = *Network::Create(
      ImageSpec(2, 4, 4, 3,
                {BatchNormSpec(), ConvSpec(2, 3, 3, 2, 2, 1, 1, false),
                 BatchNormSpec(), ActivationSpec(v1::ACTIVATION_SIGMOID),
                 FlattenSpec(), DenseSpec(3, true)}),
      5);
  PerturbBatchNorms(&cnn, 2);
  EXPECT_EQ(CheckNetworkGradients(cnn, RandomBatch(4, 32, 3, 9, 3.0f, -2.0f),
                                  1e-2f, 2e-3, 2e-2),
            2 * 2 + 2 * 2 * 9 + 2 * 2 + 8 * 3 + 3);
}

TEST(BatchNormTest, InputNormalizationMakesTrainingInsensitiveToFeatureScale) {
  // With a batch norm first, multiplying a feature by 1000 and shifting it
  // changes neither the training loss nor the gradients of the later layers
  // (up to eps), the property that makes raw tabular data train well.
  v1::NetworkSpec spec;
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_input_features(3);
  spec.set_output_dim(2);
  spec.add_hidden(4);
  spec.set_input_norm(true);
  const Network net = *Network::Create(spec, 7);
  Batch a = test::RandomBatch(8, 3, 2, 4);
  Batch b = a;
  b.features.col(1) = (b.features.col(1).array() * 1000.0f + 250.0f).matrix();
  Trainer ta = *Trainer::Create(net, {});
  Trainer tb = *Trainer::Create(net, {});
  std::vector<LayerGradients> ga, gb;
  const double la = *ta.ComputeGradients(a, &ga);
  const double lb = *tb.ComputeGradients(b, &gb);
  EXPECT_NEAR(la, lb, 1e-4);
  for (size_t i = 2; i < ga.size(); ++i) {  // after the dense reading x
    for (size_t j = 0; j < ga[i].size(); ++j) {
      EXPECT_TRUE(ga[i][j].isApprox(gb[i][j], 1e-2f)) << i << ", " << j;
    }
  }
}

// The inference forward of a flat input (one value per channel; four
// channels at a time where SSE2 is there) gives exactly the bits of the
// per-channel formula, for every channel count, out of place and in place.
TEST(BatchNormTest, FlatForwardIsTheFormulaBitForBit) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (int c = 1; c <= 13; ++c) {
    BatchNorm bn = BatchNorm::Create(c, {.eps = 1e-3f});
    std::vector<float> x(c), want(c);
    for (int j = 0; j < c; ++j) {
      bn.gamma(j) = u(rng);
      bn.beta(j) = u(rng);
      bn.running_mean(j) = u(rng);
      bn.running_var(j) = std::abs(u(rng));
      x[j] = u(rng);
      const float scale =
          bn.gamma(j) / std::sqrt(bn.running_var(j) + bn.config.eps);
      const float shift = bn.beta(j) - bn.running_mean(j) * scale;
      want[j] = scale * x[j] + shift;
    }
    std::vector<float> y(c);
    bn.Forward(Shape::Flat(c), x.data(), y.data(), nullptr);
    EXPECT_EQ(std::memcmp(y.data(), want.data(), sizeof(float) * c), 0) << c;
    bn.Forward(Shape::Flat(c), x.data(), x.data(), nullptr);
    EXPECT_EQ(std::memcmp(x.data(), want.data(), sizeof(float) * c), 0) << c;
  }
}

}  // namespace
}  // namespace bnserve::model
