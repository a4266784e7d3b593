// The trainer's wire-to-model conversion (server::ToBatchView, the view a
// training stream steps on, and server::ToBatch, its copy) on any
// v1::Minibatch (features as floats or as features_f32 bytes), then
// model::Trainer::ValidateBatch and, for a batch that passes, one training
// step on the view with a tiny network. Declared shapes must be checked against
// the values actually sent before anything is allocated. The first input byte
// picks the task; the rest is the Minibatch.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "bnserve/v1/trainer.pb.h"
#include "model/network.h"
#include "model/trainer.h"
#include "server/trainer/job_manager.h"
#include "tests/fuzz/fuzz_models.h"

using bnserve::fuzz::Fail;
namespace model = bnserve::model;
namespace v1 = bnserve::v1;

namespace {

model::Trainer MakeTrainer(v1::Task task) {
  absl::StatusOr<model::Network> net =
      model::Network::FromSnapshot(bnserve::fuzz::TinySnapshot(task));
  if (!net.ok()) Fail("TinySnapshot", net.status().ToString());
  absl::StatusOr<model::Trainer> trainer =
      model::Trainer::Create(*std::move(net), model::OptimizerConfig{});
  if (!trainer.ok()) Fail("Trainer::Create", trainer.status().ToString());
  return *std::move(trainer);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const v1::Task task =
      data[0] & 1 ? v1::TASK_REGRESSION : v1::TASK_CLASSIFICATION;
  const int output_dim = task == v1::TASK_CLASSIFICATION
                             ? bnserve::fuzz::kClasses
                             : bnserve::fuzz::kOutputs;
  v1::Minibatch minibatch;
  if (!minibatch.ParseFromArray(data + 1, static_cast<int>(size - 1))) {
    return 0;
  }
  model::BatchView view;
  const absl::Status viewed =
      bnserve::server::ToBatchView(minibatch, task, output_dim, &view);
  absl::StatusOr<model::Batch> batch =
      bnserve::server::ToBatch(minibatch, task, output_dim);
  if (viewed != batch.status()) {
    Fail("ToBatchView", absl::StrCat(viewed.ToString(), " but ToBatch says ",
                                     batch.status().ToString()));
  }
  if (!batch.ok()) {
    if (!absl::IsInvalidArgument(batch.status())) {
      Fail("ToBatch", batch.status().ToString());
    }
    return 0;
  }
  if (view.rows != batch->features.rows() ||
      view.cols != batch->features.cols() ||
      std::memcmp(view.features, batch->features.data(),
                  sizeof(float) * batch->features.size()) != 0 ||
      view.labels.size() != batch->labels.size() ||
      !std::equal(view.labels.begin(), view.labels.end(),
                  batch->labels.begin())) {
    Fail("ToBatchView", "the view differs from ToBatch's copy");
  }
  if (task == v1::TASK_REGRESSION &&
      (view.target_rows != batch->targets.rows() ||
       view.target_cols != batch->targets.cols() ||
       std::memcmp(view.targets, batch->targets.data(),
                   sizeof(float) * batch->targets.size()) != 0)) {
    Fail("ToBatchView", "the view's targets differ from ToBatch's copy");
  }
  const std::string& raw = minibatch.features_f32();
  const int64_t sent = raw.empty() ? minibatch.features_size()
                                   : static_cast<int64_t>(raw.size() / 4);
  if (batch->features.rows() != minibatch.rows() ||
      batch->features.cols() != minibatch.cols() ||
      batch->features.size() != sent) {
    Fail("ToBatch", "features do not have the declared shape");
  }
  if (!raw.empty() &&
      std::memcmp(batch->features.data(), raw.data(), raw.size()) != 0) {
    Fail("ToBatch", "features_f32 was not copied as sent");
  }
  if (task == v1::TASK_REGRESSION &&
      (batch->targets.rows() != minibatch.rows() ||
       batch->targets.cols() != output_dim)) {
    Fail("ToBatch", "targets do not have rows x outputs");
  }

  // Static: building a trainer per input would dominate the run time. Each
  // Step changes it, which is fine: any valid state must accept any valid
  // batch.
  static model::Trainer classifier = MakeTrainer(v1::TASK_CLASSIFICATION);
  static model::Trainer regressor = MakeTrainer(v1::TASK_REGRESSION);
  model::Trainer& trainer =
      task == v1::TASK_CLASSIFICATION ? classifier : regressor;
  const absl::Status valid = trainer.ValidateBatch(view);
  absl::StatusOr<model::StepResult> step = trainer.Step(view);
  if (valid.ok() != step.ok()) {
    Fail("Trainer::Step",
         absl::StrCat("ValidateBatch says ", valid.ToString(), ", Step says ",
                      step.status().ToString()));
  }
  if (!valid.ok()) {
    if (!absl::IsInvalidArgument(valid))
      Fail("ValidateBatch", valid.ToString());
    return 0;
  }
  if (step->examples != minibatch.rows()) {
    Fail("Trainer::Step", "wrong example count");
  }
  // Fuzzed values can be huge: training may diverge. Start again from the
  // tiny network rather than carry NaN parameters into later inputs.
  if (!std::isfinite(step->loss)) trainer = MakeTrainer(task);
  return 0;
}
