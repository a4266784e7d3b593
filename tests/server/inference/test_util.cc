#include "tests/server/inference/test_util.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

namespace {

[[noreturn]] void Unsupported(const std::string& what) {
  std::fprintf(stderr, "ReferenceOutputs: %s\n", what.c_str());
  std::abort();
}

std::vector<double> DenseForward(const v1::DenseLayer& d,
                                 const std::vector<double>& x) {
  if (static_cast<int>(x.size()) != d.in()) Unsupported("dense input size");
  std::vector<double> y(d.out());
  for (int o = 0; o < d.out(); ++o) {
    double sum = d.bias_size() > 0 ? d.bias(o) : 0.0;
    for (int i = 0; i < d.in(); ++i)
      sum += double{d.weight(o * d.in() + i)} * x[i];
    y[o] = sum;
  }
  return y;
}

void BatchNormInPlace(const v1::BatchNormLayer& bn, std::vector<double>* z) {
  if (static_cast<int>(z->size()) != bn.features()) Unsupported("bn size");
  for (int j = 0; j < bn.features(); ++j) {
    (*z)[j] = bn.gamma(j) * ((*z)[j] - bn.running_mean(j)) /
                  std::sqrt(double{bn.running_var(j)} + double{bn.eps()}) +
              bn.beta(j);
  }
}

void ActivationInPlace(v1::Activation fn, std::vector<double>* z) {
  for (double& v : *z) {
    switch (fn) {
      case v1::ACTIVATION_RELU:
        v = v > 0 ? v : 0.0;
        break;
      case v1::ACTIVATION_TANH:
        v = std::tanh(v);
        break;
      case v1::ACTIVATION_SIGMOID:
        v = 1.0 / (1.0 + std::exp(-v));
        break;
      case v1::ACTIVATION_IDENTITY:
        break;
      default:
        Unsupported("activation");
    }
  }
}

}  // namespace

std::vector<float> ReferenceOutputs(const v1::Snapshot& snapshot,
                                    const std::vector<float>& x) {
  std::vector<double> h(x.begin(), x.end());
  for (const v1::Layer& layer : snapshot.layers()) {
    if (layer.has_dense()) {
      h = DenseForward(layer.dense(), h);
    } else if (layer.has_batch_norm()) {
      BatchNormInPlace(layer.batch_norm(), &h);
    } else if (layer.has_activation()) {
      ActivationInPlace(layer.activation().fn(), &h);
    } else {
      Unsupported("layer kind (flat dense/batch_norm/activation only)");
    }
  }
  return std::vector<float>(h.begin(), h.end());
}

std::vector<float> ReferenceProbabilities(const std::vector<float>& outputs) {
  double top = outputs.at(0);
  for (float o : outputs) top = std::max(top, double{o});
  double sum = 0;
  std::vector<double> e;
  for (float o : outputs) {
    e.push_back(std::exp(double{o} - top));
    sum += e.back();
  }
  std::vector<float> p;
  for (double v : e) p.push_back(static_cast<float>(v / sum));
  return p;
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
