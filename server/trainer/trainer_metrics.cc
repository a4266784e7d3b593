#include "server/trainer/trainer_metrics.h"

#include "absl/strings/str_cat.h"

namespace bnserve::server {
namespace {

constexpr char kPrefix[] = "bnserve_trainer_";

void Counter(const std::string& name, const std::string& help, int64_t value,
             std::string* out) {
  absl::StrAppend(out, "# HELP ", kPrefix, name, " ", help, "\n# TYPE ",
                  kPrefix, name, " counter\n", kPrefix, name, " ", value, "\n");
}

}  // namespace

void TrainerMetrics::Histogram::Add(absl::Duration d) {
  const double seconds = absl::ToDoubleSeconds(d);
  size_t i = 0;
  while (i < kBuckets.size() && seconds > kBuckets[i]) ++i;
  ++counts[i];
  sum += seconds;
}

void TrainerMetrics::Histogram::Render(const std::string& name,
                                       const std::string& help,
                                       std::string* out) const {
  absl::StrAppend(out, "# HELP ", kPrefix, name, " ", help, "\n# TYPE ",
                  kPrefix, name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    cumulative += counts[i];
    absl::StrAppend(out, kPrefix, name, "_bucket{le=\"", kBuckets[i], "\"} ",
                    cumulative, "\n");
  }
  cumulative += counts.back();
  absl::StrAppend(out, kPrefix, name, "_bucket{le=\"+Inf\"} ", cumulative, "\n",
                  kPrefix, name, "_sum ", sum, "\n", kPrefix, name, "_count ",
                  cumulative, "\n");
}

void TrainerMetrics::RecordCheckpoint(bool ok, absl::Duration latency) {
  absl::MutexLock lock(&mu_);
  if (!ok) {
    ++checkpoint_failures_;
    return;
  }
  ++checkpoints_;
  checkpoint_latency_.Add(latency);
}

void TrainerMetrics::RecordPublish(absl::Duration latency) {
  absl::MutexLock lock(&mu_);
  ++publishes_;
  publish_latency_.Add(latency);
}

std::string TrainerMetrics::Render(
    const std::map<std::string, int64_t>& jobs_by_state) const {
  std::string out;
  absl::StrAppend(&out, "# HELP ", kPrefix,
                  "jobs Jobs this trainer lists, by state.\n# TYPE ", kPrefix,
                  "jobs gauge\n");
  for (const auto& [state, n] : jobs_by_state) {
    absl::StrAppend(&out, kPrefix, "jobs{state=\"", state, "\"} ", n, "\n");
  }
  Counter("steps_total", "Training steps applied.", steps_.load(), &out);
  Counter("examples_total", "Examples trained on.", examples_.load(), &out);
  Counter("resumes_total", "Jobs restored or taken over from a checkpoint.",
          resumes_.load(), &out);
  absl::MutexLock lock(&mu_);
  Counter("checkpoints_total", "Checkpoints written.", checkpoints_, &out);
  Counter("checkpoint_failures_total", "Checkpoint writes that failed.",
          checkpoint_failures_, &out);
  checkpoint_latency_.Render("checkpoint_duration_seconds",
                             "Time to write one checkpoint.", &out);
  Counter("publishes_total", "Versions published.", publishes_, &out);
  publish_latency_.Render("publish_duration_seconds",
                          "Time to publish one version.", &out);
  return out;
}

}  // namespace bnserve::server
