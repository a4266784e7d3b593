#include "server/trainer/dashboard_json.h"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/common/prometheus.h"

namespace bnserve::server {
namespace {

using Json = nlohmann::json;

Json Number(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }

Json Floats(const std::vector<float>& values) {
  Json out = Json::array();
  for (float v : values) out.push_back(Number(v));
  return out;
}

Json JobJson(const v1::Job& job) {
  return {{"job_id", job.job_id()},
          {"model", job.model()},
          {"state", v1::Job::State_Name(job.state())},
          {"steps", job.steps()},
          {"examples_seen", job.examples_seen()},
          {"last_loss", Number(job.last_loss())},
          {"last_accuracy", Number(job.last_accuracy())},
          {"last_published_version", job.last_published_version()},
          {"parent_version", job.parent_version()},
          {"created", job.created().seconds()}};
}

Json PointJson(const HistoryPoint& p) {
  Json bn = Json::array();
  for (const BatchNormHistory& h : p.layers) {
    bn.push_back({{"running_mean", Floats(h.running_mean)},
                  {"running_var", Floats(h.running_var)},
                  {"batch_mean", Floats(h.batch_mean)},
                  {"batch_var", Floats(h.batch_var)}});
  }
  return {{"step", p.step},
          {"loss", Number(p.loss)},
          {"accuracy", Number(p.accuracy)},
          {"time", p.unix_seconds},
          {"bn", bn}};
}

std::string Dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

std::string JobsJson(const std::vector<v1::Job>& jobs) {
  Json list = Json::array();
  for (const v1::Job& job : jobs) list.push_back(JobJson(job));
  return Dump({{"history_points", kJobHistoryPoints}, {"jobs", list}});
}

std::string JobGaugesPrometheus(const std::vector<v1::Job>& jobs) {
  std::string out;
  struct Series {
    const char* name;
    const char* help;
    double (*value)(const v1::Job&);
  };
  const Series series[] = {
      {"steps", "Training steps the job has taken.",
       [](const v1::Job& j) { return static_cast<double>(j.steps()); }},
      {"examples_seen", "Training examples the job has seen.",
       [](const v1::Job& j) { return static_cast<double>(j.examples_seen()); }},
      {"loss", "Loss of the job's last training step.",
       [](const v1::Job& j) { return j.last_loss(); }},
      {"accuracy", "Minibatch accuracy of the job's last training step.",
       [](const v1::Job& j) { return j.last_accuracy(); }},
      {"published_version", "Last version the job published (0 = none).",
       [](const v1::Job& j) {
         return static_cast<double>(j.last_published_version());
       }}};
  for (const Series& s : series) {
    const std::string name = absl::StrCat("bnserve_trainer_job_", s.name);
    absl::StrAppend(&out, PrometheusHeader(name, "gauge", s.help));
    for (const v1::Job& job : jobs) {
      absl::StrAppend(&out, name, "{job=\"", PrometheusEscape(job.job_id()),
                      "\",model=\"", PrometheusEscape(job.model()), "\"} ",
                      PrometheusNumber(s.value(job)), "\n");
    }
  }
  return out;
}

std::string JobHistoryJson(const v1::Job& job, const JobHistory::View& history,
                           int capacity) {
  Json layers = Json::array();
  for (const BatchNormLayerInfo& l : history.batch_norm) {
    layers.push_back({{"layer", l.layer},
                      {"features", l.features},
                      {"units", l.units},
                      {"momentum", Number(l.momentum)},
                      {"average", l.cumulative ? "cumulative" : "ema"}});
  }
  Json points = Json::array();
  for (const HistoryPoint& p : history.points) points.push_back(PointJson(p));
  Json publishes = Json::array();
  for (const PublishMark& m : history.publishes) {
    publishes.push_back(
        {{"step", m.step}, {"version", m.version}, {"origin", m.origin}});
  }
  return Dump(
      {{"job", JobJson(job)},
       {"stride", history.stride},
       {"capacity", capacity},
       {"batch_norm", layers},
       {"points", points},
       {"latest", history.latest.has_value() ? PointJson(*history.latest)
                                             : Json(nullptr)},
       {"publishes", publishes}});
}

}  // namespace bnserve::server
