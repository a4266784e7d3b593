// One loaded, verified, immutable version of a model: the folded serving
// network plus the metadata the services report. Created only through
// Servable::Create, which validates, folds and warms up; after that nothing
// about it changes except the drift and inference statistics (internally
// synchronized).
//
// Servables are shared as std::shared_ptr<const Servable>: a request keeps
// the version it started with alive until it finishes, whatever the
// ServableManager swaps in meanwhile. Every const method is thread-safe.
#ifndef BNSERVE_SERVER_INFERENCE_SERVABLE_H_
#define BNSERVE_SERVER_INFERENCE_SERVABLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bnserve/v1/inference.pb.h"
#include "bnserve/v1/snapshot.pb.h"
#include "model/network.h"
#include "server/inference/drift.h"
#include "server/inference/infer_stats.h"

namespace bnserve::inference {

struct DriftOptions {
  // 1 in `sample_every` served examples feeds the drift statistics; 0 = off.
  int sample_every = 16;
  // EMA weight of a new sample.
  double alpha = 0.01;
};

class Servable {
 public:
  // Validates the snapshot (Network::FromSnapshot, names included), folds
  // batch norm into the dense and conv2d layers and runs one warm-up example
  // (zeros) whose outputs must be finite. InvalidArgument names the problem.
  static absl::StatusOr<std::shared_ptr<const Servable>> Create(
      const v1::Snapshot& snapshot, const DriftOptions& drift = {});

  Servable(const Servable&) = delete;
  Servable& operator=(const Servable&) = delete;

  const std::string& model() const { return info_.model(); }
  int64_t version() const { return info_.version(); }
  v1::Task task() const { return folded_.task(); }
  bool classification() const { return task() == v1::TASK_CLASSIFICATION; }
  int input_features() const { return folded_.input_features(); }
  // [F], or [C, H, W] for an image model.
  const model::Shape& input_shape() const { return folded_.input_shape(); }
  int output_dim() const { return folded_.output_dim(); }
  // The snapshot without its layer parameters: names, task, provenance.
  const v1::Snapshot& info() const { return info_; }
  // Provenance of every batch-norm layer's running statistics.
  const std::vector<v1::BatchNormStatistics>& batch_norm() const {
    return batch_norm_;
  }
  // When this version finished loading.
  absl::Time loaded_at() const { return loaded_at_; }

  // The serving network (batch norm folded) and the original one.
  const model::Network& folded() const { return folded_; }
  const model::Network& unfolded() const { return unfolded_; }
  // folded().parameter_count(), computed once at load: the per-example work
  // bound every inference call checks (see request_limits.h).
  int64_t parameter_count() const { return parameter_count_; }

  // Inference-mode outputs (raw: logits for classification) of one example
  // of input_features() values, which the caller has checked are finite.
  // Writes output_dim() values to `out`. No heap allocation once the calling
  // thread has served one request; feeds the drift sampler when the outputs
  // are finite.
  void Run(const float* x, float* out) const;

  const DriftMonitor& drift() const { return *drift_; }
  // KServe inference statistics of this version (internally synchronized).
  InferStats& stats() const { return *stats_; }

 private:
  Servable(v1::Snapshot info, model::Network unfolded, model::Network folded);

  v1::Snapshot info_;
  std::vector<v1::BatchNormStatistics> batch_norm_;
  model::Network unfolded_;
  model::Network folded_;
  int64_t parameter_count_;
  absl::Time loaded_at_;
  std::unique_ptr<DriftMonitor> drift_;
  std::unique_ptr<InferStats> stats_ = std::make_unique<InferStats>();
};

// First index of a non-finite value in `x[0..n)`, or -1.
int64_t FirstNonFinite(const float* x, int64_t n);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_SERVABLE_H_
