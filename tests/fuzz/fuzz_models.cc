#include "tests/fuzz/fuzz_models.h"

#include <variant>

#include "absl/strings/str_cat.h"
#include "model/network.h"

namespace bnserve::fuzz {

v1::Snapshot TinySnapshot(v1::Task task, const std::string& model) {
  const bool clf = task == v1::TASK_CLASSIFICATION;
  v1::NetworkSpec spec;
  spec.set_input_features(kFeatures);
  spec.set_task(task);
  spec.set_output_dim(clf ? kClasses : kOutputs);
  spec.add_hidden(6);
  spec.add_hidden(5);
  spec.set_hidden_activation(v1::ACTIVATION_RELU);
  absl::StatusOr<model::Network> net = model::Network::Create(spec, 42);
  if (!net.ok()) Fail("TinySnapshot", net.status().ToString());
  float k = 0.25f;
  for (int i = 0; i < net->num_layers(); ++i) {
    if (auto* bn = net->mutable_layer_as<model::BatchNorm>(i)) {
      for (int j = 0; j < bn->features(); ++j, k += 0.125f) {
        bn->running_mean[j] = k - 1.0f;
        bn->running_var[j] = 0.5f + k;
        bn->gamma[j] = 1.0f + 0.1f * j;
        bn->beta[j] = 0.05f * j;
      }
      bn->num_batches_tracked = 10;
      bn->stats_examples = 320;
    }
  }
  v1::Snapshot s = net->ToSnapshot();
  s.set_model(model.empty() ? (clf ? "clf" : "reg") : model);
  s.set_version(1);
  for (int i = 0; i < kFeatures; ++i) s.add_feature_names(absl::StrCat("f", i));
  if (clf) {
    for (int i = 0; i < kClasses; ++i) s.add_class_names(absl::StrCat("c", i));
  }
  s.mutable_training()->set_job_id("fuzz");
  s.mutable_training()->set_step(10);
  s.mutable_training()->set_origin("fuzz seed");
  return s;
}

}  // namespace bnserve::fuzz
