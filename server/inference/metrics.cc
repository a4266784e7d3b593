#include "server/inference/metrics.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "server/common/prometheus.h"

namespace bnserve::inference {
namespace {

constexpr absl::string_view kPrefix = "bnserve_inference_";

std::string Escape(absl::string_view v) { return server::PrometheusEscape(v); }

std::string Num(double v) { return absl::StrFormat("%.9g", v); }

void Header(std::string* out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(
      out, server::PrometheusHeader(absl::StrCat(kPrefix, name), type, help));
}

}  // namespace

Metrics::Metrics() = default;
Metrics::~Metrics() = default;

Metrics::MethodStats* Metrics::Find(absl::string_view method) const {
  const int n = method_count_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    MethodStats* m = methods_[i].load(std::memory_order_relaxed);
    if (m->name == method) return m;
  }
  return nullptr;
}

Metrics::MethodStats* Metrics::FindOrAdd(absl::string_view method) {
  if (MethodStats* m = Find(method)) return m;
  absl::MutexLock lock(&mu_);
  if (MethodStats* m = Find(method)) return m;  // added meanwhile
  const int n = method_count_.load(std::memory_order_relaxed);
  if (n == kMaxMethods) {
    // Full (the services have far fewer methods): the last slot is "other".
    return methods_[kMaxMethods - 1].load(std::memory_order_relaxed);
  }
  owned_.push_back(std::make_unique<MethodStats>(
      n == kMaxMethods - 1 ? "other" : std::string(method)));
  methods_[n].store(owned_.back().get(), std::memory_order_relaxed);
  method_count_.store(n + 1, std::memory_order_release);
  return owned_.back().get();
}

void Metrics::RecordRequest(absl::string_view method, grpc::StatusCode code,
                            absl::Duration latency) {
  const double seconds = absl::ToDoubleSeconds(latency);
  size_t bucket = 0;
  while (bucket < kLatencyBuckets.size() && seconds > kLatencyBuckets[bucket]) {
    ++bucket;
  }
  int c = static_cast<int>(code);
  if (c < 0 || c >= kCodes) c = grpc::StatusCode::UNKNOWN;
  const int64_t nanos = absl::ToInt64Nanoseconds(latency);
  static std::atomic<unsigned> next_shard{0};
  thread_local const unsigned shard =
      next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  Shard& s = FindOrAdd(method)->shards[shard];
  s.codes[c].fetch_add(1, std::memory_order_relaxed);
  s.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  s.sum_nanos.fetch_add(nanos > 0 ? static_cast<uint64_t>(nanos) : 0,
                        std::memory_order_relaxed);
}

Metrics::Totals Metrics::Sum(const MethodStats& m) {
  Totals t;
  for (const Shard& s : m.shards) {
    for (int i = 0; i < kCodes; ++i) {
      t.codes[i] += s.codes[i].load(std::memory_order_relaxed);
    }
    for (int i = 0; i < kBuckets; ++i) {
      t.buckets[i] += s.buckets[i].load(std::memory_order_relaxed);
    }
    t.sum_nanos += s.sum_nanos.load(std::memory_order_relaxed);
  }
  return t;
}

void Metrics::RecordLoad(const std::string& model) {
  absl::MutexLock lock(&mu_);
  ++reloads_[model];
}

void Metrics::RecordLoadFailure(const std::string& model) {
  absl::MutexLock lock(&mu_);
  ++load_failures_[model];
}

uint64_t Metrics::RequestCount(absl::string_view method,
                               grpc::StatusCode code) const {
  const MethodStats* m = Find(method);
  const int c = static_cast<int>(code);
  if (m == nullptr || c < 0 || c >= kCodes) return 0;
  return Sum(*m).codes[c];
}

std::vector<Metrics::MethodSummary> Metrics::Summaries() const {
  std::map<std::string, MethodSummary> by_name;
  const int n = method_count_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const MethodStats* m = methods_[i].load(std::memory_order_relaxed);
    const Totals t = Sum(*m);
    MethodSummary& s = by_name[m->name];
    s.method = m->name;
    for (int c = 0; c < kCodes; ++c) {
      s.requests += t.codes[c];
      if (c != 0) s.errors += t.codes[c];
    }
    for (int b = 0; b < kBuckets; ++b) s.buckets[b] = t.buckets[b];
    s.sum_seconds = t.sum_nanos * 1e-9;
  }
  std::vector<MethodSummary> out;
  for (auto& [name, s] : by_name) out.push_back(std::move(s));
  return out;
}

