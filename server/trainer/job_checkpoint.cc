// JobManager's checkpoints: writing a job into a v1::JobCheckpoint in the
// store, and rebuilding jobs from them when a trainer starts.
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "model/status_macros.h"
#include "server/common/server_setup.h"
#include "server/trainer/job_manager.h"

namespace bnserve::server {
namespace {

// How many checkpoints of a job the store keeps: the newest, and the one
// before it in case the newest is found corrupt.
constexpr size_t kCheckpointsKept = 2;

v1::JobCheckpoint ToCheckpoint(internal::JobState& job)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu) {
  const model::Trainer& trainer = *job.trainer;
  v1::JobCheckpoint c;
  c.set_job_id(job.id);
  c.set_model(job.model);
  *c.mutable_network() = trainer.network().ToSnapshot();
  model::TrainerState state = trainer.ExportState();
  c.set_steps(state.steps);
  c.set_examples_seen(state.examples_seen);
  for (std::vector<float>& m : state.moment1) {
    c.add_moment1()->mutable_values()->Assign(m.begin(), m.end());
  }
  for (std::vector<float>& m : state.moment2) {
    c.add_moment2()->mutable_values()->Assign(m.begin(), m.end());
  }
  *c.mutable_optimizer() = job.optimizer;
  *c.mutable_publish() = job.policy;
  c.set_parent_version(job.parent_version);
  c.set_last_published_version(job.last_published);
  c.set_last_published_step(job.last_published_step);
  c.set_last_loss(job.last_loss);
  c.set_last_accuracy(job.last_accuracy);
  for (const std::string& n : job.feature_names) c.add_feature_names(n);
  for (const std::string& n : job.class_names) c.add_class_names(n);
  c.mutable_created()->set_seconds(absl::ToUnixSeconds(job.created));
  c.set_checkpoint_every(job.checkpoint_every);
  *c.mutable_spec() = job.spec;
  c.set_resumes(job.resumes);
  return c;
}

std::vector<float> Values(const v1::FloatValues& v) {
  return std::vector<float>(v.values().begin(), v.values().end());
}

// The number N of a job id "job-N", 0 for anything else.
int64_t JobNumber(absl::string_view id) {
  int64_t n = 0;
  if (!absl::ConsumePrefix(&id, "job-") || !absl::SimpleAtoi(id, &n)) return 0;
  return std::max<int64_t>(0, n);
}

}  // namespace

