// The registry of training jobs that trainer replicas on one store share:
// a summary of each job (opaque bytes, a serialized v1::Job), a cancel
// request flag, and a lease that names the one replica allowed to step,
// checkpoint or cancel the job at a time.
//
// Lease contract (tests/store/store_conformance_test.cc checks it on every
// backend):
// - Acquire(owner, ttl) takes a free or expired lease, or renews the
//   caller's own; it never takes a live lease from another owner (it then
//   answers who holds it and for how long).
// - Renew(owner) extends the caller's lease; ABORTED once the lease has
//   expired or passed to another owner (the caller must stop at once).
// - Release(owner) frees the caller's lease, never another's.
// - A lease that is not renewed expires after its ttl, so a replica that
//   dies stops owning its jobs within one ttl; another replica then takes
//   them over (Acquire).
// A replica that cannot renew must consider its lease lost before the ttl
// has passed on its own clock (JobManager stops stepping at 90% of it).
//
// Backends: Redis (shared by every trainer on the store: keys
// `bnserve:{<model>}:job:<id>` (hash: summary, cancel) and
// `bnserve:{<model>}:lease:<id>` (owner, with PX expiry) in the model's hash
// tag, and two keys outside any tag, each written by single-key commands:
// the index `bnserve:jobs` (hash job id -> model) and the counter
// `bnserve:jobs:next`); file and mem: in-process (one trainer per file store
// directory; mem:// stores of one name share it within the process).
//
// Thread safety: every method may be called concurrently.
#ifndef BNSERVE_STORE_JOB_REGISTRY_H_
#define BNSERVE_STORE_JOB_REGISTRY_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace bnserve::store {

// Who holds a job's lease and for how long still ("" and zero: nobody).
struct JobLease {
  std::string owner;
  absl::Duration remaining = absl::ZeroDuration();
};

// One job as the registry knows it.
struct JobEntry {
  std::string model;
  std::string job_id;
  std::string summary;  // as last put (empty if never)
  bool cancel_requested = false;
  JobLease lease;
};

class JobRegistry {
 public:
  virtual ~JobRegistry() = default;

  // Whether other processes see this registry (Redis).
  virtual bool shared() const = 0;

  // A job number never handed out before by this registry (1, 2, ...).
  virtual absl::StatusOr<int64_t> NextJobNumber() = 0;

  // Takes or renews the lease of the job for `owner` (see the file
  // comment) and returns the lease as it is now: `owner` holds it iff
  // lease.owner == owner. INVALID_ARGUMENT for bad names, an empty owner
  // or a ttl under 1 ms.
  virtual absl::StatusOr<JobLease> Acquire(std::string_view model,
                                           std::string_view job_id,
                                           std::string_view owner,
                                           absl::Duration ttl) = 0;
  // Extends `owner`'s lease to `ttl` from now and, if `summary` is not
  // empty, stores it as the job's summary. Returns whether a cancel was
  // requested (RequestCancel). ABORTED if `owner` does not hold the lease.
  virtual absl::StatusOr<bool> Renew(std::string_view model,
                                     std::string_view job_id,
                                     std::string_view owner, absl::Duration ttl,
                                     std::string_view summary) = 0;
  // Frees the lease if `owner` holds it; OK otherwise too.
  virtual absl::Status Release(std::string_view model, std::string_view job_id,
                               std::string_view owner) = 0;

  // Registers the job (model and id) and stores its summary; with
  // `only_if_absent`, leaves an existing summary as it is.
  virtual absl::Status Put(std::string_view model, std::string_view job_id,
                           std::string_view summary, bool only_if_absent) = 0;
  // NOT_FOUND for an unknown job.
  virtual absl::StatusOr<JobEntry> Get(std::string_view job_id) = 0;
  // Every registered job, sorted by job id.
  virtual absl::StatusOr<std::vector<JobEntry>> List() = 0;
  // Flags the job for its owner to cancel (Renew reports it). NOT_FOUND for
  // an unknown job.
  virtual absl::Status RequestCancel(std::string_view job_id) = 0;
  // Forgets the job, its summary and its lease (idempotent).
  virtual absl::Status Remove(std::string_view model,
                              std::string_view job_id) = 0;
};

// INVALID_ARGUMENT unless model and job id follow the name rule, the owner
// is 1..256 bytes and ttl >= 1 ms.
absl::Status ValidateLeaseArgs(std::string_view model, std::string_view job_id,
                               std::string_view owner, absl::Duration ttl);

// The in-process registry of the file and mem backends.
class LocalJobRegistry final : public JobRegistry {
 public:
  bool shared() const override { return false; }
  absl::StatusOr<int64_t> NextJobNumber() override;
  absl::StatusOr<JobLease> Acquire(std::string_view model,
                                   std::string_view job_id,
                                   std::string_view owner,
                                   absl::Duration ttl) override;
  absl::StatusOr<bool> Renew(std::string_view model, std::string_view job_id,
                             std::string_view owner, absl::Duration ttl,
                             std::string_view summary) override;
  absl::Status Release(std::string_view model, std::string_view job_id,
                       std::string_view owner) override;
  absl::Status Put(std::string_view model, std::string_view job_id,
                   std::string_view summary, bool only_if_absent) override;
  absl::StatusOr<JobEntry> Get(std::string_view job_id) override;
  absl::StatusOr<std::vector<JobEntry>> List() override;
  absl::Status RequestCancel(std::string_view job_id) override;
  absl::Status Remove(std::string_view model, std::string_view job_id) override;

 private:
  struct Job {
    std::string model;
    std::string summary;
    bool registered = false;  // Put: visible to Get, List, RequestCancel
    bool cancel = false;
    std::string owner;
    absl::Time expires = absl::InfinitePast();
  };
  // The entry of the job (created if absent); the lease cleared if expired.
  Job& Entry(std::string_view model, std::string_view job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobEntry ToEntry(const std::string& job_id, const Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, Job, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::store

#endif  // BNSERVE_STORE_JOB_REGISTRY_H_
