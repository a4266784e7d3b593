// JobManager's shared jobs: leases in the store's job registry, taking a
// job over from another trainer, the renewer thread (see job_manager.h).
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "server/common/server_setup.h"
#include "server/trainer/job_manager.h"

namespace bnserve::server {
namespace {

// UNAVAILABLE: another live trainer holds the job.
absl::Status HeldElsewhere(const std::string& job_id,
                           const store::JobLease& lease) {
  return absl::UnavailableError(absl::StrCat(
      "job ", job_id, " is held by trainer replica ", lease.owner,
      " (its lease has ",
      absl::FormatDuration(absl::Trunc(lease.remaining, absl::Milliseconds(1))),
      " left); retry: the job continues here once that replica releases it ",
      "or its lease expires"));
}

// The registry summary of a job; nullopt if it has none that parses.
std::optional<v1::Job> ParseSummary(const store::JobEntry& entry) {
  v1::Job job;
  if (entry.summary.empty() || !job.ParseFromString(entry.summary)) {
    return std::nullopt;
  }
  return job;
}

}  // namespace

void JobManager::NoteLease(Job& job, absl::Time acquired_at) {
  job.lease_until_ns = absl::ToUnixNanos(acquired_at + options_.lease * 0.9);
}

void JobManager::PutSummary(Job& job) {
  if (!leases()) return;
  std::string summary;
  if (!job.Summary().SerializeToString(&summary)) return;
  if (absl::Status s = registry_->Put(job.model, job.id, summary, false);
      !s.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("job registry: summary of ", job.id, ": ", s.ToString()));
  }
}

absl::StatusOr<std::shared_ptr<JobManager::Job>> JobManager::Reload(
    const std::string& model, const std::string& job_id) {
  BNSERVE_ASSIGN_OR_RETURN(std::vector<store::CheckpointRef> refs,
                           store_->ListCheckpoints());
  std::vector<int64_t> steps;
  for (const store::CheckpointRef& ref : refs) {
    if (ref.model == model && ref.job_id == job_id) steps.push_back(ref.step);
  }
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job,
                           LoadNewest(model, job_id, steps));
  absl::MutexLock lock(&mu_);
  if (jobs_.count(job_id) == 0) order_.push_back(job_id);
  jobs_[job_id] = job;
  Log(LogLevel::kInfo,
      absl::StrCat("took over job ", job_id, " of '", model,
                   "' from its checkpoint at step ", job->Summary().steps()));
  return job;
}

absl::StatusOr<std::shared_ptr<JobManager::Job>> JobManager::Claim(
    const std::string& job_id, std::string* held_by, bool* took_over) {
  absl::StatusOr<std::shared_ptr<Job>> local = FindJob(job_id);
  if (!leases() || (!local.ok() && !absl::IsNotFound(local.status()))) {
    return local;
  }
  absl::StatusOr<store::JobEntry> entry = registry_->Get(job_id);
  if (!entry.ok() && !absl::IsNotFound(entry.status())) return entry.status();
  if (!local.ok() && !entry.ok()) return local.status();
  if (local.ok() && !entry.ok() && !(*local)->HoldsLease()) {
    ForgetDeleted(job_id);  // deleted by another trainer
    return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  }
  const std::string model = local.ok() ? (*local)->model : entry->model;
  const bool was_held = local.ok() && (*local)->HoldsLease();
  const absl::Time acquired_at = absl::Now();
  BNSERVE_ASSIGN_OR_RETURN(
      store::JobLease lease,
      registry_->Acquire(model, job_id, options_.replica_id, options_.lease));
  if (lease.owner != options_.replica_id) {
    if (held_by != nullptr) *held_by = lease.owner;
    return HeldElsewhere(job_id, lease);
  }
  std::optional<v1::Job> remote;
  if (entry.ok()) remote = ParseSummary(*entry);
  if (remote.has_value() && remote->state() == v1::Job::CANCELLED) {
    if (local.ok()) (*local)->cancel_requested = true;
    (void)registry_->Release(model, job_id, options_.replica_id);
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " is cancelled"));
  }
  std::shared_ptr<Job> job;
  if (local.ok() &&
      (was_held || !remote.has_value() ||
       remote->checkpoint_step() == (*local)->Summary().checkpoint_step())) {
    job = *local;
    if (took_over != nullptr && !was_held && remote.has_value()) {
      *took_over = remote->steps() != job->Summary().steps();
    }
  } else {
    if (took_over != nullptr) *took_over = true;
    absl::StatusOr<std::shared_ptr<Job>> loaded = Reload(model, job_id);
    if (!loaded.ok()) {
      (void)registry_->Release(model, job_id, options_.replica_id);
      return loaded.status();
    }
    job = *std::move(loaded);
  }
  NoteLease(*job, acquired_at);
  if (!was_held) PutSummary(*job);  // this trainer speaks for the job now
  return job;
}

