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

// One batch-norm layer's statistics after the step that `cache` describes,
// written over `h` (whose buffers are reused).
void FillLayerPoint(const model::BatchNorm& bn, const model::LayerCache& cache,
                    int units, BatchNormHistory& h) {
  const float correction =
      bn.config.variance == v1::VARIANCE_BIASED || cache.count < 2
          ? 1.0f
          : static_cast<float>(cache.count) /
                static_cast<float>(cache.count - 1);
  h.running_mean.resize(units);
  h.running_var.resize(units);
  h.batch_mean.resize(units);
  h.batch_var.resize(units);
  for (int u = 0; u < units; ++u) {
    h.running_mean[u] = bn.running_mean[u];
    h.running_var[u] = bn.running_var[u];
    const bool has_batch = cache.mean.size() > u && cache.var.size() > u;
    h.batch_mean[u] = has_batch ? cache.mean[u] : 0.0f;
    h.batch_var[u] = has_batch ? cache.var[u] * correction : 0.0f;
  }
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
  absl::MutexLock lock(&mu_);
  // A job's layers never change: described once. The latest point is
  // rewritten in place, so a step allocates only when it is also kept.
  if (batch_norm_.empty()) batch_norm_ = DescribeBatchNorms(network, units_);
  if (!latest_.has_value()) latest_.emplace();
  HistoryPoint& point = *latest_;
  point.step = result.step;
  point.loss = result.loss;
  point.accuracy = result.accuracy;
  point.unix_seconds = absl::ToDoubleSeconds(now - absl::UnixEpoch());
  point.layers.resize(batch_norm_.size());
  const model::LayerCache empty;
  for (size_t i = 0; i < batch_norm_.size(); ++i) {
    const BatchNormLayerInfo& info = batch_norm_[i];
    const model::LayerCache& cache =
        static_cast<size_t>(info.layer) < caches.size() ? caches[info.layer]
                                                        : empty;
    FillLayerPoint(*network.layer_as<model::BatchNorm>(info.layer), cache,
                   info.units, point.layers[i]);
  }
  if (point.step % stride_ != 0) return;
  if (!points_.empty() && points_.back().step >= point.step) {
    // A resumed job replays steps: keep the history ascending.
    while (!points_.empty() && points_.back().step >= point.step) {
      points_.pop_back();
    }
  }
  points_.push_back(point);
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
