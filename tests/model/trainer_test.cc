// Trainer: gradients (finite differences), optimizer parity with PyTorch,
// minibatch validation, and the digits accuracy bar.
#include "model/trainer.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "client/csv.h"
#include "gtest/gtest.h"
#include "model/dense_kernel.h"
#include "model/gemm.h"
#include "tests/model/test_util.h"
#include "tests/model/torch_cases.h"

namespace bnserve::model {
namespace {

#include "tests/model/torch_reference.inc"

Matrix RandomMatrix(int rows, int cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

Matrix FromVector(const std::vector<float>& v, int rows) {
  return Eigen::Map<const Matrix>(v.data(), rows,
                                  static_cast<Eigen::Index>(v.size()) / rows);
}

v1::NetworkSpec Spec(int in, int out, std::vector<int> hidden,
                     v1::Activation act, v1::Task task) {
  v1::NetworkSpec spec;
  spec.set_input_features(in);
  spec.set_output_dim(out);
  spec.set_task(task);
  for (int h : hidden) spec.add_hidden(h);
  spec.set_hidden_activation(act);
  return spec;
}

// Central finite differences (test::NumericGradient: double, a step per
// parameter, Richardson extrapolation) of the training loss (batch
// statistics) for every parameter of a network with two stacked batch-norm
// layers, for each activation and both heads. PyTorch-referenced gradients
// of the same shapes are in TorchTrainingParityTest (MlpRelu, ...).
TEST(TrainerTest, GradientsMatchFiniteDifferences) {
  for (v1::Task task : {v1::TASK_CLASSIFICATION, v1::TASK_REGRESSION}) {
    for (v1::Activation act :
         {v1::ACTIVATION_RELU, v1::ACTIVATION_TANH, v1::ACTIVATION_SIGMOID,
          v1::ACTIVATION_IDENTITY}) {
      SCOPED_TRACE(testing::Message()
                   << "task " << task << " activation " << act);
      Network net = *Network::Create(Spec(4, 3, {5, 4}, act, task), 7);
      // Non-trivial gamma/beta so their gradients are exercised.
      for (int i = 0; i < net.num_layers(); ++i) {
        if (auto* bn = net.mutable_layer_as<BatchNorm>(i)) {
          bn->gamma = RowVector::LinSpaced(bn->features(), 0.5f, 1.5f);
          bn->beta = RowVector::LinSpaced(bn->features(), -0.3f, 0.3f);
        }
      }
      Batch batch{
          RandomMatrix(6, 4, 1), {0, 1, 2, 1, 0, 2}, RandomMatrix(6, 3, 2)};
      EXPECT_EQ(test::CheckNetworkGradients(net, batch, 1e-2f, 2e-4, 1e-3),
                4 * 5 + 5 * 2 + 5 * 4 + 4 * 2 + 4 * 3 + 3);
    }
  }
}

// Loads the PyTorch network's initial weights into our network.
Network TorchNetwork(const std::vector<float>& w1, const std::vector<float>& w2,
                     const std::vector<float>& b2) {
  Network net = *Network::Create(
      Spec(4, 3, {5}, v1::ACTIVATION_RELU, v1::TASK_CLASSIFICATION), 1);
  net.mutable_layer_as<Dense>(0)->weight = FromVector(w1, 5);
  net.mutable_layer_as<Dense>(3)->weight = FromVector(w2, 3);
  net.mutable_layer_as<Dense>(3)->bias = FromVector(b2, 1);
  return net;
}

void ExpectNear(const Matrix& actual, const std::vector<float>& expected,
                const char* what) {
  ASSERT_EQ(actual.size(), static_cast<Eigen::Index>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual.data()[i], expected[i],
                2e-5f * std::max(1.0f, std::abs(expected[i])))
        << what << "[" << i << "]";
  }
}

void ExpectTorchParity(const OptimizerConfig& config,
                       const std::vector<float>& w1,
                       const std::vector<float>& w2,
                       const std::vector<float>& b2,
                       const std::vector<std::vector<float>>& xs,
                       const std::vector<std::vector<int>>& labels,
                       const std::vector<float>& losses,
                       const std::vector<std::vector<float>>& after) {
  Trainer trainer = *Trainer::Create(TorchNetwork(w1, w2, b2), config);
  for (size_t step = 0; step < xs.size(); ++step) {
    Batch batch{FromVector(xs[step], 8),
                std::vector<int32_t>(labels[step].begin(), labels[step].end()),
                {}};
    StepResult r = *trainer.Step(batch);
    EXPECT_NEAR(r.loss, losses[step], 1e-5) << "step " << step;
  }
  const Network& net = trainer.network();
  const auto& bn = *net.layer_as<BatchNorm>(1);
  ExpectNear(net.layer_as<Dense>(0)->weight, after[0], "W1");
  ExpectNear(bn.gamma, after[1], "gamma");
  ExpectNear(bn.beta, after[2], "beta");
  ExpectNear(bn.running_mean, after[3], "running_mean");
  ExpectNear(bn.running_var, after[4], "running_var");
  ExpectNear(net.layer_as<Dense>(3)->weight, after[5], "W2");
  ExpectNear(net.layer_as<Dense>(3)->bias, after[6], "b2");
  EXPECT_EQ(bn.num_batches_tracked, 3);
}

TEST(TrainerTest, SgdWithMomentumAndWeightDecayMatchesPyTorch) {
  ExpectTorchParity(
      {.kind = OptimizerConfig::Kind::kSgd,
       .learning_rate = 0.1f,
       .momentum = 0.9f,
       .weight_decay = 1e-3f},
      kSgdW1, kSgdW2, kSgdB2, {kSgdX0, kSgdX1, kSgdX2},
      {kSgdLabels0, kSgdLabels1, kSgdLabels2}, kSgdLosses,
      {kSgdW1After, kSgdGammaAfter, kSgdBetaAfter, kSgdRunMeanAfter,
       kSgdRunVarAfter, kSgdW2After, kSgdB2After});
}

TEST(TrainerTest, AdamMatchesPyTorch) {
  ExpectTorchParity(
      {.kind = OptimizerConfig::Kind::kAdam,
       .learning_rate = 0.01f,
       .weight_decay = 1e-3f},
      kAdamW1, kAdamW2, kAdamB2, {kAdamX0, kAdamX1, kAdamX2},
      {kAdamLabels0, kAdamLabels1, kAdamLabels2}, kAdamLosses,
      {kAdamW1After, kAdamGammaAfter, kAdamBetaAfter, kAdamRunMeanAfter,
       kAdamRunVarAfter, kAdamW2After, kAdamB2After});
}

TEST(TrainerTest, BadMinibatchesAreRejectedAndLeaveTheModelUnchanged) {
  Network net = *Network::Create(
      Spec(3, 2, {4}, v1::ACTIVATION_RELU, v1::TASK_CLASSIFICATION), 1);
  Trainer trainer = *Trainer::Create(net, {});
  const v1::Snapshot before = trainer.network().ToSnapshot();
  auto expect_rejected = [&](const Batch& b, const std::string& needle) {
    absl::StatusOr<StepResult> r = trainer.Step(b);
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(needle), std::string::npos)
        << r.status();
  };
  Batch b{RandomMatrix(4, 3, 1), {0, 1, 0, 1}, {}};
  Batch one = b;
  one.features = b.features.topRows(1);
  one.labels = {0};
  expect_rejected(one, "at least 2");
  Batch empty{Matrix(0, 3), {}, {}};
  expect_rejected(empty, "empty");
  Batch wide = b;
  wide.features = RandomMatrix(4, 4, 1);
  expect_rejected(wide, "4 features");
  Batch nan = b;
  nan.features(2, 1) = std::nanf("");
  expect_rejected(nan, "feature 1 of example 2");
  Batch label = b;
  label.labels[3] = 2;
  expect_rejected(label, "label 2 of example 3 is out of range");
  Batch count = b;
  count.labels.pop_back();
  expect_rejected(count, "3 labels");
  EXPECT_EQ(trainer.steps(), 0);
  EXPECT_EQ(trainer.network().ToSnapshot().SerializeAsString(),
            before.SerializeAsString());
  EXPECT_TRUE(trainer.Step(b).ok());
  EXPECT_NE(trainer.network().ToSnapshot().SerializeAsString(),
            before.SerializeAsString());
}

TEST(TrainerTest, TrainingIsDeterministicGivenTheSeed) {
  auto train = [] {
    Network net = *Network::Create(
        Spec(5, 3, {8}, v1::ACTIVATION_RELU, v1::TASK_CLASSIFICATION), 77);
    Trainer t = *Trainer::Create(
        net, {.kind = OptimizerConfig::Kind::kAdam, .learning_rate = 0.01f});
    for (int s = 0; s < 5; ++s) {
      EXPECT_TRUE(t.Step(Batch{RandomMatrix(10, 5, s),
                               {0, 1, 2, 0, 1, 2, 0, 1, 2, 0},
                               {}})
                      .ok());
    }
    return t.network().ToSnapshot().SerializeAsString();
  };
  EXPECT_EQ(train(), train());
}

struct Dataset {
  Matrix x;
  std::vector<int32_t> y;
};

Dataset LoadDigits(const std::string& path) {
  auto table = client::ReadCsvFile(path);
  EXPECT_TRUE(table.ok()) << table.status();
  auto data = *client::SplitLabel(*table, "label");
  Dataset d;
  d.x = Eigen::Map<const Matrix>(data.x.data(), data.rows, data.features);
  for (float l : data.labels) d.y.push_back(static_cast<int32_t>(l));
  return d;
}

// The bar of issue 2: hidden [128, 64], trained in-process on digits, each
// test example predicted on its own with the running statistics.
TEST(TrainerTest, DigitsReachNinetyFivePercentPredictingOneExampleAtATime) {
  Dataset train = LoadDigits("data/digits/train.csv");
  Dataset test = LoadDigits("data/digits/test.csv");
  ASSERT_EQ(train.x.rows(), 1347);
  ASSERT_EQ(test.x.rows(), 450);
  Network net = *Network::Create(
      Spec(64, 10, {128, 64}, v1::ACTIVATION_RELU, v1::TASK_CLASSIFICATION),
      2024);
  Trainer trainer = *Trainer::Create(
      net, {.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f});
  std::mt19937_64 rng(1);
  std::vector<int> order(train.x.rows());
  std::iota(order.begin(), order.end(), 0);
  const int batch_size = 64;
  for (int epoch = 0; epoch < 15; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t start = 0; start + 2 <= order.size(); start += batch_size) {
      const int m =
          static_cast<int>(std::min<size_t>(batch_size, order.size() - start));
      Batch b{Matrix(m, 64), std::vector<int32_t>(m), {}};
      for (int r = 0; r < m; ++r) {
        b.features.row(r) = train.x.row(order[start + r]);
        b.labels[r] = train.y[order[start + r]];
      }
      ASSERT_TRUE(trainer.Step(b).ok());
    }
  }
  auto accuracy = [&](const Network& n) {
    int correct = 0;
    for (Eigen::Index r = 0; r < test.x.rows(); ++r) {
      std::vector<float> out = *n.Predict(
          {test.x.row(r).data(), static_cast<size_t>(test.x.cols())});
      if (ArgMax(out) == test.y[r]) ++correct;
    }
    return static_cast<double>(correct) / test.x.rows();
  };
  const double ema = accuracy(trainer.network());
  EXPECT_GE(ema, 0.95);
  EXPECT_GE(accuracy(trainer.network().Folded()), 0.95);
  Network exact = trainer.network();
  ASSERT_TRUE(exact.Recalibrate(train.x).ok());
  EXPECT_GE(accuracy(exact), 0.95);
  RecordProperty("accuracy_ema", std::to_string(ema));
}

