#include "model/batch_norm.h"

#include <cmath>
#include <limits>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"

namespace bnserve::model {
namespace {

// The inference transform of a flat input (one value per channel) for
// channels [0, n & ~3), four at a time: the float operations of
// BatchNorm::Forward's per-channel loop in the same order (SSE's square root
// and division round exactly as the scalar ones do), so the same bits.
// Returns the number of channels done (0 without SSE2).
int ForwardFlatBlocks(const float* gamma, const float* beta, const float* mean,
                      const float* var, float eps, const float* x, float* y,
                      int n) {
  int c = 0;
#ifdef __SSE2__
  const __m128 e = _mm_set1_ps(eps);
  for (; c + 4 <= n; c += 4) {
    const __m128 scale =
        _mm_div_ps(_mm_loadu_ps(gamma + c),
                   _mm_sqrt_ps(_mm_add_ps(_mm_loadu_ps(var + c), e)));
    const __m128 shift = _mm_sub_ps(_mm_loadu_ps(beta + c),
                                    _mm_mul_ps(_mm_loadu_ps(mean + c), scale));
    _mm_storeu_ps(y + c,
                  _mm_add_ps(_mm_mul_ps(scale, _mm_loadu_ps(x + c)), shift));
  }
#endif
  return c;
}

const char* AverageName(v1::AverageMode a) {
  return a == v1::AVERAGE_CUMULATIVE ? "cumulative" : "ema";
}
const char* VarianceName(v1::VarianceEstimator v) {
  return v == v1::VARIANCE_BIASED ? "biased" : "unbiased";
}
const char* StatsSourceName(v1::StatsSource s) {
  switch (s) {
    case v1::STATS_SOURCE_CUMULATIVE:
      return "cumulative";
    case v1::STATS_SOURCE_EXACT:
      return "exact";
    default:
      return "ema";
  }
}

// Channel c's values of every row: an m x plane block of z.
template <typename M>
auto Block(M& z, int c, int64_t plane) {
  return z.middleCols(c * plane, plane);
}

void ForwardTrainSpatial(const BatchNorm& bn, const Matrix& z, Matrix* out,
                         BatchNormCache* cache, int64_t plane) {
  const int channels = bn.features();
  const double n = static_cast<double>(z.rows() * plane);
  cache->mean.resize(channels);
  cache->var.resize(channels);
  cache->a.resize(z.rows(), z.cols());
  out->resize(z.rows(), z.cols());
  for (int c = 0; c < channels; ++c) {
    const auto block = Block(z, c, plane);
    // Per row in float (vectorized), accumulated over rows in double.
    double sum = 0.0;
    for (Eigen::Index r = 0; r < z.rows(); ++r) sum += block.row(r).sum();
    const double mean = sum / n;
    const float mean_f = static_cast<float>(mean);
    double squares = 0.0;
    for (Eigen::Index r = 0; r < z.rows(); ++r) {
      squares += (block.row(r).array() - mean_f).square().sum();
    }
    const double var = squares / n;
    cache->mean(c) = static_cast<float>(mean);
    cache->var(c) = static_cast<float>(var);
    const float inv_std = 1.0f / std::sqrt(cache->var(c) + bn.config.eps);
    // x_hat and the output in one pass over the channel's values.
    const float g = bn.gamma(c), b = bn.beta(c);
    for (Eigen::Index r = 0; r < z.rows(); ++r) {
      const float* zr = z.row(r).data() + c * plane;
      float* xr = cache->a.row(r).data() + c * plane;
      float* yr = out->row(r).data() + c * plane;
      for (int64_t i = 0; i < plane; ++i) {
        const float h = (zr[i] - mean_f) * inv_std;
        xr[i] = h;
        yr[i] = h * g + b;
      }
    }
  }
  cache->inv_std = (cache->var.array() + bn.config.eps).rsqrt();
}

// The flat (one value per feature) training paths below walk the m x n
// row-major matrices row after row in plain loops over the features, which
// the compiler vectorizes: each feature's sum accumulates in row order, and
// a pass does everything it can (3 passes forward, 2 backward, instead of
// one per Eigen expression).

// Forward on the batch statistics: mean, then the centred values and their
// squares, then x_hat = centred * inv_std and the output gamma x_hat + beta.
void ForwardTrainFlat(const BatchNorm& bn, const Matrix& z, Matrix* out,
                      BatchNormCache* cache) {
  const Eigen::Index m = z.rows(), n = z.cols();
  cache->mean.setZero(n);
  cache->var.setZero(n);
  cache->a.resize(m, n);
  out->resize(m, n);
  float* __restrict mean = cache->mean.data();
  float* __restrict var = cache->var.data();
  for (Eigen::Index r = 0; r < m; ++r) {
    const float* __restrict zr = z.data() + r * n;
    for (Eigen::Index c = 0; c < n; ++c) mean[c] += zr[c];
  }
  cache->mean /= static_cast<float>(m);
  for (Eigen::Index r = 0; r < m; ++r) {
    const float* __restrict zr = z.data() + r * n;
    float* __restrict ar = cache->a.data() + r * n;
    for (Eigen::Index c = 0; c < n; ++c) {
      const float d = zr[c] - mean[c];
      ar[c] = d;
      var[c] += d * d;
    }
  }
  cache->var /= static_cast<float>(m);
  cache->inv_std = (cache->var.array() + bn.config.eps).rsqrt();
  const float* __restrict inv_std = cache->inv_std.data();
  const float* __restrict gamma = bn.gamma.data();
  const float* __restrict beta = bn.beta.data();
  for (Eigen::Index r = 0; r < m; ++r) {
    float* __restrict ar = cache->a.data() + r * n;
    float* __restrict yr = out->data() + r * n;
    for (Eigen::Index c = 0; c < n; ++c) {
      const float h = ar[c] * inv_std[c];
      ar[c] = h;
      yr[c] = h * gamma[c] + beta[c];
    }
  }
}

// dx_hat = dout * gamma;
// dz = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat*x_hat))
//    = gamma * inv_std / m * (m * dout - dbeta - x_hat * dgamma).
void BackwardFlat(const BatchNorm& bn, const BatchNormCache& cache,
                  const Matrix& dout, Matrix* dz, RowVector* dgamma,
                  RowVector* dbeta) {
  const Eigen::Index m = dout.rows(), n = dout.cols();
  const float mf = static_cast<float>(m);
  dbeta->setZero(n);
  dgamma->setZero(n);
  float* __restrict db = dbeta->data();
  float* __restrict dg = dgamma->data();
  for (Eigen::Index r = 0; r < m; ++r) {
    const float* __restrict dr = dout.data() + r * n;
    const float* __restrict xr = cache.a.data() + r * n;
    for (Eigen::Index c = 0; c < n; ++c) {
      db[c] += dr[c];
      dg[c] += dr[c] * xr[c];
    }
  }
  const RowVector scale =
      (bn.gamma.array() * cache.inv_std.array() / mf).matrix();
  const float* __restrict sc = scale.data();
  dz->resize(m, n);
  for (Eigen::Index r = 0; r < m; ++r) {
    const float* __restrict dr = dout.data() + r * n;
    const float* __restrict xr = cache.a.data() + r * n;
    float* __restrict zr = dz->data() + r * n;
    for (Eigen::Index c = 0; c < n; ++c) {
      zr[c] = ((dr[c] * mf - db[c]) - xr[c] * dg[c]) * sc[c];
    }
  }
}

}  // namespace

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

void BatchNorm::SetExactStatistics(const Moments& moments, int64_t examples) {
  running_mean = moments.mean().cast<float>();
  running_var =
      (config.variance == v1::VARIANCE_BIASED ? moments.BiasedVariance()
                                              : moments.UnbiasedVariance())
          .cast<float>();
  stats_source = v1::STATS_SOURCE_EXACT;
  stats_examples = examples;
}

absl::Status BatchNormForwardTrain(const BatchNorm& bn, const Matrix& z,
                                   Matrix* out, BatchNormCache* cache,
                                   int64_t plane) {
  const Eigen::Index m = z.rows();
  if (m < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch normalization needs at least 2 examples per training "
        "minibatch, got ",
        m, ": the variance of one example is meaningless"));
  }
  if (z.cols() != bn.features() * plane) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch norm expects ", bn.features() * plane,
                     " values per example, got ", z.cols()));
  }
  cache->count = m * plane;
  if (plane > 1) {
    ForwardTrainSpatial(bn, z, out, cache, plane);
    return absl::OkStatus();
  }
  ForwardTrainFlat(bn, z, out, cache);
  return absl::OkStatus();
}

