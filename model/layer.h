// The layer interface. Every layer kind (dense, batch_norm, activation,
// conv2d, max_pool2d, avg_pool2d, flatten) lives in one header/implementation
// pair that owns its whole behaviour: shape inference and validation,
// deterministic initialisation, the single-example inference forward, the
// minibatch training forward and backward, batch statistics, folding, its
// proto and JSON encodings and its one-line description. The network, the
// trainer, recalibration, folding, the drift monitor, the snapshot codec,
// bnctl's JSON and the trainer's job description only iterate over layers
// through this interface.
//
// Adding a layer kind: write its class (copy the smallest existing one,
// flatten.h/.cc), add its message to the `Layer` (and, if it can be created
// fresh, `LayerSpec`) oneof in proto/bnserve/v1/snapshot.proto, and add one
// line to the kind table in layer_registry.cc.
//
// Layers hold parameters only; per-step training data lives in a LayerCache
// owned by the trainer, so every const method is thread-safe.
#ifndef BNSERVE_MODEL_LAYER_H_
#define BNSERVE_MODEL_LAYER_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/json_util.h"
#include "model/limits.h"
#include "model/shape.h"
#include "model/tensor.h"

namespace bnserve::model {

// What one layer's training forward keeps for its backward pass and for the
// running-statistics update. Each kind uses the members it needs.
struct LayerCache {
  Matrix a;                      // e.g. im2col columns, normalized values
  RowVector mean, var, inv_std;  // batch statistics (batch norm)
  std::vector<int32_t> index;    // e.g. max-pool argmax positions
  int64_t count = 0;             // values per channel behind the statistics
};

// One trainable tensor: `size` contiguous floats.
struct ParamRef {
  float* data;
  int64_t size;
};

// The gradient of each of a layer's parameter tensors, in Parameters() order.
using LayerGradients = std::vector<Eigen::VectorXf>;

// What a fresh layer's initialisation needs.
struct LayerInit {
  std::mt19937_64* rng;
  // Whether the next nonlinearity after this layer is relu (He init) or
  // not (Xavier init).
  bool relu_next = false;
  // Parameters this layer may have: what is left of the network's budget
  // (Network::Create). A kind checks it with CheckParameterBudget before
  // allocating anything.
  int64_t max_parameters = kMaxLayerParameters;
};

class Layer {
 public:
  virtual ~Layer() = default;

  // The kind's name: the JSON "type" ("dense", "conv2d", ...).
  virtual const char* type() const = 0;
  virtual std::unique_ptr<Layer> Clone() const = 0;

  // Validates the layer against its input shape (consistent sizes, finite
  // parameters, ranges) and returns the output shape. InvalidArgument with a
  // message relative to the layer ("weight[3]: must be finite"); the network
  // prefixes the layer's path.
  virtual absl::StatusOr<Shape> OutputShape(const Shape& in) const = 0;

  // One line for humans and job descriptions, e.g. "conv2d 1->16 3x3 s1 p1".
  virtual std::string Describe() const = 0;

  // Number of trainable values.
  virtual int64_t num_parameters() const { return 0; }

  // --- single-example inference (the serving hot path) ---
  // Floats of scratch space Forward needs for input shape `in`.
  virtual int64_t ScratchSize(const Shape& /*in*/) const { return 0; }
  // Whether Forward may be called with y == x.
  virtual bool in_place() const { return false; }
  // y (OutputShape(in).size() values) from x (in.size() values), inference
  // mode (running statistics). No validation, no heap allocation.
  virtual void Forward(const Shape& in, const float* x, float* y,
                       float* scratch) const = 0;