// One SGD-momentum training step of digits [128, 64] on its first 64
// examples (BM_TrainStep's network, batch and optimizer), every matrix
// product through `gemm`: the gradients and the loss, then every parameter
// and running statistic after the step.
std::vector<double> DigitsTrainingStep(internal::GemmFn gemm) {
  const Dataset train = LoadDigits("data/digits/train.csv");
  const internal::GemmFn before = internal::SetGemmForTesting(gemm);
  Network net = *Network::Create(
      Spec(64, 10, {128, 64}, v1::ACTIVATION_RELU, v1::TASK_CLASSIFICATION),
      42);
  Trainer trainer = *Trainer::Create(net, {.learning_rate = 0.01f});
  const Batch b{
      train.x.topRows(64), {train.y.begin(), train.y.begin() + 64}, {}};
  std::vector<LayerGradients> grads;
  EXPECT_TRUE(trainer.ComputeGradients(b, &grads).ok());
  std::vector<double> out;
  for (const LayerGradients& layer : grads) {
    for (const auto& g : layer) {
      out.insert(out.end(), g.begin(), g.end());
    }
  }
  out.push_back(trainer.Step(b)->loss);
  internal::SetGemmForTesting(before);
  Network& trained = trainer.mutable_network();
  for (int i = 0; i < trained.num_layers(); ++i) {
    for (const ParamRef& p : trained.mutable_layer(i).Parameters()) {
      out.insert(out.end(), p.data, p.data + p.size);
    }
    if (const auto* bn = trained.layer(i).As<BatchNorm>()) {
      out.insert(out.end(), bn->running_mean.begin(), bn->running_mean.end());
      out.insert(out.end(), bn->running_var.begin(), bn->running_var.end());
    }
  }
  return out;
}