std::string Metrics::Render(
    const std::vector<std::shared_ptr<const Servable>>& loaded,
    bool ready) const {
  std::string out;
  // Methods by name, each with its summed shards (a scrape may see a request
  // counted in one series and not yet in another; Prometheus tolerates it).
  std::map<std::string, Totals> methods;
  const int n = method_count_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const MethodStats* m = methods_[i].load(std::memory_order_relaxed);
    methods.emplace(m->name, Sum(*m));
  }
  Header(&out, "requests_total", "counter",
         "Requests by gRPC method and status code.");
  for (const auto& [method, t] : methods) {
    for (int c = 0; c < kCodes; ++c) {
      if (t.codes[c] == 0) continue;
      absl::StrAppend(
          &out, kPrefix, "requests_total{method=\"", Escape(method),
          "\",code=\"",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(c)), "\"} ",
          t.codes[c], "\n");
    }
  }
  Header(&out, "request_duration_seconds", "histogram",
         "Request latency in the handler, by gRPC method.");
  for (const auto& [method, t] : methods) {
    uint64_t cumulative = 0;
    for (int i = 0; i < kBuckets; ++i) {
      cumulative += t.buckets[i];
      absl::StrAppend(
          &out, kPrefix, "request_duration_seconds_bucket{method=\"",
          Escape(method), "\",le=\"",
          i < static_cast<int>(kLatencyBuckets.size()) ? Num(kLatencyBuckets[i])
                                                       : "+Inf",
          "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, kPrefix, "request_duration_seconds_sum{method=\"",
                    Escape(method), "\"} ", Num(t.sum_nanos * 1e-9), "\n",
                    kPrefix, "request_duration_seconds_count{method=\"",
                    Escape(method), "\"} ", cumulative, "\n");
  }
  {
    absl::MutexLock lock(&mu_);
    Header(&out, "model_reloads_total", "counter",
           "Versions loaded (verified, folded, warmed up and swapped in).");
    for (const auto& [model, n] : reloads_) {
      absl::StrAppend(&out, kPrefix, "model_reloads_total{model=\"",
                      Escape(model), "\"} ", n, "\n");
    }
    Header(&out, "model_load_failures_total", "counter",
           "Versions refused because they were corrupt or invalid.");
    for (const auto& [model, n] : load_failures_) {
      absl::StrAppend(&out, kPrefix, "model_load_failures_total{model=\"",
                      Escape(model), "\"} ", n, "\n");
    }
  }
  Header(&out, "ready", "gauge",
         "1 once the configured models are loaded and verified.");
  absl::StrAppend(&out, kPrefix, "ready ", ready ? 1 : 0, "\n");

  std::map<std::string, std::pair<int64_t, int>> per_model;  // newest, count
  for (const auto& s : loaded) {
    auto& [newest, count] = per_model[s->model()];
    newest = std::max(newest, s->version());
    ++count;
  }
  Header(&out, "model_loaded_version", "gauge",
         "Newest loaded version of each model (the default one).");
  for (const auto& [model, v] : per_model) {
    absl::StrAppend(&out, kPrefix, "model_loaded_version{model=\"",
                    Escape(model), "\"} ", v.first, "\n");
  }
  Header(&out, "model_versions_loaded", "gauge",
         "Number of versions of each model loaded.");
  for (const auto& [model, v] : per_model) {
    absl::StrAppend(&out, kPrefix, "model_versions_loaded{model=\"",
                    Escape(model), "\"} ", v.second, "\n");
  }

  std::string samples, shift, shift_max, ratio;
  for (const auto& s : loaded) {
    const std::string labels = absl::StrCat(
        "model=\"", Escape(s->model()), "\",version=\"", s->version(), "\"");
    absl::StrAppend(&samples, kPrefix, "drift_samples{", labels, "} ",
                    s->drift().samples(), "\n");
    for (const DriftLayerStats& d : s->drift().Stats()) {
      const std::string l = absl::StrCat(labels, ",layer=\"", d.layer, "\"");
      absl::StrAppend(&shift, kPrefix, "drift_mean_shift{", l, "} ",
                      Num(d.mean_shift_avg), "\n");
      absl::StrAppend(&shift_max, kPrefix, "drift_mean_shift_max{", l, "} ",
                      Num(d.mean_shift_max), "\n");
      absl::StrAppend(&ratio, kPrefix, "drift_variance_ratio{", l, "} ",
                      Num(d.variance_ratio), "\n");
    }
  }
  Header(&out, "drift_samples", "gauge",
         "Served examples sampled into the drift statistics.");
  out += samples;
  Header(&out, "drift_mean_shift", "gauge",
         "Mean over units of |live mean - running mean| / sqrt(running var + "
         "eps) of a batch-norm layer's input.");
  out += shift;
  Header(&out, "drift_mean_shift_max", "gauge",
         "Max over units of the standardized mean shift.");
  out += shift_max;
  Header(&out, "drift_variance_ratio", "gauge",
         "Mean over units of live variance / running variance of a batch-norm "
         "layer's input.");
  out += ratio;
  return out;
}

}  // namespace bnserve::inference
