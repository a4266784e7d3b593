#include "store/job_registry.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "store/store.h"
#include "store/strings.h"

namespace bnserve::store {

absl::Status ValidateLeaseArgs(std::string_view model, std::string_view job_id,
                               std::string_view owner, absl::Duration ttl) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  if (owner.empty() || owner.size() > 256) {
    return absl::InvalidArgumentError(
        Cat("a lease owner is 1 to 256 bytes, got ", owner.size()));
  }
  if (ttl < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        Cat("a lease lasts at least 1 ms, got ", absl::FormatDuration(ttl)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LocalJobRegistry::NextJobNumber() {
  absl::MutexLock lock(&mu_);
  return ++next_;
}

LocalJobRegistry::Job& LocalJobRegistry::Entry(std::string_view model,
                                               std::string_view job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    it = jobs_.emplace(std::string(job_id), Job{}).first;
    it->second.model = std::string(model);
  }
  if (it->second.expires <= absl::Now()) it->second.owner.clear();
  return it->second;
}

JobEntry LocalJobRegistry::ToEntry(const std::string& job_id,
                                   const Job& job) const {
  JobEntry e{job.model, job_id, job.summary, job.cancel, {}};
  const absl::Duration left = job.expires - absl::Now();
  if (!job.owner.empty() && left > absl::ZeroDuration()) {
    e.lease = {job.owner, left};
  }
  return e;
}

absl::StatusOr<JobLease> LocalJobRegistry::Acquire(std::string_view model,
                                                   std::string_view job_id,
                                                   std::string_view owner,
                                                   absl::Duration ttl) {
  BNSERVE_RETURN_IF_ERROR(ValidateLeaseArgs(model, job_id, owner, ttl));
  absl::MutexLock lock(&mu_);
  Job& job = Entry(model, job_id);
  if (job.owner.empty() || job.owner == owner) {
    job.owner = std::string(owner);
    job.expires = absl::Now() + ttl;
  }
  return JobLease{job.owner, job.expires - absl::Now()};
}

absl::StatusOr<bool> LocalJobRegistry::Renew(std::string_view model,
                                             std::string_view job_id,
                                             std::string_view owner,
                                             absl::Duration ttl,
                                             std::string_view summary) {
  BNSERVE_RETURN_IF_ERROR(ValidateLeaseArgs(model, job_id, owner, ttl));
  absl::MutexLock lock(&mu_);
  Job& job = Entry(model, job_id);
  if (job.owner != owner) {
    return absl::AbortedError(Cat(
        "the lease of job ", job_id, " of '", model, "' is not held by ", owner,
        job.owner.empty() ? " (it expired)" : Cat(" but by ", job.owner)));
  }
  job.expires = absl::Now() + ttl;
  if (!summary.empty()) job.summary = std::string(summary);
  return job.cancel;
}

absl::Status LocalJobRegistry::Release(std::string_view model,
                                       std::string_view job_id,
                                       std::string_view owner) {
  BNSERVE_RETURN_IF_ERROR(
      ValidateLeaseArgs(model, job_id, owner, absl::Milliseconds(1)));
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it != jobs_.end() && it->second.owner == owner) {
    it->second.owner.clear();
    it->second.expires = absl::InfinitePast();
  }
  return absl::OkStatus();
}

absl::Status LocalJobRegistry::Put(std::string_view model,
                                   std::string_view job_id,
                                   std::string_view summary,
                                   bool only_if_absent) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  absl::MutexLock lock(&mu_);
  Job& job = Entry(model, job_id);
  if (!only_if_absent || !job.registered) job.summary = std::string(summary);
  job.registered = true;
  return absl::OkStatus();
}

absl::StatusOr<JobEntry> LocalJobRegistry::Get(std::string_view job_id) {
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || !it->second.registered) {
    return absl::NotFoundError(Cat("no job '", job_id, "' in the registry"));
  }
  return ToEntry(it->first, it->second);
}

absl::StatusOr<std::vector<JobEntry>> LocalJobRegistry::List() {
  absl::MutexLock lock(&mu_);
  std::vector<JobEntry> out;
  for (const auto& [id, job] : jobs_) {
    if (job.registered) out.push_back(ToEntry(id, job));
  }
  return out;
}

absl::Status LocalJobRegistry::RequestCancel(std::string_view job_id) {
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || !it->second.registered) {
    return absl::NotFoundError(Cat("no job '", job_id, "' in the registry"));
  }
  it->second.cancel = true;
  return absl::OkStatus();
}

absl::Status LocalJobRegistry::Remove(std::string_view model,
                                      std::string_view job_id) {
  BNSERVE_RETURN_IF_ERROR(ValidateModelName(model));
  BNSERVE_RETURN_IF_ERROR(ValidateJobId(job_id));
  absl::MutexLock lock(&mu_);
  if (auto it = jobs_.find(job_id); it != jobs_.end()) jobs_.erase(it);
  return absl::OkStatus();
}

}  // namespace bnserve::store