// A whole training step through the AVX2+FMA GEMMs and through the portable
// ones (the rest of a step is the same code in both) agrees within 1e-6:
// absolute for values of magnitude up to 1 (gradients, weights, the loss is
// 2.7), relative above (running variances reach 5, where 1e-6 is 2 float
// ulps). Over several steps the two drift apart by more: once a ReLU input
// within rounding of 0 falls on different sides (here at step 3), the
// difference is of the order of the gradient itself.
TEST(TrainerTest, Avx2AndPortableTrainingStepsAgreeWithinOneMillionth) {
  if (!internal::CpuHasAvx2Fma()) GTEST_SKIP() << "CPU without AVX2+FMA";
  const std::vector<double> avx2 = DigitsTrainingStep(&internal::GemmAvx2);
  const std::vector<double> generic =
      DigitsTrainingStep(&internal::GemmGeneric);
  ASSERT_EQ(avx2.size(), generic.size());
  double worst = 0.0;
  int failures = 0;
  bool differ = false;
  for (size_t i = 0; i < avx2.size(); ++i) {
    const double error =
        std::abs(avx2[i] - generic[i]) / std::max(1.0, std::abs(avx2[i]));
    worst = std::max(worst, error);
    differ = differ || avx2[i] != generic[i];
    if (error > 1e-6 && ++failures <= 10) {
      ADD_FAILURE() << "value " << i << ": avx2 " << avx2[i] << ", portable "
                    << generic[i];
    }
  }
  EXPECT_EQ(failures, 0) << "of " << avx2.size() << " values";
  RecordProperty("max_difference", (testing::Message() << worst).GetString());
  // The two builds really are two (see GemmTest.BuildsAgreeClosely).
  EXPECT_TRUE(differ);
}

}  // namespace
}  // namespace bnserve::model

