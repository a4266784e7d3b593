// The state of one training job, shared by the JobManager, its training
// and recalibration sessions. Internal to server/trainer; defined in a
// header so that thread-safety annotations on `job->mu` in job_manager.h
// see a complete type (clang's analysis needs it).
#ifndef BNSERVE_SERVER_TRAINER_JOB_STATE_H_
#define BNSERVE_SERVER_TRAINER_JOB_STATE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bnserve/v1/trainer.pb.h"
#include "model/trainer.h"
#include "server/trainer/job_history.h"
#include "store/store.h"

namespace bnserve::server::internal {

struct JobState : std::enable_shared_from_this<JobState> {
  absl::Mutex mu;
  std::string id;
  std::string model;
  std::optional<model::Trainer> trainer ABSL_GUARDED_BY(mu);
  v1::Job::State state ABSL_GUARDED_BY(mu) = v1::Job::IDLE;
  bool stream_open ABSL_GUARDED_BY(mu) = false;
  v1::PublishPolicy policy;
  int64_t parent_version = 0;
  int64_t last_published ABSL_GUARDED_BY(mu) = 0;
  int64_t last_published_step ABSL_GUARDED_BY(mu) = -1;
  double last_loss ABSL_GUARDED_BY(mu) =
      std::numeric_limits<double>::quiet_NaN();
  double last_accuracy ABSL_GUARDED_BY(mu) = 0.0;
  absl::Time created;
  v1::NetworkSpec spec;
  v1::OptimizerSpec optimizer;
  std::vector<std::string> feature_names;
  std::vector<std::string> class_names;

  // Checkpoints: the store they go to (null: this job is not checkpointed),
  // the steps between two (<= 0: only at creation and publishes), the steps
  // of the checkpoints stored (ascending; the newest two are kept, so a
  // corrupt newest one falls back to the one before), and how often the
  // job was restored from one.
  store::SnapshotStore* checkpoint_store = nullptr;
  int64_t checkpoint_every = 0;
  std::vector<int64_t> checkpoint_steps ABSL_GUARDED_BY(mu);
  int64_t resumes ABSL_GUARDED_BY(mu) = 0;
  // Leases (trainers sharing the store's job registry; see JobManager):
  // whether this job takes part, and until when (unix ns, a margin before
  // the registry's expiry) this trainer holds its lease; 0 = not held. A
  // copy of a job whose lease is not held here is dormant: it never steps,
  // checkpoints or removes checkpoints.
  bool uses_leases = false;
  std::atomic<int64_t> lease_until_ns{0};
  bool HoldsLease() const {
    return !uses_leases ||
           lease_until_ns.load() > absl::ToUnixNanos(absl::Now());
  }
  // The last checkpoint write failed (with this error): retry at each step.
  bool checkpoint_pending ABSL_GUARDED_BY(mu) = false;
  std::string checkpoint_error ABSL_GUARDED_BY(mu);

  // What the dashboard draws (internally synchronized, so not under mu).
  JobHistory history;

  // Last create, step, publish, cancel or stream close (retention).
  absl::Time last_active ABSL_GUARDED_BY(mu);
  // Steps and examples of a cancelled job, whose trainer is freed.
  int64_t final_steps ABSL_GUARDED_BY(mu) = 0;
  int64_t final_examples ABSL_GUARDED_BY(mu) = 0;

  // What GetJob and ListJobs answer: refreshed (under mu) whenever the job
  // changes, read under its own mutex, so that they never wait for a step.
  absl::Mutex info_mu ABSL_ACQUIRED_AFTER(mu);
  v1::Job summary ABSL_GUARDED_BY(info_mu);
  // Set by CancelJob without waiting for a running step; the step applies it
  // when it ends.
  std::atomic<bool> cancel_requested{false};
  // Ends the open training stream at once (set by its session's owner, the
  // gRPC reactor), so that an idle stream does not wait for its next
  // minibatch to learn that the job was cancelled or the trainer stops.
  absl::Mutex hook_mu ABSL_ACQUIRED_AFTER(mu);
  std::function<void(const absl::Status&)> end_stream ABSL_GUARDED_BY(hook_mu);

  // Brings `summary` up to date. The fields fixed at creation (identity,
  // spec, optimizer, policy) are copied once; every training step only
  // rewrites the few that change, without allocating.
  void Refresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    absl::MutexLock lock(&info_mu);
    if (!summary_has_identity) {
      FillIdentity(summary);
      summary_has_identity = true;
    }
    FillStatus(summary);
  }
  v1::Job Summary() {
    absl::MutexLock lock(&info_mu);
    return summary;
  }
  void EndStream(const absl::Status& status) {
    absl::MutexLock lock(&hook_mu);
    if (end_stream) end_stream(status);
  }

  // Removes the job's checkpoints from the store (best effort: a leftover
  // is restored by the next trainer and expires with the job's retention).
  void DropCheckpoints() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (checkpoint_store == nullptr || !HoldsLease()) return;
    for (int64_t step : checkpoint_steps) {
      (void)checkpoint_store->DeleteCheckpoint(model, id, step);
    }
    checkpoint_steps.clear();
  }

  // CANCELLED, the network and optimizer state freed, the checkpoints
  // removed.
  void Cancel(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    DropCheckpoints();
    state = v1::Job::CANCELLED;
    last_active = now;
    if (trainer.has_value()) {
      final_steps = trainer->steps();
      final_examples = trainer->examples_seen();
      trainer.reset();
    }
  }

  v1::Job ToProto() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    v1::Job job;
    FillIdentity(job);
    FillStatus(job);
    return job;
  }

 private:
  // What is fixed once the job exists (set before it is first refreshed).
  void FillIdentity(v1::Job& job) const {
    job.set_job_id(id);
    job.set_model(model);
    job.set_parent_version(parent_version);
    job.mutable_created()->set_seconds(absl::ToUnixSeconds(created));
    *job.mutable_spec() = spec;
    *job.mutable_optimizer() = optimizer;
    *job.mutable_publish() = policy;
  }

  // What a step, publish, checkpoint or cancel changes.
  void FillStatus(v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    job.set_state(state);
    job.set_steps(trainer.has_value() ? trainer->steps() : final_steps);
    job.set_examples_seen(trainer.has_value() ? trainer->examples_seen()
                                              : final_examples);
    job.set_last_loss(last_loss);
    job.set_last_accuracy(last_accuracy);
    job.set_last_published_version(last_published);
    job.set_checkpoint_step(checkpoint_steps.empty() ? -1
                                                     : checkpoint_steps.back());
    job.set_resumes(resumes);
    job.set_last_published_step(last_published_step);
    job.set_checkpoint_error(checkpoint_error);
  }

  bool summary_has_identity ABSL_GUARDED_BY(info_mu) = false;
};

}  // namespace bnserve::server::internal

#endif  // BNSERVE_SERVER_TRAINER_JOB_STATE_H_