void BatchNormBackward(const BatchNorm& bn, const BatchNormCache& cache,
                       const Matrix& dout, Matrix* dz, RowVector* dgamma,
                       RowVector* dbeta, int64_t plane) {
  const Matrix& x_hat = cache.a;
  if (plane == 1) {
    BackwardFlat(bn, cache, dout, dz, dgamma, dbeta);
    return;
  }
  const int channels = bn.features();
  const float n = static_cast<float>(dout.rows() * plane);
  dbeta->resize(channels);
  dgamma->resize(channels);
  dz->resize(dout.rows(), dout.cols());
  for (int c = 0; c < channels; ++c) {
    const auto d = Block(dout, c, plane);
    const auto xh = Block(x_hat, c, plane);
    const float db = d.sum();
    const float dg = d.cwiseProduct(xh).sum();
    (*dbeta)(c) = db;
    (*dgamma)(c) = dg;
    const float scale = bn.gamma(c) * cache.inv_std(c) / n;
    dz->middleCols(c * plane, plane) =
        ((d.array() * n - db - xh.array() * dg) * scale).matrix();
  }
}

void UpdateRunningStatistics(BatchNorm* bn, const BatchNormCache& cache,
                             int64_t n) {
  ++bn->num_batches_tracked;
  const float a = bn->config.average == v1::AVERAGE_CUMULATIVE
                      ? 1.0f / static_cast<float>(bn->num_batches_tracked)
                      : bn->config.momentum;
  const float correction =
      bn->config.variance == v1::VARIANCE_BIASED
          ? 1.0f
          : static_cast<float>(n) / static_cast<float>(n - 1);
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
                               Matrix* out, int64_t plane) {
  RowVector scale, shift;
  InferenceScaleShift(bn, &scale, &shift);
  *out = z;
  if (plane == 1) {
    out->array().rowwise() *= scale.array();
    out->rowwise() += shift;
    return;
  }
  for (int c = 0; c < bn.features(); ++c) {
    auto block = out->middleCols(c * plane, plane);
    block = (block.array() * scale(c) + shift(c)).matrix();
  }
}

