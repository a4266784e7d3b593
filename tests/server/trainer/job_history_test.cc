// JobHistory: what is recorded per step (hand-checked minibatch statistics
// of an input batch norm, the EMA relation between consecutive points), the
// downsampling bound and the publish marks.
#include "server/trainer/job_history.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "model/network.h"
#include "model/trainer.h"

namespace bnserve::server {
namespace {

// input batch norm (3 features) -> dense 2 (classification).
model::Trainer MakeTrainer(float momentum = 0.1f) {
  v1::NetworkSpec spec;
  spec.set_input_features(3);
  spec.set_task(v1::TASK_CLASSIFICATION);
  spec.set_output_dim(2);
  spec.add_layers()->mutable_batch_norm()->set_momentum(momentum);
  spec.add_layers()->mutable_dense()->set_units(2);
  auto network = model::Network::Create(spec, 1);
  EXPECT_TRUE(network.ok()) << network.status();
  return *model::Trainer::Create(*std::move(network), {});
}

model::Batch RandomBatch(int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(2.0f, 3.0f);
  model::Batch b;
  b.features.resize(rows, 3);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < 3; ++c) b.features(r, c) = dist(rng);
    b.labels.push_back(r % 2);
  }
  return b;
}

TEST(JobHistoryTest, RecordsMinibatchAndRunningStatisticsPerStep) {
  model::Trainer trainer = MakeTrainer(0.1f);
  JobHistory history(/*capacity=*/64, /*units=*/2);
  std::vector<model::Batch> batches;
  for (int s = 0; s < 5; ++s) {
    batches.push_back(RandomBatch(6, 100 + s));
    auto result = trainer.Step(batches.back());
    ASSERT_TRUE(result.ok()) << result.status();
    history.RecordStep(trainer, *result, absl::UnixEpoch() + absl::Seconds(s));
  }
  const JobHistory::View v = history.Snapshot();
  ASSERT_EQ(v.batch_norm.size(), 1u);
  EXPECT_EQ(v.batch_norm[0].layer, 0);
  EXPECT_EQ(v.batch_norm[0].features, 3);
  EXPECT_EQ(v.batch_norm[0].units, 2);
  EXPECT_NEAR(v.batch_norm[0].momentum, 0.1, 1e-7);
  ASSERT_EQ(v.points.size(), 5u);
  ASSERT_TRUE(v.latest.has_value());
  EXPECT_EQ(v.latest->step, 5);
  double running_mean = 0, running_var = 1;  // unit 1, PyTorch's initial
  for (int s = 0; s < 5; ++s) {
    const HistoryPoint& p = v.points[s];
    EXPECT_EQ(p.step, s + 1);
    EXPECT_DOUBLE_EQ(p.unix_seconds, s);
    ASSERT_EQ(p.layers.size(), 1u);
    ASSERT_EQ(p.layers[0].batch_mean.size(), 2u);
    // Unit 1's minibatch mean and unbiased variance, by hand.
    double mean = 0, sq = 0;
    for (int r = 0; r < 6; ++r) mean += batches[s].features(r, 1) / 6.0;
    for (int r = 0; r < 6; ++r) {
      sq += std::pow(batches[s].features(r, 1) - mean, 2);
    }
    const double var = sq / 5.0;
    EXPECT_NEAR(p.layers[0].batch_mean[1], mean, 1e-4);
    EXPECT_NEAR(p.layers[0].batch_var[1], var, 1e-3 * var);
    running_mean = 0.9 * running_mean + 0.1 * mean;
    running_var = 0.9 * running_var + 0.1 * var;
    EXPECT_NEAR(p.layers[0].running_mean[1], running_mean, 1e-4);
    EXPECT_NEAR(p.layers[0].running_var[1], running_var, 1e-3 * running_var);
    EXPECT_TRUE(std::isfinite(p.loss));
  }
}

TEST(JobHistoryTest, DownsamplesBeyondItsCapacity) {
  model::Trainer trainer = MakeTrainer();
  JobHistory history(/*capacity=*/8, /*units=*/1);
  for (int s = 0; s < 37; ++s) {
    auto result = trainer.Step(RandomBatch(4, s));
    ASSERT_TRUE(result.ok());
    history.RecordStep(trainer, *result, absl::Now());
    const JobHistory::View v = history.Snapshot();
    EXPECT_LT(v.points.size(), 8u) << "step " << s + 1;
  }
  const JobHistory::View v = history.Snapshot();
  // Full at 8 points (steps 1..8) -> stride 2 (2, 4, 6, 8); full again at
  // step 16 -> stride 4 (4, 8, 12, 16); again at 32 -> stride 8; then 32
  // and nothing more up to 37.
  EXPECT_EQ(v.stride, 8);
  std::vector<int64_t> steps;
  for (const HistoryPoint& p : v.points) steps.push_back(p.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{8, 16, 24, 32}));
  ASSERT_TRUE(v.latest.has_value());
  EXPECT_EQ(v.latest->step, 37);
}

TEST(JobHistoryTest, KeepsTheNewestPublishMarks) {
  JobHistory history(/*capacity=*/8, /*units=*/1, /*max_publishes=*/3);
  for (int i = 1; i <= 5; ++i) history.RecordPublish(10 * i, i, "trainer");
  const JobHistory::View v = history.Snapshot();
  ASSERT_EQ(v.publishes.size(), 3u);
  EXPECT_EQ(v.publishes[0].step, 30);
  EXPECT_EQ(v.publishes[0].version, 3);
  EXPECT_EQ(v.publishes[2].version, 5);
  EXPECT_EQ(v.publishes[2].origin, "trainer");
  EXPECT_FALSE(v.latest.has_value());
  EXPECT_TRUE(v.points.empty());
}

}  // namespace
}  // namespace bnserve::server
