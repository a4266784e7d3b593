// Batch normalization over a minibatch, per feature of a flat input
// (PyTorch BatchNorm1d) or per channel of an image (BatchNorm2d, statistics
// over all N*H*W values of a channel).
//
// For the n values z of one channel in a minibatch (n = m rows x H*W):
//   training:  z_out = gamma * (z - mu_B) / sqrt(var_B + eps) + beta, with the
//              biased batch variance var_B; then the running statistics are
//              updated once per step (UpdateRunningStatistics);
//   inference: z_out = gamma * (z - running_mean) / sqrt(running_var + eps) +
//              beta, example by example, so no example influences another.
// `momentum` weights the NEW value (PyTorch convention). The running variance
// stores the unbiased estimate var_B * n / (n - 1) unless the layer uses the
// biased estimator (Keras parity).
//
// JSON: {"type": "batch_norm", "features": C, "gamma", "beta",
//        "running_mean", "running_var": [C], "eps", "momentum",
//        "num_batches_tracked", "average": "ema"|"cumulative",
//        "variance": "unbiased"|"biased",
//        "stats_source": "ema"|"cumulative"|"exact", "stats_examples"}
// Folding: the network folds a batch norm into the dense or conv2d layer
// before it, or else into the layer after it (input normalization).
//
// The free functions are pure; thread safety follows from the arguments.
#ifndef BNSERVE_MODEL_BATCH_NORM_H_
#define BNSERVE_MODEL_BATCH_NORM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/layer.h"
#include "model/moments.h"
#include "model/tensor.h"

namespace bnserve::model {

inline constexpr float kDefaultBnMomentum = 0.1f;
inline constexpr float kDefaultBnEps = 1e-5f;

struct BatchNormConfig {
  float momentum = kDefaultBnMomentum;  // weight of the new value, in (0, 1]
  float eps = kDefaultBnEps;            // > 0
  v1::AverageMode average = v1::AVERAGE_EMA;
  v1::VarianceEstimator variance = v1::VARIANCE_UNBIASED;
};

// What the training forward pass keeps: mean (mu_B), var (biased var_B),
// inv_std (1 / sqrt(var_B + eps)) per channel, `a` = x_hat, and `count`, the
// number of values per channel (n).
using BatchNormCache = LayerCache;

class BatchNorm final : public Layer {
 public:
  RowVector gamma;         // learned scale, initialised to 1
  RowVector beta;          // learned shift, initialised to 0
  RowVector running_mean;  // initialised to 0
  RowVector running_var;   // initialised to 1
  BatchNormConfig config;
  int64_t num_batches_tracked = 0;
  v1::StatsSource stats_source = v1::STATS_SOURCE_EMA;
  // Examples (EXACT) or minibatches (EMA/CUMULATIVE) behind the statistics.
  int64_t stats_examples = 0;

  // A fresh layer over `features` channels.
  static BatchNorm Create(int features, const BatchNormConfig& config);
  int features() const { return static_cast<int>(gamma.size()); }

  // Replaces the running statistics with exact ones (unbiased or biased as
  // configured) over `moments` (one column per channel), from `examples`
  // examples.
  void SetExactStatistics(const Moments& moments, int64_t examples);

  static absl::StatusOr<std::unique_ptr<Layer>> FromProto(
      const v1::Layer& proto, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromJson(
      const Json& json, const std::string& path);
  static absl::StatusOr<std::unique_ptr<Layer>> FromSpec(
      const v1::LayerSpec& spec, const Shape& in, const LayerInit& init);
  // Defaults applied, ranges checked.
  static absl::StatusOr<BatchNormConfig> ResolveSpec(
      const v1::BatchNormSpec& spec);

  const char* type() const override { return "batch_norm"; }
  std::unique_ptr<Layer> Clone() const override {
    return std::make_unique<BatchNorm>(*this);
  }
  absl::StatusOr<Shape> OutputShape(const Shape& in) const override;
  std::string Describe() const override;
  int64_t num_parameters() const override { return gamma.size() + beta.size(); }
  bool in_place() const override { return true; }
  int64_t CacheValues(const Shape& in) const override { return in.size(); }
  void Forward(const Shape& in, const float* x, float* y,
               float* scratch) const override;
  void ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                    LayerCache* cache) const override;
  void Backward(const Shape& in, const Matrix& x, const Matrix& y,
                const Matrix& dy, const LayerCache& cache, Matrix* dx,
                LayerGradients* grads) const override;
  std::vector<ParamRef> Parameters() override;
  void AfterStep(const LayerCache& cache) override;
  void ToProto(v1::Layer* out) const override;
  void ToSpec(v1::LayerSpec* out) const override;
  Json ToJson() const override;
};

// Training-mode forward on the batch statistics of `z` (m rows of
// features() * plane values, channel-major). InvalidArgument if z has fewer
// than 2 rows (the variance of one example is meaningless) or the wrong
// width. Does not touch the running statistics.
absl::Status BatchNormForwardTrain(const BatchNorm& bn, const Matrix& z,
                                   Matrix* out, BatchNormCache* cache,
                                   int64_t plane = 1);

// Full batch-norm gradient through the batch statistics. `dout` is dL/dz_out;
// writes dL/dz, dL/dgamma, dL/dbeta.
void BatchNormBackward(const BatchNorm& bn, const BatchNormCache& cache,
                       const Matrix& dout, Matrix* dz, RowVector* dgamma,
                       RowVector* dbeta, int64_t plane = 1);

// One running-statistics update from a training step whose batch
// statistics came from `n` >= 2 values per channel: increments
// num_batches_tracked and applies the EMA (or cumulative average).
void UpdateRunningStatistics(BatchNorm* bn, const BatchNormCache& cache,
                             int64_t n);

// The inference transform as one affine map per channel: z_out = scale * z +
// shift, with scale = gamma / sqrt(running_var + eps) and shift = beta -
// running_mean * scale.
void InferenceScaleShift(const BatchNorm& bn, RowVector* scale,
                         RowVector* shift);

// Inference-mode forward with the running statistics (any number of rows,
// rows independent).
void BatchNormForwardInference(const BatchNorm& bn, const Matrix& z,
                               Matrix* out, int64_t plane = 1);

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_BATCH_NORM_H_