// --- the Layer interface ---

absl::StatusOr<Shape> BatchNorm::OutputShape(const Shape& in) const {
  if (features() != in.channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch norm over ", features(),
                     in.spatial ? " channels follows a layer of "
                                : " features follows a "
                                  "layer of width ",
                     in.channels, in.spatial ? " channels" : ""));
  }
  const int64_t c = features();
  if (beta.size() != c || running_mean.size() != c || running_var.size() != c) {
    return absl::InvalidArgumentError("parameters of different sizes");
  }
  BNSERVE_RETURN_IF_ERROR(CheckFinite("gamma", gamma.data(), c));
  BNSERVE_RETURN_IF_ERROR(CheckFinite("beta", beta.data(), c));
  BNSERVE_RETURN_IF_ERROR(CheckFinite("running_mean", running_mean.data(), c));
  BNSERVE_RETURN_IF_ERROR(CheckFinite("running_var", running_var.data(), c));
  for (int64_t j = 0; j < c; ++j) {
    if (running_var(j) < 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("running_var[", j, "]: must be >= 0"));
    }
  }
  if (!(config.eps > 0.0f) || !std::isfinite(config.eps)) {
    return absl::InvalidArgumentError("eps: must be a positive number");
  }
  if (!(config.momentum > 0.0f && config.momentum <= 1.0f)) {
    return absl::InvalidArgumentError(
        "momentum: must be in (0, 1] (weight of the new value)");
  }
  if (num_batches_tracked < 0) {
    return absl::InvalidArgumentError("num_batches_tracked: must be >= 0");
  }
  if (stats_examples < 0) {
    return absl::InvalidArgumentError("stats_examples: must be >= 0");
  }
  return in;
}

