// A feed-forward network: a chain of layers (model/layer.h) from an input of
// shape [F] or [C, H, W] to `output_dim` raw outputs, with a classification
// (softmax + cross-entropy) or regression (MSE) head.
//
// Network holds parameters only: no activations are cached in members, so
// every const method (prediction, conversion, folding) is safe to call from
// many threads at once. Training state (optimizer moments, activation caches)
// lives in model::Trainer. A network is built from a NetworkSpec (fresh,
// deterministic from a seed) or from a validated Snapshot; both go through
// the one validation path, Validate().
#ifndef BNSERVE_MODEL_NETWORK_H_
#define BNSERVE_MODEL_NETWORK_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/activation.h"
#include "model/batch_norm.h"
#include "model/conv2d.h"
#include "model/dense.h"
#include "model/flatten.h"
#include "model/layer.h"
#include "model/limits.h"
#include "model/pool2d.h"
#include "model/shape.h"
#include "model/tensor.h"

namespace bnserve::model {

// Per-thread scratch space for single-example prediction; reusing one avoids
// any heap allocation per call. Not thread-safe: one per thread.
struct Workspace {
  std::vector<float> a, b, scratch;
};

// Sees every layer's input during a single-example forward pass (the drift
// monitor's tap). Called on the forwarding thread.
class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;
  // `x` holds shape.size() values: the input of layer `layer`.
  virtual void OnLayerInput(int layer, const Shape& shape, const float* x) = 0;
};

class Network {
 public:
  Network(const Network& other);
  Network& operator=(const Network& other);
  Network(Network&&) = default;
  Network& operator=(Network&&) = default;

  // A fresh network for `spec` (explicit layers or the `hidden` shorthand),
  // initialised deterministically from `seed`: He-normal weights for dense
  // and conv2d layers whose next nonlinearity is relu, Xavier-uniform
  // otherwise; gamma 1, beta 0, running mean 0, running variance 1.
  // InvalidArgument names any inconsistency in the spec, and a network of
  // more than `max_parameters` trainable parameters in all (weights, biases,
  // gamma and beta; checked before each weight matrix is allocated).
  static absl::StatusOr<Network> Create(
      const v1::NetworkSpec& spec, uint64_t seed,
      int64_t max_parameters = kMaxNetworkParameters);

  // Validates and converts a snapshot: known layer kinds, consistent shapes,
  // finite parameters, positive variances and eps, momentum in (0, 1], all
  // sizes within model/limits.h (checked before allocating), and feature or
  // class names (optional) one per input feature or class. Anything else is
  // InvalidArgument naming the layer, never undefined behaviour. Servers,
  // bnctl import and export all validate through here.
  static absl::StatusOr<Network> FromSnapshot(const v1::Snapshot& snapshot);

  // Writes task, shapes and layers into a fresh Snapshot. The caller fills
  // model name, names and provenance.
  v1::Snapshot ToSnapshot() const;

  v1::Task task() const { return task_; }
  int input_features() const { return input_features_; }
  // [F] or [C, H, W].
  const Shape& input_shape() const { return shapes_.front(); }
  int output_dim() const { return output_dim_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  const Layer& layer(int i) const { return *layers_[i]; }
  Layer& mutable_layer(int i) { return *layers_[i]; }
  // Layer i as kind T, or null.
  template <typename T>
  const T* layer_as(int i) const {
    return layers_[i]->As<T>();
  }
  template <typename T>
  T* mutable_layer_as(int i) {
    return layers_[i]->As<T>();
  }
  // Input shape of layer i; shape(num_layers()) is the output shape.
  const Shape& shape(int i) const { return shapes_[i]; }
  // Largest number of values of any layer's input or output (workspace
  // sizing, and the widest activation a training row needs).
  int64_t max_width() const;
  int64_t num_parameters() const;
  // Stored floats: the trainable parameters plus batch-norm running
  // statistics (what a job's parameter budget counts).
  int64_t stored_values() const;
  // Floats one training step holds per example: the minibatch and its copy,
  // the labels, every layer's output and cache (Layer::CacheValues) and two
  // gradient buffers as wide as the widest layer. Saturates at INT64_MAX.
  int64_t training_values_per_row() const;
  // A bound on one example's forward work: per layer the largest of its
  // stored values (running statistics included), its input and output
  // sizes and its multiply-adds (conv2d: im2col values x out channels).
  // Servers bound a request's work with it.
  int64_t parameter_count() const;
  // One line per layer, "conv2d 1->16 3x3 s1 p1 -> [16, 8, 8]".
  std::vector<std::string> Describe() const;

  // Inference-mode forward of one example (running statistics, no batch
  // statistics). `x` has input_features() values, `out` output_dim() values
  // (raw outputs: logits for classification). No validation and no heap
  // allocation once `ws` has grown; thread-safe with one `ws` per thread.
  // `observer`, when given, sees every layer's input.
  void Forward(const float* x, float* out, Workspace* ws,
               ForwardObserver* observer = nullptr) const;

  // Validated single-example prediction: InvalidArgument on a wrong width
  // or a NaN/Inf feature. Returns the raw outputs.
  absl::StatusOr<std::vector<float>> Predict(std::span<const float> x) const;

  // Inference on many rows; each row is computed exactly as Forward would
  // compute it alone, so rows never influence each other (bit-identical).
  Matrix PredictBatch(const Matrix& x) const;

  // Returns an equivalent inference network with each batch norm folded
  // into the dense or conv2d layer before it (per output channel), or when
  // there is none (input normalization) into the layer after it where that
  // is exact. Other batch norms are kept. For serving only.
  Network Folded() const;

  // Exact population statistics: for each batch-norm layer in order, passes
  // every row of `x` through the layers before it (inference mode, earlier
  // batch norms already recalibrated) one example at a time, and sets its
  // running mean and variance (unbiased, or biased if the layer uses the
  // biased estimator) to the exact per-channel values, accumulated in double
  // precision in chunks (memory independent of the number of rows).
  // InvalidArgument if fewer than 2 rows, a wrong width or NaN/Inf.
  absl::Status Recalibrate(const Matrix& x);

  // Number of batch-norm layers.
  int num_batch_norm_layers() const;

 private:
  Network() = default;
  // The one validation path: task, sizes, every layer against its input
  // shape; fills shapes_.
  absl::Status Validate();
  // Runs layers [0, end) on `x`; returns the buffer holding layer end's
  // input.
  const float* ForwardPrefix(const float* x, int end, Workspace* ws,
                             ForwardObserver* observer) const;

  v1::Task task_ = v1::TASK_CLASSIFICATION;
  int input_features_ = 0;
  int output_dim_ = 0;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> shapes_;  // num_layers() + 1 entries once validated
  int64_t scratch_size_ = 0;
};

// Softmax of `logits` (numerically stable).
std::vector<float> Softmax(std::span<const float> logits);
// Index of the largest value (first on ties).
int ArgMax(std::span<const float> values);

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_NETWORK_H_
