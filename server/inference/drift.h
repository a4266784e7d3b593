// Live-traffic drift of the batch-norm inputs of one loaded version.
//
// The folded serving network has no BatchNorm layers left, so drift is
// measured on a side path: 1 in `sample_every` served examples is run
// through the UNFOLDED network's own forward pass (Network::Forward with an
// observer), and for every BatchNorm layer an exponential moving average of
// the per-channel mean and variance of the layer's input (the
// pre-normalization values z; all H*W values of a channel for an image) is
// kept. For the first 1/alpha samples the weight is 1/n (an exact running
// mean/variance), then alpha. A batch norm over the raw inputs (input
// normalization) watches the raw features themselves.
//
// Compared with the snapshot's running statistics, per layer:
//   mean shift      (mean_live - running_mean) / sqrt(running_var + eps),
//                   reported as the average and the maximum of its absolute
//                   value over the units;
//   variance ratio  var_live / running_var, averaged over the units.
// A stationary input gives shifts near 0 and ratios near 1.
//
// Thread-safe. MaybeSample(), the serving path, never blocks: when another
// thread is updating the statistics the example is simply not sampled.
// Sample() (tests, tools) waits for the lock. No heap allocation once the
// calling thread's scratch buffers have grown.
#ifndef BNSERVE_SERVER_INFERENCE_DRIFT_H_
#define BNSERVE_SERVER_INFERENCE_DRIFT_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "model/network.h"

namespace bnserve::inference {

struct DriftLayerStats {
  int layer = 0;  // index of the BatchNorm layer in the snapshot's layers
  int features = 0;
  double mean_shift_avg = 0;  // mean over units of |standardized shift|
  double mean_shift_max = 0;  // max over units of |standardized shift|
  double variance_ratio = 0;  // mean over units of var_live / running_var
};

// The first units of one BatchNorm layer: the live (served traffic) mean
// and variance of its input beside the snapshot's running statistics.
struct DriftLayerUnits {
  int layer = 0;
  std::vector<double> live_mean, live_var;
  std::vector<double> running_mean, running_var;
};

class DriftMonitor {
 public:
  // `network` is the unfolded network (it must outlive the monitor).
  // `sample_every` <= 0 disables sampling; `alpha` in (0, 1].
  DriftMonitor(const model::Network* network, int sample_every, double alpha);

  // Counts one served example `x` (input_features() finite values) and,
  // for 1 in sample_every of them, updates the statistics. The count is kept
  // per calling thread (each thread samples its first example and then every
  // sample_every-th it serves, whatever the monitor), and a sample is
  // skipped rather than waited for when another thread holds the
  // statistics: the serving hot path never blocks here and writes no shared
  // cache line except when it samples.
  void MaybeSample(const float* x);

  // Updates the statistics with `x` unconditionally (blocking).
  void Sample(const float* x);

  // Number of examples that entered the statistics.
  int64_t samples() const;
  // One entry per BatchNorm layer, in forward order; empty before the first
  // sample.
  std::vector<DriftLayerStats> Stats() const;
  // The first `units` units of every BatchNorm layer, in forward order;
  // empty before the first sample.
  std::vector<DriftLayerUnits> Units(int units) const;

 private:
  void UpdateLocked(const float* x) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct LayerEma {
    int layer = 0;
    std::vector<double> mean, var;
  };
  // Feeds each batch-norm layer's input into its EMA during a forward pass.
  class Tap;

  const model::Network* const network_;
  const int sample_every_;
  const double alpha_;
  const bool has_batch_norm_;
  mutable absl::Mutex mu_;
  int64_t samples_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<LayerEma> layers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_DRIFT_H_