std::string BatchNorm::Describe() const {
  return absl::StrCat("batch_norm ", features(), " (momentum ", config.momentum,
                      ", eps ", config.eps, ", ", AverageName(config.average),
                      ", ", VarianceName(config.variance), ", stats ",
                      StatsSourceName(stats_source), ")");
}

void BatchNorm::Forward(const Shape& in, const float* x, float* y,
                        float*) const {
  const int64_t plane = in.plane();
  int c = plane == 1 ? ForwardFlatBlocks(
                           gamma.data(), beta.data(), running_mean.data(),
                           running_var.data(), config.eps, x, y, features())
                     : 0;
  for (; c < features(); ++c) {
    const float scale = gamma(c) / std::sqrt(running_var(c) + config.eps);
    const float shift = beta(c) - running_mean(c) * scale;
    const float* xc = x + c * plane;
    float* yc = y + c * plane;
    for (int64_t k = 0; k < plane; ++k) yc[k] = scale * xc[k] + shift;
  }
}

void BatchNorm::ForwardTrain(const Shape& in, const Matrix& x, Matrix* y,
                             LayerCache* cache) const {
  // Cannot fail: the trainer checked the row count and the network the
  // widths.
  BatchNormForwardTrain(*this, x, y, cache, in.plane()).IgnoreError();
}

void BatchNorm::Backward(const Shape& in, const Matrix&, const Matrix&,
                         const Matrix& dy, const LayerCache& cache, Matrix* dx,
                         LayerGradients* grads) const {
  // Straight into dx, which the trainer keeps at one size from step to
  // step (no allocation); a scratch matrix only when nobody wants dx.
  Matrix scratch;
  RowVector dgamma, dbeta;
  BatchNormBackward(*this, cache, dy, dx != nullptr ? dx : &scratch, &dgamma,
                    &dbeta, in.plane());
  grads->resize(2);
  (*grads)[0] = dgamma.transpose();
  (*grads)[1] = dbeta.transpose();
}

std::vector<ParamRef> BatchNorm::Parameters() {
  return {{gamma.data(), gamma.size()}, {beta.data(), beta.size()}};
}

void BatchNorm::AfterStep(const LayerCache& cache) {
  UpdateRunningStatistics(this, cache, cache.count);
}

