#include "server/inference/drift.h"

#include <algorithm>
#include <cmath>

#include "model/batch_norm.h"

namespace bnserve::inference {

class DriftMonitor::Tap final : public model::ForwardObserver {
 public:
  Tap(std::vector<LayerEma>* layers, double a) : layers_(layers), a_(a) {}
  void OnLayerInput(int layer, const model::Shape& shape,
                    const float* z) override {
    if (next_ >= layers_->size() || (*layers_)[next_].layer != layer) return;
    LayerEma& ema = (*layers_)[next_++];
    const int64_t plane = shape.plane();
    if (plane == 1) {
      UpdateFlat(z, shape.channels, &ema);
      return;
    }
    for (int c = 0; c < shape.channels; ++c) {
      // This example's mean and biased variance over the channel's values
      // (one value for a flat input), merged into the exponentially
      // weighted mean and variance (West's update; var_b = 0 for one value).
      const float* zc = z + c * plane;
      double mean_b = 0, var_b = 0;
      for (int64_t k = 0; k < plane; ++k) mean_b += zc[k];
      mean_b /= static_cast<double>(plane);
      for (int64_t k = 0; k < plane; ++k) {
        var_b += (zc[k] - mean_b) * (zc[k] - mean_b);
      }
      var_b /= static_cast<double>(plane);
      const double diff = mean_b - ema.mean[c];
      const double incr = a_ * diff;
      ema.mean[c] += incr;
      ema.var[c] = (1.0 - a_) * (ema.var[c] + diff * incr) + a_ * var_b;
    }
  }

 private:
  // The update above for one value per channel (a flat input), where the
  // example's mean is the value itself and its variance 0: the same
  // arithmetic without the per-channel loops and divisions by 1.
  void UpdateFlat(const float* z, int channels, LayerEma* ema) const {
    for (int c = 0; c < channels; ++c) {
      const double diff = static_cast<double>(z[c]) - ema->mean[c];
      const double incr = a_ * diff;
      ema->mean[c] += incr;
      ema->var[c] = (1.0 - a_) * (ema->var[c] + diff * incr) + a_ * 0.0;
    }
  }

  std::vector<LayerEma>* const layers_;
  const double a_;
  size_t next_ = 0;
};

DriftMonitor::DriftMonitor(const model::Network* network, int sample_every,
                           double alpha)
    : network_(network),
      sample_every_(sample_every),
      alpha_(alpha),
      has_batch_norm_(network->num_batch_norm_layers() > 0) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < network_->num_layers(); ++i) {
    if (const auto* bn = network_->layer_as<model::BatchNorm>(i)) {
      LayerEma ema;
      ema.layer = i;
      ema.mean.assign(bn->features(), 0.0);
      ema.var.assign(bn->features(), 0.0);
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
  thread_local model::Workspace ws;
  thread_local std::vector<float> out;
  if (out.size() < static_cast<size_t>(network_->output_dim())) {
    out.resize(network_->output_dim());
  }
  ++samples_;
  Tap tap(&layers_, std::max(alpha_, 1.0 / static_cast<double>(samples_)));
  network_->Forward(x, out.data(), &ws, &tap);
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
    const auto& bn = *network_->layer_as<model::BatchNorm>(ema.layer);
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

std::vector<DriftLayerUnits> DriftMonitor::Units(int units) const {
  absl::MutexLock lock(&mu_);
  std::vector<DriftLayerUnits> out;
  if (samples_ == 0) return out;
  for (const LayerEma& ema : layers_) {
    const auto& bn = *network_->layer_as<model::BatchNorm>(ema.layer);
    DriftLayerUnits u;
    u.layer = ema.layer;
    const int n = std::min(units, bn.features());
    for (int j = 0; j < n; ++j) {
      u.live_mean.push_back(ema.mean[j]);
      u.live_var.push_back(ema.var[j]);
      u.running_mean.push_back(bn.running_mean[j]);
      u.running_var.push_back(bn.running_var[j]);
    }
    out.push_back(std::move(u));
  }
  return out;
}

}  // namespace bnserve::inference
