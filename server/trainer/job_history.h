// The bounded history of one training job that the trainer's dashboard
// draws: per recorded step the loss, the accuracy and, for every batch-norm
// layer, the running mean and variance of its first `units` units beside the
// minibatch values that step averaged into them; and the steps at which
// versions were published.
//
// Bounds (server/common/limits.h): at most `capacity` points are kept. The
// history starts with a stride of 1 (every step); when it is full, every
// point whose step is not a multiple of twice the stride is dropped and the
// stride doubles, and from then on only steps that are multiples of the
// stride are kept. So a job of any length keeps between capacity / 2 and
// capacity evenly spaced points; the latest step is always reported as well
// (View::latest). The newest `max_publishes` publish marks are kept.
//
// The minibatch variance reported is the value that entered the running
// average: the unbiased var_B * n / (n - 1) unless the layer uses the
// biased estimator, so that with an EMA of weight a,
//   running[t] = (1 - a) * running[t - 1] + a * minibatch[t]
// holds between consecutive recorded steps at stride 1.
//
// Thread-safe: recording (the job's training thread) and reading (the
// dashboard) take the history's own mutex, never the job's, so reading never
// waits for a training step.
#ifndef BNSERVE_SERVER_TRAINER_JOB_HISTORY_H_
#define BNSERVE_SERVER_TRAINER_JOB_HISTORY_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/trainer.h"
#include "server/common/limits.h"

namespace bnserve::server {

// One batch-norm layer at one step, for its first units.
struct BatchNormHistory {
  std::vector<float> running_mean, running_var;
  std::vector<float> batch_mean, batch_var;
};

struct HistoryPoint {
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;
  double unix_seconds = 0;
  std::vector<BatchNormHistory> layers;  // one per batch-norm layer
};

struct PublishMark {
  int64_t step = 0;
  int64_t version = 0;
  std::string origin;  // "trainer" or "recalibrate"
};

// Which layers of the network the history's layer entries are.
struct BatchNormLayerInfo {
  int layer = 0;     // index in the network's layers
  int features = 0;  // channels
  int units = 0;     // units recorded (the first ones)
  double momentum = 0;
  bool cumulative = false;  // average mode: cumulative instead of EMA
};

class JobHistory {
 public:
  explicit JobHistory(int capacity = kJobHistoryPoints,
                      int units = kDashboardUnits,
                      int max_publishes = kJobHistoryPublishes);

  // Records the step `trainer` just took (its last_step_caches() and
  // network, after the running-statistics update) with its result.
  void RecordStep(const model::Trainer& trainer,
                  const model::StepResult& result, absl::Time now);
  // Records that `version` was published at `step`.
  void RecordPublish(int64_t step, int64_t version, const std::string& origin);

  struct View {
    int64_t stride = 1;
    std::vector<BatchNormLayerInfo> batch_norm;
    std::vector<HistoryPoint> points;    // ascending steps
    std::optional<HistoryPoint> latest;  // the last recorded step
    std::vector<PublishMark> publishes;  // ascending
  };
  // A copy of everything kept.
  View Snapshot() const;

 private:
  // Drops every other point and doubles the stride.
  void Downsample() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int capacity_;
  const int units_;
  const int max_publishes_;
  mutable absl::Mutex mu_;
  int64_t stride_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<BatchNormLayerInfo> batch_norm_ ABSL_GUARDED_BY(mu_);
  std::deque<HistoryPoint> points_ ABSL_GUARDED_BY(mu_);
  std::optional<HistoryPoint> latest_ ABSL_GUARDED_BY(mu_);
  std::deque<PublishMark> publishes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_JOB_HISTORY_H_