void JobManager::ReleaseIfIdle(Job& job) {
  if (!leases() || job.stream_open || job.lease_until_ns.load() == 0) return;
  if (job.state != v1::Job::CANCELLED && job.trainer.has_value() &&
      !Checkpoint(job).ok()) {
    return;  // keep the lease: the renewer retries
  }
  job.Refresh();
  PutSummary(job);
  if (registry_->Release(job.model, job.id, options_.replica_id).ok()) {
    job.lease_until_ns = 0;
  }
}

v1::Job JobManager::Merge(const std::shared_ptr<Job>& local,
                          const store::JobEntry& entry) {
  std::optional<v1::Job> remote = ParseSummary(entry);
  const bool other_owner =
      !entry.lease.owner.empty() && entry.lease.owner != options_.replica_id;
  v1::Job out;
  if (local != nullptr &&
      (local->HoldsLease() || !remote.has_value() ||
       (!other_owner &&
        remote->checkpoint_step() == local->Summary().checkpoint_step()))) {
    out = local->Summary();
  } else if (remote.has_value()) {
    out = *std::move(remote);
  } else {
    out.set_job_id(entry.job_id);
    out.set_model(entry.model);
  }
  out.set_owner(local != nullptr && local->uses_leases && local->HoldsLease()
                    ? options_.replica_id
                    : entry.lease.owner);
  return out;
}

void JobManager::RenewOne(Job& job) {
  const int64_t held = job.lease_until_ns.load();
  if (held == 0) return;
  const absl::Time renewing_at = absl::Now();
  std::string summary;
  (void)job.Summary().SerializeToString(&summary);
  absl::StatusOr<bool> cancel = registry_->Renew(
      job.model, job.id, options_.replica_id, options_.lease, summary);
  if (absl::IsAborted(cancel.status())) {
    int64_t expected = held;
    if (!job.lease_until_ns.compare_exchange_strong(expected, 0)) {
      return;  // released (or taken again) meanwhile: nothing was lost
    }
    Log(LogLevel::kWarning, absl::StrCat("lost the lease of job ", job.id, ": ",
                                         cancel.status().message()));
    job.EndStream(absl::UnavailableError(
        absl::StrCat("job ", job.id, " lost its lease on this trainer; ",
                     "resume it: it continues from its last checkpoint")));
    return;
  }
  if (!cancel.ok()) {
    Log(LogLevel::kWarning, absl::StrCat("renewing the lease of job ", job.id,
                                         ": ", cancel.status().ToString()));
    return;  // the lease runs out by itself unless a later renewal works
  }
  int64_t expected = held;
  job.lease_until_ns.compare_exchange_strong(
      expected, absl::ToUnixNanos(renewing_at + options_.lease * 0.9));
  if (*cancel) {
    job.cancel_requested = true;
    job.EndStream(
        absl::CancelledError(absl::StrCat("job ", job.id, " was cancelled")));
  }
  if (job.mu.TryLock()) {  // a busy job is released when its stream ends
    if (job.cancel_requested && job.state != v1::Job::CANCELLED &&
        !job.stream_open) {
      job.Cancel(options_.now());
    }
    ReleaseIfIdle(job);
    job.mu.Unlock();
  }
}

void JobManager::RenewLoop() {
  const absl::Duration period = options_.lease / 3;
  while (true) {
    {
      absl::MutexLock lock(&renew_mu_);
      if (renew_mu_.AwaitWithTimeout(absl::Condition(&stop_renewer_), period)) {
        return;
      }
    }
    std::vector<std::shared_ptr<Job>> jobs;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, job] : jobs_) jobs.push_back(job);
    }
    for (const auto& job : jobs) RenewOne(*job);
  }
}

void JobManager::ForgetExpired(Job& job) {
  if (!job.uses_leases || job.state == v1::Job::CANCELLED) {
    job.DropCheckpoints();
    return;
  }
  absl::StatusOr<store::JobEntry> entry = registry_->Get(job.id);
  std::optional<v1::Job> remote;
  if (entry.ok()) remote = ParseSummary(*entry);
  if (remote.has_value() &&
      remote->checkpoint_step() != job.Summary().checkpoint_step()) {
    return;  // another trainer advanced it: only this copy is forgotten
  }
  const absl::Time acquired_at = absl::Now();
  absl::StatusOr<store::JobLease> lease = registry_->Acquire(
      job.model, job.id, options_.replica_id, options_.lease);
  if (!lease.ok() || lease->owner != options_.replica_id) return;
  NoteLease(job, acquired_at);
  job.DropCheckpoints();
  (void)registry_->Remove(job.model, job.id);
  job.lease_until_ns = 0;
}

}  // namespace bnserve::server