  // --- minibatch training ---
  // x is m x in.size(); writes y (m x out.size()), keeping what Backward
  // needs in `cache`. Batch-norm layers normalize with batch statistics.
  virtual void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                            LayerCache* cache) const = 0;
  // From dL/dy, writes dL/dx (unless `dx` is null) and the gradient of each
  // parameter tensor into `grads` (resized as needed).
  virtual void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                        const Matrix& dy, const LayerCache& cache, Matrix* dx,
                        LayerGradients* grads) const = 0;
  // Values per example that ForwardTrain keeps in the cache beyond the
  // output (batch norm's normalized values, conv2d's im2col columns, max
  // pooling's argmax positions): the trainer's step-memory bound.
  virtual int64_t CacheValues(const Shape& /*in*/) const { return 0; }
  // The trainable tensors, in a fixed order.
  virtual std::vector<ParamRef> Parameters() { return {}; }
  // After an optimizer step: updates running statistics from the step's
  // cache (batch norm only).
  virtual void AfterStep(const LayerCache& /*cache*/) {}

  // --- folding (serving) ---
  // A layer equal to this one followed by the per-output-channel affine map
  // y -> scale * y + shift, or null if this kind cannot absorb it.
  virtual std::unique_ptr<Layer> AbsorbFollowing(
      const Shape& /*in*/, const RowVector& /*scale*/,
      const RowVector& /*shift*/) const {
    return nullptr;
  }
  // A layer equal to the per-input-channel affine map x -> scale * x + shift
  // followed by this one, or null if this kind (or configuration) cannot
  // absorb it exactly.
  virtual std::unique_ptr<Layer> AbsorbPreceding(
      const Shape& /*in*/, const RowVector& /*scale*/,
      const RowVector& /*shift*/) const {
    return nullptr;
  }

  // --- encodings ---
  virtual void ToProto(v1::Layer* out) const = 0;
  // The architecture without parameters (a job's resolved spec).
  virtual void ToSpec(v1::LayerSpec* out) const = 0;
  virtual Json ToJson() const = 0;

  template <typename T>
  const T* As() const {
    return dynamic_cast<const T*>(this);
  }
  template <typename T>
  T* As() {
    return dynamic_cast<T*>(this);
  }
};

// A layer kind: how to decode it and how to create it fresh.
struct LayerKind {
  const char* type;  // JSON "type"
  v1::Layer::KindCase proto_case;
  // kKindNotSet when the kind has no spec (cannot be created fresh).
  v1::LayerSpec::KindCase spec_case;
  // Decoders check every size before allocating; `path` prefixes errors.
  absl::StatusOr<std::unique_ptr<Layer>> (*from_proto)(const v1::Layer& proto,
                                                       const std::string& path);
  absl::StatusOr<std::unique_ptr<Layer>> (*from_json)(const Json& json,
                                                      const std::string& path);
  // A fresh layer for input shape `in`.
  absl::StatusOr<std::unique_ptr<Layer>> (*from_spec)(const v1::LayerSpec& spec,
                                                      const Shape& in,
                                                      const LayerInit& init);
};

// Every registered kind (layer_registry.cc).
const std::vector<LayerKind>& LayerKinds();
const LayerKind* FindLayerKind(v1::Layer::KindCase kind);
const LayerKind* FindLayerKind(v1::LayerSpec::KindCase kind);
const LayerKind* FindLayerKind(absl::string_view type);

// Decodes one layer (any kind). InvalidArgument names `path`.
absl::StatusOr<std::unique_ptr<Layer>> LayerFromProto(const v1::Layer& proto,
                                                      const std::string& path);
absl::StatusOr<std::unique_ptr<Layer>> LayerFromJson(const Json& json,
                                                     const std::string& path);

// Helpers shared by the layer kinds.
// InvalidArgument "<what>[i]: must be finite" for the first non-finite value.
absl::Status CheckFinite(const char* what, const float* data, int64_t size);
// InvalidArgument unless 1 <= v <= max.
absl::Status CheckRange(const std::string& what, int64_t v, int64_t min,
                        int64_t max);
// InvalidArgument naming `what` unless `parameters` <= init.max_parameters.
absl::Status CheckParameterBudget(const std::string& what, int64_t parameters,
                                  const LayerInit& init);
// Copies a repeated proto field of exactly `expected` values.
absl::Status CopyFloats(const google::protobuf::RepeatedField<float>& field,
                        int64_t expected, const std::string& what, float* out);
// The folding maths of the layers with a weight matrix `w` (one row per
// output channel, bias `b` or empty), in double precision:
//  following: y' = scale * (w x + b) + shift  ->  w' = diag(scale) w,
//             b' = scale * b + shift;
//  preceding: y' = w (scale * x + shift) + b  ->  w' = w diag(scale),
//             b' = b + w shift (scale, shift one value per column of w).
void FoldFollowingAffine(const Matrix& w, const RowVector& b,
                         const RowVector& scale, const RowVector& shift,
                         Matrix* w_out, RowVector* b_out);
void FoldPrecedingAffine(const Matrix& w, const RowVector& b,
                         const Eigen::VectorXd& scale,
                         const Eigen::VectorXd& shift, Matrix* w_out,
                         RowVector* b_out);
// He-normal (relu_next) or Xavier-uniform values.
void InitWeights(const LayerInit& init, int64_t fan_in, int64_t fan_out,
                 float* data, int64_t size);

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_LAYER_H_
