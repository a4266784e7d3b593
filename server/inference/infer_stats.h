// Cumulative KServe inference statistics of one loaded version (what
// Triton's ModelStatistics reports): successful and failed ModelInfer calls
// with their total durations, the time spent computing, the rows answered
// and the time of the last call. ModelInfer calls over gRPC and REST both
// count; bnserve.v1 Predict/PredictBatch do not (they have their own
// Prometheus series). The counters live as long as the version is loaded.
//
// Thread-safe and lock-free: relaxed atomic adds (a reader may see a call's
// count before its duration; every value is exact once calls stop).
#ifndef BNSERVE_SERVER_INFERENCE_INFER_STATS_H_
#define BNSERVE_SERVER_INFERENCE_INFER_STATS_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"

namespace bnserve::inference {

struct InferStatsSnapshot {
  uint64_t success_count = 0;
  uint64_t success_ns = 0;
  uint64_t fail_count = 0;
  uint64_t fail_ns = 0;
  uint64_t compute_ns = 0;        // model computation of successful calls
  uint64_t inference_count = 0;   // rows answered by successful calls
  int64_t last_inference_ms = 0;  // Unix milliseconds; 0 = never
};

class InferStats {
 public:
  // A call that answered `rows` rows; `total` is the whole call, `compute`
  // the model's part of it.
  void RecordSuccess(int64_t rows, absl::Duration total, absl::Duration compute,
                     absl::Time now) {
    success_count_.fetch_add(1, std::memory_order_relaxed);
    success_ns_.fetch_add(Nanos(total), std::memory_order_relaxed);
    compute_ns_.fetch_add(Nanos(compute), std::memory_order_relaxed);
    inference_count_.fetch_add(static_cast<uint64_t>(rows),
                               std::memory_order_relaxed);
    last_ms_.store(absl::ToUnixMillis(now), std::memory_order_relaxed);
  }
  // A call refused after this version was chosen (bad input, too costly).
  void RecordFailure(absl::Duration total, absl::Time now) {
    fail_count_.fetch_add(1, std::memory_order_relaxed);
    fail_ns_.fetch_add(Nanos(total), std::memory_order_relaxed);
    last_ms_.store(absl::ToUnixMillis(now), std::memory_order_relaxed);
  }

  InferStatsSnapshot Snapshot() const {
    InferStatsSnapshot s;
    s.success_count = success_count_.load(std::memory_order_relaxed);
    s.success_ns = success_ns_.load(std::memory_order_relaxed);
    s.fail_count = fail_count_.load(std::memory_order_relaxed);
    s.fail_ns = fail_ns_.load(std::memory_order_relaxed);
    s.compute_ns = compute_ns_.load(std::memory_order_relaxed);
    s.inference_count = inference_count_.load(std::memory_order_relaxed);
    s.last_inference_ms = last_ms_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static uint64_t Nanos(absl::Duration d) {
    const int64_t ns = absl::ToInt64Nanoseconds(d);
    return ns > 0 ? static_cast<uint64_t>(ns) : 0;
  }

  std::atomic<uint64_t> success_count_{0};
  std::atomic<uint64_t> success_ns_{0};
  std::atomic<uint64_t> fail_count_{0};
  std::atomic<uint64_t> fail_ns_{0};
  std::atomic<uint64_t> compute_ns_{0};
  std::atomic<uint64_t> inference_count_{0};
  std::atomic<int64_t> last_ms_{0};
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_INFER_STATS_H_
