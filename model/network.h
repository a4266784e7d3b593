// A feed-forward network of Dense, BatchNorm and activation layers with a
// classification (softmax + cross-entropy) or regression (MSE) head.
//
// Network holds parameters only: no activations are cached in members, so
// every const method (prediction, conversion, folding) is safe to call from
// many threads at once. Training state (optimizer moments, activation caches)
// lives in model::Trainer. A network is built from a NetworkSpec (fresh,
// deterministic from a seed) or from a validated Snapshot.
#ifndef BNSERVE_MODEL_NETWORK_H_
#define BNSERVE_MODEL_NETWORK_H_

#include <cstdint>
#include <span>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/batch_norm.h"
#include "model/tensor.h"

namespace bnserve::model {

struct Dense {
  Matrix weight;   // out x in (PyTorch Linear.weight layout)
  RowVector bias;  // out values, or empty when the layer has no bias
  int in() const { return static_cast<int>(weight.cols()); }
  int out() const { return static_cast<int>(weight.rows()); }
  bool has_bias() const { return bias.size() > 0; }
};

struct ActivationLayer {
  v1::Activation fn = v1::ACTIVATION_IDENTITY;
};

using Layer = std::variant<Dense, BatchNorm, ActivationLayer>;

// Applies `fn` element-wise in place.
void ApplyActivation(v1::Activation fn, float* data, Eigen::Index size);

// Per-thread scratch space for single-example prediction; reusing one avoids
// any heap allocation per call. Not thread-safe: one per thread.
struct Workspace {
  std::vector<float> a, b;
};

class Network {
 public:
  // A fresh network for `spec` (explicit layers or the `hidden` shorthand),
  // initialised deterministically from `seed`: He-normal weights for Dense
  // layers whose next nonlinearity is relu, Xavier-uniform otherwise; gamma
  // 1, beta 0, running mean 0, running variance 1. InvalidArgument names any
  // inconsistency in the spec.
  static absl::StatusOr<Network> Create(const v1::NetworkSpec& spec,
                                        uint64_t seed);

  // Validates and converts a snapshot: known layer kinds, consistent shapes,
  // finite parameters, positive variances and eps, momentum in (0, 1].
  // Anything else is InvalidArgument, never undefined behaviour.
  static absl::StatusOr<Network> FromSnapshot(const v1::Snapshot& snapshot);

  // Writes task, widths and layers into a fresh Snapshot. The caller fills
  // model name, names and provenance.
  v1::Snapshot ToSnapshot() const;

  v1::Task task() const { return task_; }
  int input_features() const { return input_features_; }
  int output_dim() const { return output_dim_; }
  const std::vector<Layer>& layers() const { return layers_; }
  std::vector<Layer>& mutable_layers() { return layers_; }
  // Largest width of any layer's input or output (workspace sizing).
  int max_width() const;
  // Number of stored values: Dense weights and biases, BatchNorm gamma,
  // beta and running statistics. Forward's multiply-adds for one example
  // are within a small factor of it (servers bound a request's work with it).
  int64_t parameter_count() const;

  // Inference-mode forward of one example (running statistics, no batch
  // statistics). `x` has input_features() values, `out` output_dim() values
  // (raw outputs: logits for classification). No validation and no heap
  // allocation once `ws` has grown; thread-safe with one `ws` per thread.
  void Forward(const float* x, float* out, Workspace* ws) const;

  // Validated single-example prediction: InvalidArgument on a wrong width
  // or a NaN/Inf feature. Returns the raw outputs.
  absl::StatusOr<std::vector<float>> Predict(std::span<const float> x) const;

  // Inference on many rows; each row is computed exactly as Forward would
  // compute it alone, so rows never influence each other (bit-identical).
  Matrix PredictBatch(const Matrix& x) const;

  // Returns an equivalent inference network with each BatchNorm that
  // directly follows a Dense layer folded into it:
  //   W' = s (.) W (row j scaled by s_j), b' = s (.) (b - mean) + beta,
  //   s = gamma / sqrt(running_var + eps).
  // Other BatchNorm layers are kept. For serving only (not trainable).
  Network Folded() const;

  // Exact population statistics: for each BatchNorm layer in order, passes
  // `x` (inference mode, earlier layers already recalibrated) and sets its
  // running mean and variance (unbiased, or biased if the layer uses the
  // biased estimator) to the exact values over all rows, with double
  // accumulators. InvalidArgument if fewer than 2 rows or a wrong width.
  absl::Status Recalibrate(const Matrix& x);

  // Number of BatchNorm layers.
  int num_batch_norm_layers() const;

 private:
  Network() = default;
  absl::Status ValidateAndSetShape();

  v1::Task task_ = v1::TASK_CLASSIFICATION;
  int input_features_ = 0;
  int output_dim_ = 0;
  std::vector<Layer> layers_;
};

// Softmax of `logits` (numerically stable).
std::vector<float> Softmax(std::span<const float> logits);
// Index of the largest value (first on ties).
int ArgMax(std::span<const float> values);

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_NETWORK_H_