absl::StatusOr<BatchNormConfig> BatchNorm::ResolveSpec(
    const v1::BatchNormSpec& spec) {
  BatchNormConfig config;
  if (spec.momentum() != 0.0f) config.momentum = spec.momentum();
  if (spec.eps() != 0.0f) config.eps = spec.eps();
  if (!(config.momentum > 0.0f && config.momentum <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch-norm momentum must be in (0, 1] (weight of the new value, "
        "PyTorch convention; Keras momentum 0.99 is 0.01 here), got ",
        spec.momentum()));
  }
  if (!(config.eps > 0.0f) || !std::isfinite(config.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch-norm eps must be positive, got ", spec.eps()));
  }
  if (spec.average() != v1::AVERAGE_MODE_UNSPECIFIED) {
    if (!v1::AverageMode_IsValid(spec.average())) {
      return absl::InvalidArgumentError("unknown batch-norm average mode");
    }
    config.average = spec.average();
  }
  if (spec.variance() != v1::VARIANCE_ESTIMATOR_UNSPECIFIED) {
    if (!v1::VarianceEstimator_IsValid(spec.variance())) {
      return absl::InvalidArgumentError(
          "unknown batch-norm variance estimator");
    }
    config.variance = spec.variance();
  }
  return config;
}

absl::StatusOr<std::unique_ptr<Layer>> BatchNorm::FromSpec(
    const v1::LayerSpec& spec, const Shape& in, const LayerInit&) {
  BNSERVE_ASSIGN_OR_RETURN(BatchNormConfig config,
                           ResolveSpec(spec.batch_norm()));
  return std::make_unique<BatchNorm>(Create(in.channels, config));
}

absl::StatusOr<std::unique_ptr<Layer>> BatchNorm::FromProto(
    const v1::Layer& proto, const std::string& path) {
  const v1::BatchNormLayer& pb = proto.batch_norm();
  const int64_t c = pb.features();
  BNSERVE_RETURN_IF_ERROR(CheckRange(path + ".features", c, 1, kMaxWidth));
  auto bn = std::make_unique<BatchNorm>();
  bn->gamma.resize(c);
  bn->beta.resize(c);
  bn->running_mean.resize(c);
  bn->running_var.resize(c);
  BNSERVE_RETURN_IF_ERROR(
      CopyFloats(pb.gamma(), c, path + ".gamma", bn->gamma.data()));
  BNSERVE_RETURN_IF_ERROR(
      CopyFloats(pb.beta(), c, path + ".beta", bn->beta.data()));
  BNSERVE_RETURN_IF_ERROR(CopyFloats(
      pb.running_mean(), c, path + ".running_mean", bn->running_mean.data()));
  BNSERVE_RETURN_IF_ERROR(CopyFloats(pb.running_var(), c, path + ".running_var",
                                     bn->running_var.data()));
  bn->config.momentum = pb.momentum();
  bn->config.eps = pb.eps();
  bn->config.average = pb.average() == v1::AVERAGE_MODE_UNSPECIFIED
                           ? v1::AVERAGE_EMA
                           : pb.average();
  bn->config.variance = pb.variance() == v1::VARIANCE_ESTIMATOR_UNSPECIFIED
                            ? v1::VARIANCE_UNBIASED
                            : pb.variance();
  if (!v1::AverageMode_IsValid(bn->config.average) ||
      !v1::VarianceEstimator_IsValid(bn->config.variance) ||
      !v1::StatsSource_IsValid(pb.stats_source())) {
    return json::Invalid(path,
                         "unknown batch-norm average mode, variance "
                         "estimator or statistics source");
  }
  bn->num_batches_tracked = pb.num_batches_tracked();
  bn->stats_source = pb.stats_source();
  bn->stats_examples = pb.stats_examples();
  return bn;
}

absl::StatusOr<std::unique_ptr<Layer>> BatchNorm::FromJson(
    const Json& j, const std::string& p) {
  BNSERVE_RETURN_IF_ERROR(json::CheckObject(
      j, p,
      {"type", "features", "gamma", "beta", "running_mean", "running_var",
       "eps", "momentum", "num_batches_tracked", "average", "variance",
       "stats_source", "stats_examples"}));
  BNSERVE_ASSIGN_OR_RETURN(int64_t n,
                           json::IntMember(j, p, "features", 1, kMaxWidth, {}));
  auto bn = std::make_unique<BatchNorm>();
  struct Field {
    const char* key;
    RowVector* out;
  };
  for (const Field& f : {Field{"gamma", &bn->gamma}, Field{"beta", &bn->beta},
                         Field{"running_mean", &bn->running_mean},
                         Field{"running_var", &bn->running_var}}) {
    BNSERVE_ASSIGN_OR_RETURN(const Json* v, json::Require(j, p, f.key));
    std::vector<float> values;
    BNSERVE_RETURN_IF_ERROR(
        json::ReadFloats(*v, json::Join(p, f.key), n, &values));
    *f.out = Eigen::Map<const RowVector>(values.data(), n);
  }
  BNSERVE_ASSIGN_OR_RETURN(bn->config.eps,
                           json::FloatMember(j, p, "eps", kDefaultBnEps));
  BNSERVE_ASSIGN_OR_RETURN(
      bn->config.momentum,
      json::FloatMember(j, p, "momentum", kDefaultBnMomentum));
  constexpr int64_t kMaxCount = std::numeric_limits<int64_t>::max();
  BNSERVE_ASSIGN_OR_RETURN(
      bn->num_batches_tracked,
      json::IntMember(j, p, "num_batches_tracked", 0, kMaxCount, 0));
  BNSERVE_ASSIGN_OR_RETURN(
      bn->config.average,
      json::EnumMember<v1::AverageMode>(
          j, p, "average",
          {{"ema", v1::AVERAGE_EMA}, {"cumulative", v1::AVERAGE_CUMULATIVE}},
          v1::AVERAGE_EMA));
  BNSERVE_ASSIGN_OR_RETURN(bn->config.variance,
                           json::EnumMember<v1::VarianceEstimator>(
                               j, p, "variance",
                               {{"unbiased", v1::VARIANCE_UNBIASED},
                                {"biased", v1::VARIANCE_BIASED}},
                               v1::VARIANCE_UNBIASED));
  BNSERVE_ASSIGN_OR_RETURN(bn->stats_source,
                           json::EnumMember<v1::StatsSource>(
                               j, p, "stats_source",
                               {{"ema", v1::STATS_SOURCE_EMA},
                                {"cumulative", v1::STATS_SOURCE_CUMULATIVE},
                                {"exact", v1::STATS_SOURCE_EXACT}},
                               bn->config.average == v1::AVERAGE_CUMULATIVE
                                   ? v1::STATS_SOURCE_CUMULATIVE
                                   : v1::STATS_SOURCE_EMA));
  BNSERVE_ASSIGN_OR_RETURN(bn->stats_examples,
                           json::IntMember(j, p, "stats_examples", 0, kMaxCount,
                                           bn->num_batches_tracked));
  return bn;
}

void BatchNorm::ToProto(v1::Layer* out) const {
  v1::BatchNormLayer* pb = out->mutable_batch_norm();
  pb->set_features(features());
  pb->mutable_gamma()->Assign(gamma.data(), gamma.data() + gamma.size());
  pb->mutable_beta()->Assign(beta.data(), beta.data() + beta.size());
  pb->mutable_running_mean()->Assign(running_mean.data(),
                                     running_mean.data() + running_mean.size());
  pb->mutable_running_var()->Assign(running_var.data(),
                                    running_var.data() + running_var.size());
  pb->set_momentum(config.momentum);
  pb->set_eps(config.eps);
  pb->set_num_batches_tracked(num_batches_tracked);
  pb->set_average(config.average);
  pb->set_variance(config.variance);
  pb->set_stats_source(stats_source);
  pb->set_stats_examples(stats_examples);
}

Json BatchNorm::ToJson() const {
  Json j = Json::object();
  j["type"] = type();
  j["features"] = features();
  j["gamma"] = json::FloatArray(gamma.data(), gamma.size());
  j["beta"] = json::FloatArray(beta.data(), beta.size());
  j["running_mean"] =
      json::FloatArray(running_mean.data(), running_mean.size());
  j["running_var"] = json::FloatArray(running_var.data(), running_var.size());
  j["eps"] = config.eps;
  j["momentum"] = config.momentum;
  j["num_batches_tracked"] = num_batches_tracked;
  j["average"] = AverageName(config.average);
  j["variance"] = VarianceName(config.variance);
  j["stats_source"] = StatsSourceName(stats_source);
  j["stats_examples"] = stats_examples;
  return j;
}

void BatchNorm::ToSpec(v1::LayerSpec* out) const {
  v1::BatchNormSpec* b = out->mutable_batch_norm();
  b->set_momentum(config.momentum);
  b->set_eps(config.eps);
  b->set_average(config.average);
  b->set_variance(config.variance);
}

}  // namespace bnserve::model
