// Prometheus metrics of the inference server (text exposition format 0.0.4),
// served at GET /metrics by the InferenceServer (inference_server.h).
//
// Exported series (all prefixed bnserve_inference_):
//   requests_total{method,code}                counter
//   request_duration_seconds{method}           histogram (le buckets)
//   ready                                      gauge 0/1
//   model_loaded_version{model}                gauge, newest loaded version
//   model_versions_loaded{model}               gauge
//   model_reloads_total{model}                 counter, versions loaded
//   model_load_failures_total{model}           counter, versions refused
//   drift_samples{model,version}               gauge
//   drift_mean_shift{model,version,layer}      gauge, mean |standardized
//                                              shift| over the layer's units
//   drift_mean_shift_max{model,version,layer}  gauge, max over the units
//   drift_variance_ratio{model,version,layer}  gauge, mean var_live/running
// `layer` is the index of the BatchNorm layer in the snapshot (see drift.h).
//
// Thread-safe.
#ifndef BNSERVE_SERVER_INFERENCE_METRICS_H_
#define BNSERVE_SERVER_INFERENCE_METRICS_H_

#include <grpcpp/support/status.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/inference/servable.h"

namespace bnserve::inference {

class Metrics {
 public:
  // Upper bounds (seconds) of the latency histogram buckets.
  static constexpr std::array<double, 14> kLatencyBuckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
      0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1.0};

  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Counts one finished request. Lock-free and allocation-free once the
  // method has been seen: a few relaxed atomic adds on counters sharded by
  // thread, so concurrent requests do not contend on one cache line (the
  // serving hot path calls this for every request). The first request of a
  // method registers it under a mutex. At most kMaxMethods distinct method
  // names are kept; further ones are counted as method "other".
  void RecordRequest(absl::string_view method, grpc::StatusCode code,
                     absl::Duration latency);
  void RecordLoad(const std::string& model);
  void RecordLoadFailure(const std::string& model);

  // The whole exposition: the counters above plus gauges computed from the
  // currently loaded servables.
  std::string Render(const std::vector<std::shared_ptr<const Servable>>& loaded,
                     bool ready) const;

  // One method's requests so far, for the dashboard (dashboard_json.h).
  struct MethodSummary {
    std::string method;
    uint64_t requests = 0;  // every status code
    uint64_t errors = 0;    // status code not OK
    // Requests per latency bucket (kLatencyBuckets, then +Inf), not
    // cumulative.
    std::array<uint64_t, kLatencyBuckets.size() + 1> buckets{};
    double sum_seconds = 0;
  };
  // Every method seen, by name (the numbers /metrics reports).
  std::vector<MethodSummary> Summaries() const;

  // Requests of `method` that ended with `code` so far.
  uint64_t RequestCount(absl::string_view method, grpc::StatusCode code) const;

  static constexpr int kMaxMethods = 32;

 private:
  static constexpr int kCodes = 17;  // grpc::StatusCode 0..16
  static constexpr int kBuckets = kLatencyBuckets.size() + 1;  // last: +Inf
  static constexpr int kShards = 8;

  // One thread's share of a method's counters (threads are spread over the
  // shards round-robin), on cache lines of its own.
  struct alignas(64) Shard {
    std::array<std::atomic<uint64_t>, kCodes> codes{};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
    std::atomic<uint64_t> sum_nanos{0};
  };
  struct MethodStats {
    explicit MethodStats(std::string n) : name(std::move(n)) {}
    const std::string name;
    std::array<Shard, kShards> shards;
  };
  // The summed shards of one method.
  struct Totals {
    std::array<uint64_t, kCodes> codes{};
    std::array<uint64_t, kBuckets> buckets{};
    uint64_t sum_nanos = 0;
  };

  MethodStats* Find(absl::string_view method) const;
  MethodStats* FindOrAdd(absl::string_view method);
  static Totals Sum(const MethodStats& m);

  // methods_[0, method_count_) are set and never change; a slot is written
  // (under mu_) before method_count_ is raised past it.
  std::array<std::atomic<MethodStats*>, kMaxMethods> methods_{};
  std::atomic<int> method_count_{0};

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<MethodStats>> owned_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> reloads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> load_failures_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_METRICS_H_