namespace bnserve::model {
namespace {

// Regression on the unscaled diabetes data: batch norm after the first Dense
// layer copes with raw feature scales; the RMSE on the test set must beat
// the mean predictor's by at least 25%.
TEST(TrainerTest, DiabetesRegressionBeatsTheMeanPredictorByAQuarter) {
  auto load = [](const std::string& path) {
    auto data = *client::SplitLabel(*client::ReadCsvFile(path), "label");
    Batch b;
    b.features =
        Eigen::Map<const Matrix>(data.x.data(), data.rows, data.features);
    b.targets = Eigen::Map<const Matrix>(data.labels.data(), data.rows, 1);
    return b;
  };
  Batch train = load("data/diabetes/train.csv");
  Batch test = load("data/diabetes/test.csv");
  v1::NetworkSpec spec;
  spec.set_input_features(10);
  spec.set_task(v1::TASK_REGRESSION);
  spec.set_output_dim(1);
  spec.add_hidden(16);
  Trainer trainer = *Trainer::Create(
      *Network::Create(spec, 3),
      {.kind = OptimizerConfig::Kind::kAdam, .learning_rate = 0.01f});
  std::mt19937_64 rng(2);
  std::vector<int> order(train.features.rows());
  std::iota(order.begin(), order.end(), 0);
  for (int epoch = 0; epoch < 250; ++epoch) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t start = 0; start + 2 <= order.size(); start += 32) {
      const int m =
          static_cast<int>(std::min<size_t>(32, order.size() - start));
      Batch b{Matrix(m, 10), {}, Matrix(m, 1)};
      for (int r = 0; r < m; ++r) {
        b.features.row(r) = train.features.row(order[start + r]);
        b.targets.row(r) = train.targets.row(order[start + r]);
      }
      ASSERT_TRUE(trainer.Step(b).ok());
    }
  }
  const Matrix pred = trainer.network().PredictBatch(test.features);
  const double rmse = std::sqrt((pred - test.targets).squaredNorm() /
                                static_cast<double>(test.targets.rows()));
  const double mean = train.targets.mean();
  const double baseline = std::sqrt(
      (test.targets.array() - mean).square().sum() / test.targets.rows());
  RecordProperty("rmse", std::to_string(rmse));
  RecordProperty("baseline_rmse", std::to_string(baseline));
  EXPECT_LE(rmse, 0.75 * baseline)
      << "rmse " << rmse << " baseline " << baseline;
}

}  // namespace
}  // namespace bnserve::model

