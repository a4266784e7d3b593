#include "server/trainer/job_history.h"

#include <algorithm>
#include <utility>

#include "model/batch_norm.h"

namespace bnserve::server {
namespace {

// The layers' descriptions (which are batch norms, how many units shown).
std::vector<BatchNormLayerInfo> DescribeBatchNorms(
    const model::Network& network, int units) {
  std::vector<BatchNormLayerInfo> out;
  for (int i = 0; i < network.num_layers(); ++i) {
    const auto* bn = network.layer_as<model::BatchNorm>(i);
    if (bn == nullptr) continue;
    out.push_back({.layer = i,
                   .features = bn->features(),
                   .units = std::min(units, bn->features()),
                   .momentum = bn->config.momentum,
                   .cumulative = bn->config.average == v1::AVERAGE_CUMULATIVE});
  }
  return out;
}

// One batch-norm layer's statistics after the step that `cache` describes.
BatchNormHistory LayerPoint(const model::BatchNorm& bn,
                            const model::LayerCache& cache, int units) {
  BatchNormHistory h;
  const float correction =
      bn.config.variance == v1::VARIANCE_BIASED || cache.count < 2
          ? 1.0f
          : static_cast<float>(cache.count) /
                static_cast<float>(cache.count - 1);
  for (int u = 0; u < units; ++u) {
    h.running_mean.push_back(bn.running_mean[u]);
    h.running_var.push_back(bn.running_var[u]);
    const bool has_batch = cache.mean.size() > u && cache.var.size() > u;
    h.batch_mean.push_back(has_batch ? cache.mean[u] : 0.0f);
    h.batch_var.push_back(has_batch ? cache.var[u] * correction : 0.0f);
  }
  return h;
}

}  // namespace

JobHistory::JobHistory(int capacity, int units, int max_publishes)
    : capacity_(std::max(capacity, 2)),
      units_(std::max(units, 0)),
      max_publishes_(std::max(max_publishes, 1)) {}

void JobHistory::RecordStep(const model::Trainer& trainer,
                            const model::StepResult& result, absl::Time now) {
  const model::Network& network = trainer.network();
  const std::vector<model::LayerCache>& caches = trainer.last_step_caches();
  HistoryPoint point{
      .step = result.step,
      .loss = result.loss,
      .accuracy = result.accuracy,
      .unix_seconds = absl::ToDoubleSeconds(now - absl::UnixEpoch())};
  std::vector<BatchNormLayerInfo> layers = DescribeBatchNorms(network, units_);
  for (const BatchNormLayerInfo& info : layers) {
    const auto& bn = *network.layer_as<model::BatchNorm>(info.layer);
    const model::LayerCache empty;
    const model::LayerCache& cache =
        static_cast<size_t>(info.layer) < caches.size() ? caches[info.layer]
                                                        : empty;
    point.layers.push_back(LayerPoint(bn, cache, info.units));
  }
  absl::MutexLock lock(&mu_);
  batch_norm_ = std::move(layers);
  latest_ = point;
  if (point.step % stride_ != 0) return;
  if (!points_.empty() && points_.back().step >= point.step) {
    // A resumed job replays steps: keep the history ascending.
    while (!points_.empty() && points_.back().step >= point.step) {
      points_.pop_back();
    }
  }
  points_.push_back(std::move(point));
  if (static_cast<int>(points_.size()) >= capacity_) Downsample();
}

void JobHistory::Downsample() {
  stride_ *= 2;
  std::deque<HistoryPoint> kept;
  for (HistoryPoint& p : points_) {
    if (p.step % stride_ == 0) kept.push_back(std::move(p));
  }
  points_ = std::move(kept);
}

void JobHistory::RecordPublish(int64_t step, int64_t version,
                               const std::string& origin) {
  absl::MutexLock lock(&mu_);
  publishes_.push_back({step, version, origin});
  while (static_cast<int>(publishes_.size()) > max_publishes_) {
    publishes_.pop_front();
  }
}

JobHistory::View JobHistory::Snapshot() const {
  absl::MutexLock lock(&mu_);
  View v;
  v.stride = stride_;
  v.batch_norm = batch_norm_;
  v.points.assign(points_.begin(), points_.end());
  v.latest = latest_;
  v.publishes.assign(publishes_.begin(), publishes_.end());
  return v;
}

}  // namespace bnserve::server
