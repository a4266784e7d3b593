// The JSON documents behind the inference server's dashboard page, built
// from the servable manager and the metrics without any transport (the HTTP
// handler, dashboard_http.h, only routes and checks the token). Each
// function returns one JSON object as text (non-finite numbers as null):
//
//   ModelsJson   {"ready": bool, "models": [{"model", "serving_version"
//                (the newest loaded, what a request without a version or
//                label gets), "labels": {label: version}, "versions":
//                [{"version", "labels": [..], "loaded_at" (Unix seconds),
//                "training_step", "training_loss", "origin", "job_id",
//                "parent_version", "batch_norm_layers", "drift_samples"}]}]}
//   TrafficJson  {"unix_seconds", "requests" (all methods), "errors",
//                "methods": [{"method", "requests", "errors",
//                "mean_ms", "p50_ms", "p90_ms", "p99_ms"}]}; the
//                percentiles are histogram_quantile over the Prometheus
//                latency buckets since the server started (the page turns
//                two polls of "requests" into a rate)
//   DriftJson    {"layers": [{"model", "version", "layer", "features",
//                "samples", "mean_shift_avg", "mean_shift_max",
//                "variance_ratio", "live_mean", "live_var", "running_mean",
//                "running_var" (the first `units` units)}]}, the layers with
//                the largest mean_shift_max first
//
// Thread-safe (the manager and metrics are).
#ifndef BNSERVE_SERVER_INFERENCE_DASHBOARD_JSON_H_
#define BNSERVE_SERVER_INFERENCE_DASHBOARD_JSON_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/common/limits.h"
#include "server/inference/metrics.h"
#include "server/inference/servable_manager.h"

namespace bnserve::inference {

std::string ModelsJson(const ServableManager& manager);
std::string TrafficJson(const Metrics& metrics, absl::Time now);
std::string DriftJson(const ServableManager& manager,
                      int units = server::kDashboardUnits);

// The q-quantile (0 < q < 1) of a Prometheus histogram, as PromQL's
// histogram_quantile computes it: `upper_bounds` are the finite bucket
// bounds (ascending), `counts` the requests per bucket (not cumulative),
// one more than the bounds (the last is +Inf). Linear interpolation inside
// the bucket (the first starts at 0); a quantile in the +Inf bucket is the
// largest finite bound; NaN when there are no requests.
double HistogramQuantile(double q, const std::vector<double>& upper_bounds,
                         const std::vector<uint64_t>& counts);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_DASHBOARD_JSON_H_