// PyTorch parity of training for the reference networks of
// make_torch_reference.py (tests/model/torch_cases.h): a CNN on 2x7x7 images
// with EMA and with cumulative statistics, and input normalization over flat
// features and over images.
namespace bnserve::model {
namespace {

class TorchTrainingParityTest : public ::testing::TestWithParam<int> {
 protected:
  torch_ref::TorchCase Case() const {
    return torch_ref::TrainingCases()[GetParam()];
  }
  static void TearDownTestSuite() {
    test::PrintParityReport("training (train-mode forward, gradients, steps)");
  }
};

// Train-mode forward (batch statistics) of the first minibatch, its loss and
// every parameter's gradient, before any update.
TEST_P(TorchTrainingParityTest, TrainModeForwardLossAndGradients) {
  const torch_ref::TorchCase c = Case();
  Network net = torch_ref::LoadNetwork(c);
  const Batch batch = torch_ref::TorchBatch(c, 0);
  Matrix x = batch.features;
  for (int i = 0; i < net.num_layers(); ++i) {
    Matrix y;
    LayerCache cache;
    net.layer(i).ForwardTrain(net.shape(i), x, &y, &cache);
    ASSERT_EQ(y.cols(), net.shape(i + 1).size()) << "layers[" << i << "]";
    x = std::move(y);
  }
  test::ExpectClose(x, *c.train_logits0, 2e-5f, c.name + " train logits");

  Trainer trainer = *Trainer::Create(net, torch_ref::TorchSgd());
  std::vector<LayerGradients> grads;
  absl::StatusOr<double> loss = trainer.ComputeGradients(batch, &grads);
  ASSERT_TRUE(loss.ok()) << loss.status();
  const float loss0 =
      c.train_loss0 != nullptr ? (*c.train_loss0)[0] : (*c.losses)[0];
  EXPECT_NEAR(*loss, loss0, 1e-5 * std::max(1.0f, std::abs(loss0)));
  size_t next = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    for (size_t j = 0; j < grads[i].size(); ++j, ++next) {
      ASSERT_LT(next, c.grads.size());
      test::ExpectClose(grads[i][j].transpose(), *c.grads[next], 2e-5f,
                        c.name + " gradient of parameter " +
                            std::to_string(next) + " (" +
                            net.layer(static_cast<int>(i)).type() + ")");
    }
  }
  EXPECT_EQ(next, c.grads.size());
}

// Three SGD steps (lr 0.05, momentum 0.9): losses, every parameter and the
// running statistics (EMA with momentum 0.1, or the cumulative average of
// momentum=None; unbiased variance with n = N*H*W).
TEST_P(TorchTrainingParityTest, ThreeSgdStepsParametersAndRunningStatistics) {
  const torch_ref::TorchCase c = Case();
  Network net = torch_ref::TrainThreeSteps(c);
  std::vector<ParamRef> params = torch_ref::AllParameters(&net);
  ASSERT_EQ(params.size(), c.after.size());
  for (size_t i = 0; i < params.size(); ++i) {
    test::ExpectClose(
        params[i].data, params[i].size, *c.after[i], 5e-5f,
        c.name + " parameter " + std::to_string(i) + " after 3 steps");
  }
  std::vector<BatchNorm*> bns = torch_ref::BatchNorms(&net);
  ASSERT_EQ(bns.size(), c.run_mean.size());
  const bool cumulative =
      c.spec.layers_size() > 1 &&
      c.spec.layers(1).batch_norm().average() == v1::AVERAGE_CUMULATIVE;
  for (size_t b = 0; b < bns.size(); ++b) {
    const std::string what = c.name + " batch norm " + std::to_string(b);
    test::ExpectClose(bns[b]->running_mean, *c.run_mean[b], 2e-5f,
                      what + " running_mean");
    test::ExpectClose(bns[b]->running_var, *c.run_var[b], 2e-5f,
                      what + " running_var");
    EXPECT_EQ(bns[b]->num_batches_tracked, 3) << what;
    EXPECT_EQ(bns[b]->stats_source,
              cumulative ? v1::STATS_SOURCE_CUMULATIVE : v1::STATS_SOURCE_EMA)
        << what;
  }
}

std::string CaseName(const ::testing::TestParamInfo<int>& info) {
  const std::vector<std::string> names = {
      "Cnn",        "CnnCumulative", "InputNormFlat", "InputNormImage",
      "MlpRelu",    "MlpTanh",       "MlpSigmoid",    "MlpIdentity",
      "MlpTanhMse", "MlpSigmoidMse"};
  return names[info.param];
}

INSTANTIATE_TEST_SUITE_P(Torch, TorchTrainingParityTest,
                         ::testing::Range(0, 10), CaseName);

// The two CNN references differ only in their statistics mode, so their
// running statistics must differ after 3 steps (the test above would not
// notice if the mode were ignored and both references were equal).
TEST(TrainerTest, CumulativeAndEmaReferencesDiffer) {
  EXPECT_NE(torch_ref::kCnnCumRunVar1, torch_ref::kCnnEmaRunVar1);
  EXPECT_NE(torch_ref::kCnnCumRunMean0, torch_ref::kCnnEmaRunMean0);
}

// Central finite differences through every new layer kind at once (the
// per-kind checks are in conv2d_test, pool2d_test, flatten_test and
// batch_norm_test): input batch norm over an image, conv with stride and
// padding, batch norm over channels, max and average pooling, flatten.
TEST(TrainerTest, CnnGradientsMatchFiniteDifferences) {
  using namespace test;  // NOLINT: spec helpers
  const v1::NetworkSpec spec = ImageSpec(
      2, 6, 6, 3,
      {BatchNormSpec(), ConvSpec(3, 3, 3, 2, 1, 1, 1, false), BatchNormSpec(),
       ActivationSpec(v1::ACTIVATION_TANH), PoolSpec(false, 3, 3, 1, 1, 1, 1),
       ConvSpec(2, 2, 2, 1, 1, 0, 0, true), BatchNormSpec(),
       ActivationSpec(v1::ACTIVATION_SIGMOID), FlattenSpec(),
       DenseSpec(3, true)});
  absl::StatusOr<Network> net = Network::Create(spec, 12);
  ASSERT_TRUE(net.ok()) << net.status();
  PerturbBatchNorms(&*net, 3);
  const Batch batch = RandomBatch(4, 72, 3, 6, 2.0f, 0.5f);
  const int checked = CheckNetworkGradients(*net, batch, 1e-2f, 2e-4, 1e-3);
  // Shapes: [2, 6, 6] -> conv s2x1 -> [3, 3, 6] -> avg pool -> [3, 3, 6] ->
  // conv -> [2, 2, 5] -> flatten -> [20] -> dense -> [3].
  EXPECT_EQ(net->shape(2), Shape::Image(3, 3, 6));
  EXPECT_EQ(net->shape(6), Shape::Image(2, 2, 5));
  EXPECT_EQ(checked,
            2 * 2 + 3 * 2 * 9 + 3 * 2 + (2 * 3 * 4 + 2) + 2 * 2 + (20 * 3 + 3));
}

}  // namespace
}  // namespace bnserve::model
