#include "server/inference/dashboard_json.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

namespace bnserve::inference {
namespace {

using Json = nlohmann::json;

// NaN and infinities become null (JSON has no such numbers).
Json Number(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

Json NumberArray(const std::vector<double>& values) {
  Json out = Json::array();
  for (double v : values) out.push_back(Number(v));
  return out;
}

Json VersionJson(const Servable& s, const std::vector<std::string>& labels) {
  const v1::Provenance& p = s.info().training();
  return {
      {"version", s.version()},
      {"labels", labels},
      {"loaded_at", absl::ToDoubleSeconds(s.loaded_at() - absl::UnixEpoch())},
      {"training_step", p.step()},
      {"training_loss", Number(p.loss())},
      {"origin", p.origin()},
      {"job_id", p.job_id()},
      {"parent_version", p.parent_version()},
      {"batch_norm_layers", s.batch_norm().size()},
      {"drift_samples", s.drift().samples()}};
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

std::string ModelsJson(const ServableManager& manager) {
  std::map<std::string, std::vector<std::shared_ptr<const Servable>>> by_model;
  for (auto& s : manager.AllLoaded()) by_model[s->model()].push_back(s);
  Json models = Json::array();
  for (const auto& [model, servables] : by_model) {
    const std::map<std::string, int64_t> labels = manager.Labels(model);
    Json versions = Json::array();
    int64_t newest = 0;
    for (const auto& s : servables) {
      std::vector<std::string> names;
      for (const auto& [label, v] : labels) {
        if (v == s->version()) names.push_back(label);
      }
      versions.push_back(VersionJson(*s, names));
      newest = std::max(newest, s->version());
    }
    Json label_map = Json::object();
    for (const auto& [label, v] : labels) label_map[label] = v;
    models.push_back({{"model", model},
                      {"serving_version", newest},
                      {"labels", label_map},
                      {"versions", versions}});
  }
  return Dump({{"ready", manager.Ready()}, {"models", models}});
}

double HistogramQuantile(double q, const std::vector<double>& upper_bounds,
                         const std::vector<uint64_t>& counts) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  if (total == 0 || upper_bounds.empty() ||
      counts.size() != upper_bounds.size() + 1) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (static_cast<double>(below + counts[i]) >= rank && counts[i] > 0) {
      const double lower = i == 0 ? 0.0 : upper_bounds[i - 1];
      const double within =
          (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
      return lower + (upper_bounds[i] - lower) * within;
    }
    below += counts[i];
  }
  return upper_bounds.back();  // in the +Inf bucket
}

std::string TrafficJson(const Metrics& metrics, absl::Time now) {
  const std::vector<double> bounds(Metrics::kLatencyBuckets.begin(),
                                   Metrics::kLatencyBuckets.end());
  Json methods = Json::array();
  uint64_t requests = 0, errors = 0;
  for (const Metrics::MethodSummary& m : metrics.Summaries()) {
    const std::vector<uint64_t> counts(m.buckets.begin(), m.buckets.end());
    requests += m.requests;
    errors += m.errors;
    methods.push_back(
        {{"method", m.method},
         {"requests", m.requests},
         {"errors", m.errors},
         {"mean_ms",
          Number(m.requests == 0
                     ? NAN
                     : 1e3 * m.sum_seconds / static_cast<double>(m.requests))},
         {"p50_ms", Number(1e3 * HistogramQuantile(0.5, bounds, counts))},
         {"p90_ms", Number(1e3 * HistogramQuantile(0.9, bounds, counts))},
         {"p99_ms", Number(1e3 * HistogramQuantile(0.99, bounds, counts))}});
  }
  return Dump({{"unix_seconds", absl::ToDoubleSeconds(now - absl::UnixEpoch())},
               {"requests", requests},
               {"errors", errors},
               {"methods", methods}});
}

std::string DriftJson(const ServableManager& manager, int units) {
  std::vector<Json> layers;
  for (const auto& s : manager.AllLoaded()) {
    const std::vector<DriftLayerStats> stats = s->drift().Stats();
    const std::vector<DriftLayerUnits> detail = s->drift().Units(units);
    const int64_t samples = s->drift().samples();
    for (size_t i = 0; i < stats.size() && i < detail.size(); ++i) {
      const DriftLayerStats& d = stats[i];
      layers.push_back({{"model", s->model()},
                        {"version", s->version()},
                        {"layer", d.layer},
                        {"features", d.features},
                        {"samples", samples},
                        {"mean_shift_avg", Number(d.mean_shift_avg)},
                        {"mean_shift_max", Number(d.mean_shift_max)},
                        {"variance_ratio", Number(d.variance_ratio)},
                        {"live_mean", NumberArray(detail[i].live_mean)},
                        {"live_var", NumberArray(detail[i].live_var)},
                        {"running_mean", NumberArray(detail[i].running_mean)},
                        {"running_var", NumberArray(detail[i].running_var)}});
    }
  }
  // Most drifted first (null, i.e. NaN, last); ties by model, version, layer.
  auto key = [](const Json& j) {
    return j["mean_shift_max"].is_number() ? j["mean_shift_max"].get<double>()
                                           : -1.0;
  };
  std::stable_sort(
      layers.begin(), layers.end(),
      [&](const Json& a, const Json& b) { return key(a) > key(b); });
  Json out = Json::array();
  for (Json& j : layers) out.push_back(std::move(j));
  return Dump({{"layers", out}});
}

}  // namespace bnserve::inference
