// Batch normalization over a minibatch (DESIGN.md section 1).
//
// For pre-activations z (m rows x n units):
//   training:  z_out = gamma * (z - mu_B) / sqrt(var_B + eps) + beta, with the
//              biased batch variance var_B; then the running statistics are
//              updated once per step (UpdateRunningStatistics);
//   inference: z_out = gamma * (z - running_mean) / sqrt(running_var + eps) +
//              beta, row by row, so no example influences another.
// `momentum` weights the NEW value (PyTorch convention). The running variance
// stores the unbiased estimate var_B * m / (m - 1) unless the layer uses the
// biased estimator (Keras parity).
//
// All functions are pure (no hidden state); thread safety follows from the
// arguments: concurrent calls are safe when they write to distinct outputs.
#ifndef BNSERVE_MODEL_BATCH_NORM_H_
#define BNSERVE_MODEL_BATCH_NORM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "bnserve/v1/snapshot.pb.h"
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

// Parameters and running statistics of one batch-norm layer.
struct BatchNorm {
  RowVector gamma;         // learned scale, initialised to 1
  RowVector beta;          // learned shift, initialised to 0
  RowVector running_mean;  // initialised to 0
  RowVector running_var;   // initialised to 1
  BatchNormConfig config;
  int64_t num_batches_tracked = 0;
  v1::StatsSource stats_source = v1::STATS_SOURCE_EMA;
  // Examples (EXACT) or minibatches (EMA/CUMULATIVE) behind the statistics.
  int64_t stats_examples = 0;

  // A fresh layer over `features` units.
  static BatchNorm Create(int features, const BatchNormConfig& config);
  int features() const { return static_cast<int>(gamma.size()); }
};

// What the training forward pass keeps for the backward pass and the
// running-statistics update.
struct BatchNormCache {
  RowVector mean;     // mu_B
  RowVector var;      // var_B (biased)
  RowVector inv_std;  // 1 / sqrt(var_B + eps)
  Matrix x_hat;       // (z - mu_B) * inv_std
};

// Training-mode forward on the batch statistics of `z`. InvalidArgument if z
// has fewer than 2 rows (the variance of one example is meaningless) or the
// wrong width. Does not touch the running statistics.
absl::Status BatchNormForwardTrain(const BatchNorm& bn, const Matrix& z,
                                   Matrix* out, BatchNormCache* cache);

// Full batch-norm gradient through the batch statistics. `dout` is dL/dz_out;
// writes dL/dz, dL/dgamma, dL/dbeta.
void BatchNormBackward(const BatchNorm& bn, const BatchNormCache& cache,
                       const Matrix& dout, Matrix* dz, RowVector* dgamma,
                       RowVector* dbeta);

// One running-statistics update from a training step over `m` >= 2 rows:
// increments num_batches_tracked and applies the EMA (or cumulative average).
void UpdateRunningStatistics(BatchNorm* bn, const BatchNormCache& cache, int m);

// The inference transform as one affine map per unit: z_out = scale * z +
// shift, with scale = gamma / sqrt(running_var + eps) and shift = beta -
// running_mean * scale.
void InferenceScaleShift(const BatchNorm& bn, RowVector* scale,
                         RowVector* shift);

// Inference-mode forward with the running statistics (any number of rows,
// rows independent).
void BatchNormForwardInference(const BatchNorm& bn, const Matrix& z,
                               Matrix* out);

}  // namespace bnserve::model

#endif  // BNSERVE_MODEL_BATCH_NORM_H_
