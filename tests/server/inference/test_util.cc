#include "tests/server/inference/test_util.h"

#include <unistd.h>

#include <atomic>
#include <random>
#include <variant>

#include "absl/strings/str_cat.h"
#include "model/network.h"

namespace bnserve::inference::testing {

v1::Snapshot MakeSnapshot(const std::string& model, uint64_t seed,
                          v1::Task task, int features, int outputs) {
  v1::NetworkSpec spec;
  spec.set_input_features(features);
  spec.set_task(task);
  spec.set_output_dim(outputs);
  spec.add_hidden(8);
  spec.add_hidden(6);
  spec.set_hidden_activation(v1::ACTIVATION_RELU);
  model::Network net = *model::Network::Create(spec, seed);
  std::mt19937_64 rng(seed * 7919 + 1);
  std::uniform_real_distribution<float> mean(-1.0f, 1.0f);
  std::uniform_real_distribution<float> var(0.2f, 3.0f);
  std::uniform_real_distribution<float> gamma(0.5f, 1.5f);
  for (int i = 0; i < net.num_layers(); ++i) {
    if (auto* bn = net.mutable_layer_as<model::BatchNorm>(i)) {
      for (int j = 0; j < bn->features(); ++j) {
        bn->running_mean[j] = mean(rng);
        bn->running_var[j] = var(rng);
        bn->gamma[j] = gamma(rng);
        bn->beta[j] = mean(rng) * 0.5f;
      }
      bn->num_batches_tracked = 100;
      bn->stats_examples = 100;
    }
  }
  v1::Snapshot s = net.ToSnapshot();
  s.set_model(model);
  for (int i = 0; i < features; ++i) s.add_feature_names(absl::StrCat("f", i));
  if (task == v1::TASK_CLASSIFICATION) {
    for (int i = 0; i < outputs; ++i) s.add_class_names(absl::StrCat("c", i));
  }
  s.mutable_training()->set_job_id("test");
  s.mutable_training()->set_step(static_cast<int64_t>(seed));
  s.mutable_training()->set_origin("test");
  return s;
}

std::vector<float> ReferenceOutputs(const v1::Snapshot& snapshot,
                                    const std::vector<float>& x) {
  model::Network net = *model::Network::FromSnapshot(snapshot);
  return *net.Predict(x);
}

std::vector<float> RandomFeatures(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return absl::StrCat(prefix, "-", getpid(), "-", counter.fetch_add(1));
}

}  // namespace bnserve::inference::testing