absl::Status JobManager::Checkpoint(Job& job) {
  if (job.checkpoint_store == nullptr || !job.trainer.has_value()) {
    return absl::OkStatus();
  }
  const int64_t step = job.trainer->steps();
  if (!job.checkpoint_steps.empty() && job.checkpoint_steps.back() == step) {
    return absl::OkStatus();
  }
  if (!job.HoldsLease()) {  // another trainer may own the job by now
    return absl::UnavailableError(absl::StrCat(
        "job ", job.id, " is not held by this trainer: no checkpoint"));
  }
  std::string payload;
  if (!ToCheckpoint(job).SerializeToString(&payload)) {
    return absl::InternalError(
        absl::StrCat("cannot serialize the checkpoint of job ", job.id));
  }
  const absl::Time started = absl::Now();
  absl::Status s = store_->WriteCheckpoint(job.model, job.id, step, payload);
  metrics_.RecordCheckpoint(s.ok(), absl::Now() - started);
  if (!s.ok()) {
    s = absl::Status(
        s.code(), absl::StrCat("checkpoint of job ", job.id, " at step ", step,
                               ": ", s.message()));
    if (!job.checkpoint_pending) Log(LogLevel::kWarning, s.ToString());
    job.checkpoint_pending = true;
    job.checkpoint_error = s.ToString();
    return s;
  }
  if (job.checkpoint_pending) {
    Log(LogLevel::kInfo,
        absl::StrCat("job ", job.id, " checkpointed again ", "at step ", step));
  }
  job.checkpoint_pending = false;
  job.checkpoint_error.clear();
  job.checkpoint_steps.push_back(step);
  while (job.checkpoint_steps.size() > kCheckpointsKept) {
    // Best effort: a leftover older checkpoint is only a fallback.
    (void)store_->DeleteCheckpoint(job.model, job.id,
                                   job.checkpoint_steps.front());
    job.checkpoint_steps.erase(job.checkpoint_steps.begin());
  }
  if (job.uses_leases) {
    job.Refresh();
    PutSummary(job);  // other trainers see where the job rests
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<JobManager::Job>> JobManager::LoadCheckpoint(
    const store::CheckpointRef& ref) {
  BNSERVE_ASSIGN_OR_RETURN(
      std::string payload,
      store_->ReadCheckpoint(ref.model, ref.job_id, ref.step));
  const std::string what =
      absl::StrCat("checkpoint of job ", ref.job_id, " at step ", ref.step);
  v1::JobCheckpoint c;
  if (!c.ParseFromString(payload) || c.job_id() != ref.job_id ||
      c.model() != ref.model || c.steps() != ref.step) {
    return absl::DataLossError(
        absl::StrCat(what, " does not parse or names ", "another job or step"));
  }
  auto fail = [&](const absl::Status& s) {
    return absl::DataLossError(
        absl::StrCat(what, " is not a valid job: ", s.message()));
  };
  absl::StatusOr<model::Network> network =
      model::Network::FromSnapshot(c.network());
  if (!network.ok()) return fail(network.status());
  absl::StatusOr<model::OptimizerConfig> config =
      ToOptimizerConfig(c.optimizer());
  if (!config.ok()) return fail(config.status());
  absl::StatusOr<model::Trainer> trainer =
      model::Trainer::Create(*std::move(network), *config);
  if (!trainer.ok()) return fail(trainer.status());
  model::TrainerState state{c.steps(), c.examples_seen(), {}, {}};
  for (const auto& m : c.moment1()) state.moment1.push_back(Values(m));
  for (const auto& m : c.moment2()) state.moment2.push_back(Values(m));
  if (absl::Status s = trainer->RestoreState(std::move(state)); !s.ok()) {
    return fail(s);
  }
  auto job = std::make_shared<Job>();
  job->id = c.job_id();
  job->model = c.model();
  job->policy = c.publish();
  job->parent_version = c.parent_version();
  job->created = absl::FromUnixSeconds(c.created().seconds());
  job->spec = c.spec();
  job->optimizer = c.optimizer();
  job->feature_names.assign(c.feature_names().begin(), c.feature_names().end());
  job->class_names.assign(c.class_names().begin(), c.class_names().end());
  job->checkpoint_store = store_;
  job->checkpoint_every = c.checkpoint_every();
  absl::MutexLock lock(&job->mu);
  job->trainer.emplace(*std::move(trainer));
  job->last_published = c.last_published_version();
  job->last_published_step = c.last_published_step();
  job->last_loss = c.last_loss();
  job->last_accuracy = c.last_accuracy();
  job->resumes = c.resumes() + 1;
  metrics_.RecordResume();
  job->last_active = options_.now();
  return job;
}

absl::StatusOr<std::shared_ptr<JobManager::Job>> JobManager::LoadNewest(
    const std::string& model, const std::string& job_id,
    const std::vector<int64_t>& steps) {
  std::vector<std::string> errors;
  for (auto step = steps.rbegin(); step != steps.rend(); ++step) {
    absl::StatusOr<std::shared_ptr<Job>> job =
        LoadCheckpoint({model, job_id, *step});
    if (absl::IsNotFound(job.status())) continue;  // removed meanwhile
    if (!job.ok() && !absl::IsDataLoss(job.status())) {
      return job.status();  // e.g. the store is down: never fall back then
    }
    if (!job.ok()) {
      Log(LogLevel::kWarning, job.status().ToString());
      errors.push_back(std::string(job.status().message()));
      continue;
    }
    {
      absl::MutexLock lock(&(*job)->mu);
      (*job)->checkpoint_steps.assign(steps.begin(), step.base());
      (*job)->uses_leases = leases();
      (*job)->Refresh();
    }
    // A newer, unreadable checkpoint would shadow this one next time.
    for (auto newer = step.base(); newer != steps.end(); ++newer) {
      (void)store_->DeleteCheckpoint(model, job_id, *newer);
    }
    return *std::move(job);
  }
  if (errors.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "job ", job_id, " of '", model, "' has no checkpoint in the store"));
  }
  return absl::DataLossError(absl::StrCat(
      "job ", job_id, " of '", model, "' cannot resume: every checkpoint ",
      "in the store is corrupt (", absl::StrJoin(errors, "; "), ")"));
}

absl::Status JobManager::RestoreJob(const std::string& model,
                                    const std::string& job_id,
                                    const std::vector<int64_t>& steps) {
  absl::StatusOr<std::shared_ptr<Job>> job = LoadNewest(model, job_id, steps);
  if (absl::IsNotFound(job.status())) return absl::OkStatus();
  if (!job.ok() && !absl::IsDataLoss(job.status())) return job.status();
  if (job.ok() && leases()) {
    // The registry learns where the job rests, unless another live trainer
    // holds it (its summary is newer).
    absl::StatusOr<store::JobEntry> entry = registry_->Get(job_id);
    const bool other = entry.ok() && !entry->lease.owner.empty() &&
                       entry->lease.owner != options_.replica_id;
    if (!other) PutSummary(**job);
  }
  absl::MutexLock lock(&mu_);
  next_id_ = std::max(next_id_, JobNumber(job_id) + 1);
  if (!job.ok()) {
    lost_[job_id] = job.status();
    return absl::OkStatus();
  }
  jobs_[job_id] = *std::move(job);
  order_.push_back(job_id);
  return absl::OkStatus();
}

absl::StatusOr<int> JobManager::RestoreJobs() {
  if (!options_.checkpoints) return 0;
  BNSERVE_ASSIGN_OR_RETURN(std::vector<store::CheckpointRef> refs,
                           store_->ListCheckpoints());
  std::map<std::pair<std::string, std::string>, std::vector<int64_t>> jobs;
  for (const store::CheckpointRef& ref : refs) {
    jobs[{ref.model, ref.job_id}].push_back(ref.step);
  }
  for (auto& [key, steps] : jobs) {
    std::sort(steps.begin(), steps.end());
    BNSERVE_RETURN_IF_ERROR(RestoreJob(key.first, key.second, steps));
  }
  absl::MutexLock lock(&mu_);
  return static_cast<int>(jobs_.size());
}

}  // namespace bnserve::server
