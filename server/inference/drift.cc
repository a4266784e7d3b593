#include "server/inference/drift.h"

#include <algorithm>
#include <cmath>
#include <variant>

#include "model/batch_norm.h"
#include "model/dense_kernel.h"

namespace bnserve::inference {

DriftMonitor::DriftMonitor(const model::Network* network, int sample_every,
                           double alpha)
    : network_(network),
      sample_every_(sample_every),
      alpha_(alpha),
      has_batch_norm_(network->num_batch_norm_layers() > 0) {
  absl::MutexLock lock(&mu_);
  const auto& layers = network_->layers();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (const auto* bn = std::get_if<model::BatchNorm>(&layers[i])) {
      LayerEma ema;
      ema.layer = static_cast<int>(i);
      ema.mean.assign(bn->features(), 0.0);
      ema.var.assign(bn->features(), 0.0);
      model::InferenceScaleShift(*bn, &ema.scale, &ema.shift);
      layers_.push_back(std::move(ema));
    }
  }
}

void DriftMonitor::MaybeSample(const float* x) {
  if (sample_every_ <= 0 || !has_batch_norm_) return;
  // A per-thread countdown rather than one shared counter: the hot path
  // touches no cache line that other serving threads write.
  thread_local int countdown = 0;
  if (countdown > 0) {
    --countdown;
    return;
  }
  countdown = sample_every_ - 1;
  if (!mu_.TryLock()) return;
  UpdateLocked(x);
  mu_.Unlock();
}

void DriftMonitor::Sample(const float* x) {
  absl::MutexLock lock(&mu_);
  UpdateLocked(x);
}

void DriftMonitor::UpdateLocked(const float* x) {
  if (layers_.empty()) return;
  // Per-thread scratch: grows once, then no allocation.
  thread_local std::vector<float> cur, next;
  const size_t need = static_cast<size_t>(network_->max_width());
  if (cur.size() < need) cur.resize(need);
  if (next.size() < need) next.resize(need);
  int width = network_->input_features();
  std::copy(x, x + width, cur.begin());
  ++samples_;
  const double a = std::max(alpha_, 1.0 / static_cast<double>(samples_));
  size_t bn_index = 0;
  for (const model::Layer& layer : network_->layers()) {
    if (const auto* d = std::get_if<model::Dense>(&layer)) {
      model::DenseForward(d->weight.data(),
                          d->has_bias() ? d->bias.data() : nullptr, cur.data(),
                          next.data(), d->out(), width);
      std::swap(cur, next);
      width = d->out();
    } else if (std::holds_alternative<model::BatchNorm>(layer)) {
      LayerEma& ema = layers_[bn_index++];
      for (int j = 0; j < width; ++j) {
        // Exponentially weighted mean and variance (West's update).
        const double diff = cur[j] - ema.mean[j];
        const double incr = a * diff;
        ema.mean[j] += incr;
        ema.var[j] = (1.0 - a) * (ema.var[j] + diff * incr);
        cur[j] = ema.scale[j] * cur[j] + ema.shift[j];
      }
      // Nothing after the last batch-norm layer feeds the statistics.
      if (bn_index == layers_.size()) break;
    } else {
      model::ApplyActivation(std::get<model::ActivationLayer>(layer).fn,
                             cur.data(), width);
    }
  }
}

int64_t DriftMonitor::samples() const {
  absl::MutexLock lock(&mu_);
  return samples_;
}

std::vector<DriftLayerStats> DriftMonitor::Stats() const {
  absl::MutexLock lock(&mu_);
  std::vector<DriftLayerStats> out;
  if (samples_ == 0) return out;
  for (const LayerEma& ema : layers_) {
    const auto& bn = std::get<model::BatchNorm>(network_->layers()[ema.layer]);
    DriftLayerStats s;
    s.layer = ema.layer;
    s.features = bn.features();
    double shift_sum = 0, ratio_sum = 0;
    for (int j = 0; j < s.features; ++j) {
      const double rv = bn.running_var[j];
      const double shift = std::abs(ema.mean[j] - bn.running_mean[j]) /
                           std::sqrt(rv + bn.config.eps);
      shift_sum += shift;
      s.mean_shift_max = std::max(s.mean_shift_max, shift);
      ratio_sum += ema.var[j] / rv;
    }
    if (s.features > 0) {
      s.mean_shift_avg = shift_sum / s.features;
      s.variance_ratio = ratio_sum / s.features;
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace bnserve::inference
