#include "model/batch_norm.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace bnserve::model {

BatchNorm BatchNorm::Create(int features, const BatchNormConfig& config) {
  BatchNorm bn;
  bn.gamma = RowVector::Ones(features);
  bn.beta = RowVector::Zero(features);
  bn.running_mean = RowVector::Zero(features);
  bn.running_var = RowVector::Ones(features);
  bn.config = config;
  bn.stats_source = config.average == v1::AVERAGE_CUMULATIVE
                        ? v1::STATS_SOURCE_CUMULATIVE
                        : v1::STATS_SOURCE_EMA;
  return bn;
}

absl::Status BatchNormForwardTrain(const BatchNorm& bn, const Matrix& z,
                                   Matrix* out, BatchNormCache* cache) {
  const Eigen::Index m = z.rows();
  if (m < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch normalization needs at least 2 examples per training "
        "minibatch, got ",
        m, ": the variance of one example is meaningless"));
  }
  if (z.cols() != bn.features()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch norm expects ", bn.features(), " units, got ", z.cols()));
  }
  cache->mean = z.colwise().mean();
  cache->x_hat = z.rowwise() - cache->mean;
  cache->var = cache->x_hat.array().square().colwise().mean();
  cache->inv_std = (cache->var.array() + bn.config.eps).rsqrt();
  cache->x_hat.array().rowwise() *= cache->inv_std.array();
  *out = cache->x_hat;
  out->array().rowwise() *= bn.gamma.array();
  out->rowwise() += bn.beta;
  return absl::OkStatus();
}

void BatchNormBackward(const BatchNorm& bn, const BatchNormCache& cache,
                       const Matrix& dout, Matrix* dz, RowVector* dgamma,
                       RowVector* dbeta) {
  const float m = static_cast<float>(dout.rows());
  *dbeta = dout.colwise().sum();
  *dgamma = dout.cwiseProduct(cache.x_hat).colwise().sum();
  // dx_hat = dout * gamma;
  // dz = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat*x_hat))
  //    = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma).
  *dz = dout * m;
  dz->rowwise() -= *dbeta;
  dz->noalias() -= (cache.x_hat.array().rowwise() * dgamma->array()).matrix();
  const RowVector scale =
      (bn.gamma.array() * cache.inv_std.array() / m).matrix();
  dz->array().rowwise() *= scale.array();
}

void UpdateRunningStatistics(BatchNorm* bn, const BatchNormCache& cache,
                             int m) {
  ++bn->num_batches_tracked;
  const float a = bn->config.average == v1::AVERAGE_CUMULATIVE
                      ? 1.0f / static_cast<float>(bn->num_batches_tracked)
                      : bn->config.momentum;
  const float correction =
      bn->config.variance == v1::VARIANCE_BIASED
          ? 1.0f
          : static_cast<float>(m) / static_cast<float>(m - 1);
  bn->running_mean = (1.0f - a) * bn->running_mean + a * cache.mean;
  bn->running_var = (1.0f - a) * bn->running_var + (a * correction) * cache.var;
  bn->stats_source = bn->config.average == v1::AVERAGE_CUMULATIVE
                         ? v1::STATS_SOURCE_CUMULATIVE
                         : v1::STATS_SOURCE_EMA;
  bn->stats_examples = bn->num_batches_tracked;
}

void InferenceScaleShift(const BatchNorm& bn, RowVector* scale,
                         RowVector* shift) {
  *scale = (bn.gamma.array() * (bn.running_var.array() + bn.config.eps).rsqrt())
               .matrix();
  *shift = bn.beta - bn.running_mean.cwiseProduct(*scale);
}

void BatchNormForwardInference(const BatchNorm& bn, const Matrix& z,
                               Matrix* out) {
  RowVector scale, shift;
  InferenceScaleShift(bn, &scale, &shift);
  *out = z;
  out->array().rowwise() *= scale.array();
  out->rowwise() += shift;
}

}  // namespace bnserve::model
