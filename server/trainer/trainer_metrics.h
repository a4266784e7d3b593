// Prometheus metrics of the trainer (text exposition format 0.0.4), served
// at GET /metrics on --metrics_port by the TrainerServer.
//
// Exported series (all prefixed bnserve_trainer_):
//   jobs{state}                          gauge: jobs this trainer lists, by
//                                        state (idle, training, cancelled)
//   steps_total                          counter: training steps applied
//   examples_total                       counter: examples trained on
//   checkpoints_total                    counter: checkpoints written
//   checkpoint_failures_total            counter: checkpoint writes failed
//   checkpoint_duration_seconds          histogram: one checkpoint write
//   publishes_total                      counter: versions published
//   publish_duration_seconds             histogram: one publish
//   resumes_total                        counter: jobs restored or taken
//                                        over from a checkpoint
// Examples per second is rate(bnserve_trainer_examples_total[1m]).
//
// Thread-safe: counters are relaxed atomics (the step path adds two);
// histograms take a mutex (checkpoints and publishes are rare).
#ifndef BNSERVE_SERVER_TRAINER_TRAINER_METRICS_H_
#define BNSERVE_SERVER_TRAINER_TRAINER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace bnserve::server {

class TrainerMetrics {
 public:
  // Upper bounds (seconds) of the latency histogram buckets.
  static constexpr std::array<double, 12> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,   0.25,   0.5,   1.0,  2.5};

  void RecordStep(int64_t examples) {
    steps_.fetch_add(1, std::memory_order_relaxed);
    examples_.fetch_add(examples, std::memory_order_relaxed);
  }
  void RecordCheckpoint(bool ok, absl::Duration latency);
  void RecordPublish(absl::Duration latency);
  void RecordResume() { resumes_.fetch_add(1, std::memory_order_relaxed); }

  // The exposition; `jobs_by_state` maps a state name ("idle", ...) to the
  // number of jobs in it.
  std::string Render(const std::map<std::string, int64_t>& jobs_by_state) const;

  int64_t steps() const { return steps_.load(); }
  int64_t resumes() const { return resumes_.load(); }

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size() + 1> counts{};  // last: +Inf
    double sum = 0;
    void Add(absl::Duration d);
    void Render(const std::string& name, const std::string& help,
                std::string* out) const;
  };

  std::atomic<int64_t> steps_{0};
  std::atomic<int64_t> examples_{0};
  std::atomic<int64_t> resumes_{0};
  mutable absl::Mutex mu_;
  int64_t checkpoints_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t checkpoint_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t publishes_ ABSL_GUARDED_BY(mu_) = 0;
  Histogram checkpoint_latency_ ABSL_GUARDED_BY(mu_);
  Histogram publish_latency_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_TRAINER_METRICS_H_
