// Minibatch training of a Network: train-mode forward on batch statistics,
// backpropagation through them, one running-statistics update per step, and
// an SGD (momentum, weight decay) or Adam update, all matching PyTorch's
// definitions.
//
// A Trainer is NOT thread-safe: one thread (or one external mutex) per
// trainer. The network it exposes through network() may be copied for
// publishing while no Step runs.
#ifndef BNSERVE_MODEL_TRAINER_H_
#define BNSERVE_MODEL_TRAINER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/batch_norm.h"
#include "model/network.h"
#include "model/tensor.h"

namespace bnserve::model {

struct OptimizerConfig {
  enum class Kind { kSgd, kAdam };
  Kind kind = Kind::kSgd;
  float learning_rate = 0.01f;  // > 0
  float momentum = 0.9f;        // SGD only, in [0, 1)
  float weight_decay = 0.0f;    // L2 added to the gradient, >= 0
  float beta1 = 0.9f;           // Adam only
  float beta2 = 0.999f;         // Adam only
  float adam_eps = 1e-8f;       // Adam only
};

// One training minibatch: `features` is m x input_features; classification
// uses `labels` (m class ids), regression uses `targets` (m x output_dim).
struct Batch {
  Matrix features;
  std::vector<int32_t> labels;
  Matrix targets;
};

// A minibatch the trainer reads without owning it: `features` points at
// rows x cols floats in row-major order; classification reads `labels`
// (one per row), regression `targets` (target_rows x target_cols floats,
// row-major). The memory must stay valid and unchanged during the call
// that receives the view. A Batch converts to a view of itself (no copy),
// so a decoded wire minibatch can be trained on where it lies.
struct BatchView {
  BatchView() = default;
  BatchView(const Batch& batch)  // NOLINT: a view of a batch, like string_view
      : features(batch.features.data()),
        rows(batch.features.rows()),
        cols(batch.features.cols()),
        labels(batch.labels),
        targets(batch.targets.data()),
        target_rows(batch.targets.rows()),
        target_cols(batch.targets.cols()) {}

  Eigen::Map<const Matrix> FeatureMatrix() const {
    return Eigen::Map<const Matrix>(features, rows, cols);
  }
  Eigen::Map<const Matrix> TargetMatrix() const {
    return Eigen::Map<const Matrix>(targets, target_rows, target_cols);
  }

  const float* features = nullptr;
  Eigen::Index rows = 0;
  Eigen::Index cols = 0;
  absl::Span<const int32_t> labels;
  const float* targets = nullptr;
  Eigen::Index target_rows = 0;
  Eigen::Index target_cols = 0;
};

struct StepResult {
  int64_t step = 0;       // steps taken so far, this one included
  double loss = 0.0;      // mean loss over the minibatch, before the update
  double accuracy = 0.0;  // classification: fraction correct; regression: 0
  int examples = 0;       // rows in the minibatch
};

// Everything of a Trainer besides its network that the next step depends
// on: with the same network (parameters and running statistics) and this
// state, the next steps are bit-for-bit those of the original trainer.
struct TrainerState {
  int64_t steps = 0;
  int64_t examples_seen = 0;
  // One buffer per parameter tensor in visiting order; empty until the
  // first step (SGD leaves every moment2 buffer empty).
  std::vector<std::vector<float>> moment1;
  std::vector<std::vector<float>> moment2;
};

class Trainer {
 public:
  // InvalidArgument for a non-positive learning rate or out-of-range
  // optimizer settings.
  static absl::StatusOr<Trainer> Create(Network network,
                                        const OptimizerConfig& config);

  // Checks a minibatch against the network: at least 2 rows, the right
  // width, finite values, labels in range or targets of the right shape.
  // The message names the problem and its position.
  absl::Status ValidateBatch(const BatchView& batch) const;

  // Validates `batch` and, only if it is valid, runs one training step
  // (forward, backward, running statistics, optimizer). On error nothing
  // changes.
  absl::StatusOr<StepResult> Step(const BatchView& batch);

  // Loss of a train-mode forward pass and its gradient with respect to every
  // parameter (per layer, per tensor in Layer::Parameters() order), without
  // changing anything (for gradient checks).
  absl::StatusOr<double> ComputeGradients(const BatchView& batch,
                                          std::vector<LayerGradients>* grads);

  const Network& network() const { return network_; }
  Network& mutable_network() { return network_; }
  const OptimizerConfig& config() const { return config_; }
  int64_t steps() const { return steps_; }
  int64_t examples_seen() const { return examples_seen_; }
  // What each layer's training forward kept in the last Step (one entry per
  // layer; empty before the first step). A batch norm's entry holds that
  // minibatch's statistics: mean, biased var and count (values per channel).
  const std::vector<LayerCache>& last_step_caches() const { return caches_; }

  // The optimizer state and counters (for checkpoints).
  TrainerState ExportState() const;
  // Restores what ExportState returned for a trainer of the same network
  // and optimizer. INVALID_ARGUMENT (nothing changed) if the buffers do not
  // fit this network's parameter tensors or the counters are negative.
  absl::Status RestoreState(TrainerState state);

 private:
  Trainer(Network network, const OptimizerConfig& config)
      : network_(std::move(network)), config_(config) {}
  // Forward + backward; fills activations_/caches_/input_grads_/grads_;
  // returns loss and writes accuracy.
  double ForwardBackward(const BatchView& batch, double* accuracy);
  // The loss of the raw outputs `y` and its gradient with respect to them.
  double Head(const BatchView& batch, const Matrix& y, Matrix* d,
              double* accuracy) const;
  void ApplyOptimizer();

  Network network_;
  OptimizerConfig config_;
  int64_t steps_ = 0;
  int64_t examples_seen_ = 0;
  // Scratch reused across steps.
  std::vector<Matrix> activations_;
  std::vector<LayerCache> caches_;
  // input_grads_[k]: the loss gradient with respect to activations_[k] (k >
  // 0; input_grads_[n] comes from the head). One buffer per layer boundary
  // keeps each at one size from step to step: a buffer shared by layers of
  // different widths would be reallocated, and fresh large blocks are fresh
  // pages to fault in (at batch 1024, 4x the step's time).
  std::vector<Matrix> input_grads_;
  std::vector<LayerGradients> grads_;
  // Optimizer state, one buffer per parameter tensor in visiting order.
  std::vector<std::vector<float>> moment1_;
  std::vector<std::vector<float>> moment2_;
};

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_TRAINER_H_
