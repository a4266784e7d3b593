// Network: inference with running statistics, row independence, folding,
// exact recalibration, snapshot conversion and thread safety.
#include "model/network.h"

#include <random>
#include <thread>

#include "gtest/gtest.h"
#include "model/trainer.h"

namespace bnserve::model {
namespace {

v1::NetworkSpec SmallSpec(v1::Activation act = v1::ACTIVATION_RELU) {
  v1::NetworkSpec spec;
  spec.set_input_features(6);
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_output_dim(3);
  spec.add_hidden(8);
  spec.add_hidden(5);
  spec.set_hidden_activation(act);
  return spec;
}

Matrix RandomMatrix(int rows, int cols, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.5f, scale);
  Matrix m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = dist(rng);
  return m;
}

// A network with non-trivial running statistics, gamma and beta.
Network TrainedSmallNetwork(uint64_t seed = 3) {
  Network net = *Network::Create(SmallSpec(), seed);
  Trainer trainer = *Trainer::Create(net, {});
  std::mt19937 rng(seed);
  for (int step = 0; step < 20; ++step) {
    Batch batch;
    batch.features = RandomMatrix(16, 6, seed * 100 + step, 2.0f);
    for (int r = 0; r < 16; ++r) batch.labels.push_back(rng() % 3);
    EXPECT_TRUE(trainer.Step(batch).ok());
  }
  return trainer.network();
}

TEST(NetworkTest, ShorthandBuildsDenseBatchNormActivationLayers) {
  Network net = *Network::Create(SmallSpec(), 1);
  ASSERT_EQ(net.layers().size(), 7u);
  EXPECT_TRUE((net.layer_as<Dense>(0) != nullptr));
  EXPECT_FALSE(net.layer_as<Dense>(0)->has_bias());
  EXPECT_TRUE((net.layer_as<BatchNorm>(1) != nullptr));
  EXPECT_TRUE((net.layer_as<ActivationLayer>(2) != nullptr));
  EXPECT_TRUE(net.layer_as<Dense>(6)->has_bias());
  EXPECT_EQ(net.num_batch_norm_layers(), 2);
  const auto& bn = *net.layer_as<BatchNorm>(1);
  EXPECT_EQ(bn.running_mean, RowVector::Zero(8));
  EXPECT_EQ(bn.running_var, RowVector::Ones(8));
  EXPECT_FLOAT_EQ(bn.config.momentum, 0.1f);
  EXPECT_FLOAT_EQ(bn.config.eps, 1e-5f);
}

TEST(NetworkTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  Network a = *Network::Create(SmallSpec(), 42);
  Network b = *Network::Create(SmallSpec(), 42);
  Network c = *Network::Create(SmallSpec(), 43);
  EXPECT_EQ(a.layer_as<Dense>(0)->weight,
            b.layer_as<Dense>(0)->weight);
  EXPECT_NE(a.layer_as<Dense>(0)->weight,
            c.layer_as<Dense>(0)->weight);
}

TEST(NetworkTest, InvalidSpecsAreRejected) {
  v1::NetworkSpec spec = SmallSpec();
  spec.set_input_features(0);
  EXPECT_EQ(Network::Create(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = SmallSpec();
  spec.set_output_dim(1);
  EXPECT_EQ(Network::Create(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = SmallSpec();
  spec.mutable_batch_norm()->set_momentum(1.5f);
  EXPECT_EQ(Network::Create(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  spec = SmallSpec();
  spec.add_layers()->mutable_dense()->set_units(3);
  EXPECT_EQ(Network::Create(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);  // both layers and hidden
  spec = SmallSpec();
  spec.clear_hidden();
  spec.add_layers()->mutable_dense()->set_units(4);  // last must be 3 wide
  EXPECT_EQ(Network::Create(spec, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NetworkTest, InferenceUsesRunningStatistics) {
  Network net = *Network::Create(SmallSpec(v1::ACTIVATION_IDENTITY), 5);
  Matrix x = RandomMatrix(1, 6, 9);
  Matrix before = net.PredictBatch(x);
  // Changing only the running statistics changes the prediction exactly as
  // the inference formula says: shifting running_mean of the last BN by d
  // shifts its output by -gamma * d / sqrt(var + eps).
  auto& bn = *net.mutable_layer_as<BatchNorm>(4);
  bn.running_mean.array() += 1.0f;
  Matrix after = net.PredictBatch(x);
  EXPECT_GT((after - before).norm(), 1e-3);
  bn.running_mean.array() -= 1.0f;
  EXPECT_TRUE(net.PredictBatch(x).isApprox(before, 1e-6f));
}

TEST(NetworkTest, OneExampleAloneEqualsTheSameExampleInsideAnyBatch) {
  Network net = TrainedSmallNetwork();
  Matrix batch = RandomMatrix(33, 6, 7, 3.0f);
  Matrix together = net.PredictBatch(batch);
  for (int r = 0; r < batch.rows(); ++r) {
    std::vector<float> alone =
        *net.Predict({batch.row(r).data(), static_cast<size_t>(6)});
    for (int c = 0; c < 3; ++c) EXPECT_EQ(alone[c], together(r, c)) << r;
  }
  // A different batch around the same row changes nothing.
  Matrix other = RandomMatrix(5, 6, 8, 10.0f);
  other.row(2) = batch.row(0);
  EXPECT_EQ(net.PredictBatch(other).row(2), together.row(0));
}

TEST(NetworkTest, PredictRejectsWrongWidthAndNonFiniteFeatures) {
  Network net = *Network::Create(SmallSpec(), 1);
  std::vector<float> x(5, 0.0f);
  EXPECT_EQ(net.Predict(x).status().code(), absl::StatusCode::kInvalidArgument);
  x.assign(6, 0.0f);
  x[2] = std::nanf("");
  absl::Status s = net.Predict(x).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("feature 2"), std::string::npos) << s;
}

TEST(NetworkTest, FoldedMatchesUnfoldedToOneInHundredThousand) {
  for (v1::Activation act :
       {v1::ACTIVATION_RELU, v1::ACTIVATION_TANH, v1::ACTIVATION_SIGMOID}) {
    Network net = *Network::Create(SmallSpec(act), 11);
    Trainer trainer = *Trainer::Create(net, {});
    for (int step = 0; step < 10; ++step) {
      Batch batch{RandomMatrix(12, 6, step, 3.0f), {}, {}};
      for (int r = 0; r < 12; ++r) batch.labels.push_back(r % 3);
      ASSERT_TRUE(trainer.Step(batch).ok());
    }
    Network folded = trainer.network().Folded();
    EXPECT_EQ(folded.num_batch_norm_layers(), 0);
    EXPECT_EQ(folded.layers().size(), 5u);
    Matrix x = RandomMatrix(50, 6, 99, 3.0f);
    Matrix a = trainer.network().PredictBatch(x);
    Matrix b = folded.PredictBatch(x);
    for (Eigen::Index i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(b.data()[i], a.data()[i],
                  1e-5f * std::max(1.0f, std::abs(a.data()[i])));
    }
  }
}

TEST(NetworkTest, RecalibrationSetsExactPopulationStatistics) {
  Network net = TrainedSmallNetwork();
  Matrix x = RandomMatrix(301, 6, 17, 2.0f);
  ASSERT_TRUE(net.Recalibrate(x).ok());
  // Independent check in double: walk the layers by hand.
  Eigen::MatrixXd cur = x.cast<double>();
  for (const auto& layer : net.layers()) {
    if (const auto* d = layer->As<Dense>()) {
      cur = cur * d->weight.cast<double>().transpose();
      if (d->has_bias()) cur.rowwise() += d->bias.cast<double>();
    } else if (const auto* bn = layer->As<BatchNorm>()) {
      Eigen::RowVectorXd mean = cur.colwise().mean();
      Eigen::RowVectorXd var =
          (cur.rowwise() - mean).array().square().colwise().sum() /
          (cur.rows() - 1);
      for (int j = 0; j < bn->features(); ++j) {
        EXPECT_NEAR(bn->running_mean(j), mean(j),
                    1e-4 * (1 + std::abs(mean(j))));
        EXPECT_NEAR(bn->running_var(j), var(j), 1e-4 * (1 + var(j)));
      }
      EXPECT_EQ(bn->stats_source, v1::STATS_SOURCE_EXACT);
      EXPECT_EQ(bn->stats_examples, 301);
      for (Eigen::Index r = 0; r < cur.rows(); ++r) {
        cur.row(r) =
            ((cur.row(r) - bn->running_mean.cast<double>()).array() /
                 (bn->running_var.cast<double>().array() + bn->config.eps)
                     .sqrt() *
                 bn->gamma.cast<double>().array() +
             bn->beta.cast<double>().array())
                .matrix();
      }
    } else {
      Eigen::MatrixXd tmp = cur.cwiseMax(0.0);  // relu network
      cur = tmp;
    }
  }
  EXPECT_EQ(net.Recalibrate(x.topRows(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NetworkTest, SnapshotRoundTripIsExact) {
  Network net = TrainedSmallNetwork();
  v1::Snapshot snap = net.ToSnapshot();
  std::string bytes;
  ASSERT_TRUE(snap.SerializeToString(&bytes));
  v1::Snapshot parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  Network back = *Network::FromSnapshot(parsed);
  Matrix x = RandomMatrix(10, 6, 3);
  EXPECT_EQ(back.PredictBatch(x), net.PredictBatch(x));
  const auto& bn0 = *net.layer_as<BatchNorm>(1);
  const auto& bn1 = *back.layer_as<BatchNorm>(1);
  EXPECT_EQ(bn1.running_var, bn0.running_var);
  EXPECT_EQ(bn1.num_batches_tracked, 20);
  EXPECT_EQ(bn1.stats_source, v1::STATS_SOURCE_EMA);
}

TEST(NetworkTest, MalformedSnapshotsAreRejected) {
  const v1::Snapshot good = TrainedSmallNetwork().ToSnapshot();
  auto expect_invalid = [](const v1::Snapshot& s, const char* why) {
    absl::StatusOr<Network> net = Network::FromSnapshot(s);
    EXPECT_EQ(net.status().code(), absl::StatusCode::kInvalidArgument) << why;
  };
  v1::Snapshot s = good;
  s.mutable_layers(0)->mutable_dense()->mutable_weight()->RemoveLast();
  expect_invalid(s, "truncated weights");
  s = good;
  s.mutable_layers(1)->mutable_batch_norm()->mutable_running_var()->Set(0, -1);
  expect_invalid(s, "negative variance");
  s = good;
  s.mutable_layers(1)->mutable_batch_norm()->mutable_gamma()->Set(
      2, std::numeric_limits<float>::infinity());
  expect_invalid(s, "infinite gamma");
  s = good;
  s.mutable_layers(1)->mutable_batch_norm()->set_eps(0);
  expect_invalid(s, "zero eps");
  s = good;
  s.mutable_layers(1)->mutable_batch_norm()->set_features(7);
  expect_invalid(s, "features mismatch");
  s = good;
  s.mutable_layers(2)->mutable_activation()->set_fn(
      static_cast<v1::Activation>(77));
  expect_invalid(s, "unknown activation");
  s = good;
  s.mutable_layers(3)->Clear();
  expect_invalid(s, "layer with no kind");
  s = good;
  s.set_output_dim(4);
  expect_invalid(s, "output width mismatch");
  s = good;
  s.mutable_layers(0)->mutable_dense()->set_in(1 << 30);
  expect_invalid(s, "absurd width");
  s = good;
  s.set_task(v1::TASK_UNSPECIFIED);
  expect_invalid(s, "no task");
  s = good;
  s.clear_layers();
  expect_invalid(s, "no layers");

  // Truncated bytes either fail to parse or fail validation; never crash.
  std::string bytes;
  ASSERT_TRUE(good.SerializeToString(&bytes));
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    v1::Snapshot partial;
    if (!partial.ParseFromString(bytes.substr(0, cut))) continue;
    EXPECT_FALSE(Network::FromSnapshot(partial).ok()) << "cut at " << cut;
  }
}

TEST(NetworkTest, EightThreadsPredictingConcurrentlyGetIdenticalAnswers) {
  const Network net = TrainedSmallNetwork().Folded();
  Matrix x = RandomMatrix(200, 6, 21, 2.0f);
  const Matrix expected = net.PredictBatch(x);
  std::vector<Matrix> results(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Matrix out(x.rows(), 3);
      Workspace ws;
      for (int rep = 0; rep < 20; ++rep) {
        for (Eigen::Index r = 0; r < x.rows(); ++r) {
          net.Forward(x.row(r).data(), out.row(r).data(), &ws);
        }
      }
      results[t] = out;
    });
  }
  for (auto& th : threads) th.join();
  for (const Matrix& r : results) EXPECT_EQ(r, expected);
}

}  // namespace
}  // namespace bnserve::model
