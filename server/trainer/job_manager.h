// Training jobs: the trainer's core, independent of gRPC.
//
// A job owns a model::Trainer (network + optimizer state) and a publish
// policy. Training happens through a TrainingSession (one open session per
// job at a time); publishing writes a snapshot with provenance to the store.
// Recalibration computes exact population statistics on a copy of the job's
// network and publishes them as a new version.
//
// Durability (JobManagerOptions::checkpoints): every job is checkpointed into
// the store (network, running statistics, optimizer state, counters, policy;
// see v1::JobCheckpoint) when created, every checkpoint_every steps, at every
// publish and at Shutdown; the newest two checkpoints are kept and all are
// removed when the job is cancelled, deleted or forgotten. RestoreJobs, at
// startup, brings back every job that has checkpoints, from its newest one
// that verifies (falling back to the previous on DATA_LOSS); a job whose
// checkpoints are all corrupt answers DATA_LOSS to every call. A client
// resumes a restored job by sending the minibatches from step
// Job.steps + 1 on: the result is bit for bit that of an uninterrupted run.
//
// Thread safety: JobManager is safe for concurrent use. Each job has its own
// mutex, so jobs train concurrently; calls on one job serialize. Sessions
// are used by one thread at a time (one gRPC stream).
#ifndef BNSERVE_SERVER_TRAINER_JOB_MANAGER_H_
#define BNSERVE_SERVER_TRAINER_JOB_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bnserve/v1/trainer.pb.h"
#include "model/trainer.h"
#include "server/common/limits.h"
#include "server/trainer/job_state.h"
#include "store/store.h"

namespace bnserve::server {

struct JobManagerOptions {
  // Upper bound on the feature bytes one Recalibrate call may buffer.
  int64_t max_recalibration_bytes = int64_t{256} << 20;
  // Upper bound on the memory one training step's activations take (every
  // layer's output and cache and the gradients flowing back), checked
  // before the step (see StepBytes).
  int64_t max_step_bytes = server::kDefaultMaxStepMb << 20;
  // Upper bound on one job's parameter count (NetworkParameters).
  int64_t max_job_parameters = server::kDefaultMaxJobParameters;
  // Upper bound on the jobs held at once.
  int max_jobs = server::kDefaultMaxJobs;
  // A job without an open stream is forgotten this long after its last
  // activity (create, step, publish, cancel, stream closed).
  absl::Duration job_retention =
      absl::Seconds(server::kDefaultJobRetentionSeconds);
  // The clock of job_retention (tests use a fake one).
  std::function<absl::Time()> now = [] { return absl::Now(); };
  // Whether jobs are checkpointed into the store (see the file comment).
  bool checkpoints = false;
  // Steps between two checkpoints when the job does not say
  // (CreateJobRequest.checkpoint_every); <= 0: only at creation, publishes
  // and shutdown.
  int64_t checkpoint_every = server::kDefaultCheckpointEvery;
  // Retention after each publish: keep the newest N versions of the model,
  // every labelled one and every version a job of this manager started
  // from (so that it can still be read when the job resumes); 0 keeps all.
  int keep_versions = 0;
};

// The optimizer configuration of a job's spec, defaults resolved.
absl::StatusOr<model::OptimizerConfig> ToOptimizerConfig(
    const v1::OptimizerSpec& spec);

class JobManager;

// Checks a wire minibatch's framing: shape given, at most
// kMaxMinibatchValues values, not ragged.
absl::Status CheckFraming(const v1::Minibatch& minibatch);

// Converts a wire minibatch to a model batch, checking its framing first.
// Content checks (width, finite values, labels, at least two rows) are
// model::Trainer::ValidateBatch's.
absl::StatusOr<model::Batch> ToBatch(const v1::Minibatch& minibatch,
                                     v1::Task task, int output_dim);

// Parameter count of the network `spec` describes (explicit layers or the
// `hidden` shorthand), computed without building it, for its dense and
// batch-norm layers: model::Network::stored_values() of the network built
// when it has no conv2d layers (those are counted after building, each
// within model/limits.h). Saturating.
int64_t NetworkParameters(const v1::NetworkSpec& spec);
// Parameter count of a snapshot's layers, from the sizes of its fields.
int64_t SnapshotParameters(const v1::Snapshot& snapshot);

// Bytes one training step of `rows` examples holds for `network`
// (model::Network::training_values_per_row floats per row). Saturating.
int64_t StepBytes(const model::Network& network, int64_t rows);

// An open training stream on one job. Destroying it closes the stream (the
// job becomes IDLE again) without publishing.
class TrainingSession {
 public:
  ~TrainingSession();
  TrainingSession(const TrainingSession&) = delete;
  TrainingSession& operator=(const TrainingSession&) = delete;

  const std::string& job_id() const { return job_id_; }

  // Validates and trains on one minibatch; publishes when the policy's
  // every_n_steps is reached and checkpoints when its checkpoint interval
  // is. INVALID_ARGUMENT (model unchanged) for a bad minibatch;
  // FAILED_PRECONDITION (unchanged) if `expected_step` > 0 is not the job's
  // steps + 1; CANCELLED if the job was cancelled; the store's error
  // (UNAVAILABLE...) if a policy publish failed (the step itself was
  // applied). A failed checkpoint does not fail the step: it is recorded in
  // Job.checkpoint_error, the previous checkpoint stays, and the next step
  // retries.
  absl::StatusOr<v1::TrainProgress> Step(const v1::Minibatch& minibatch,
                                         int64_t expected_step = 0);

  // Closes the stream cleanly: publishes if the policy says so (and the job
  // changed since its last publish) and returns the final progress.
  absl::StatusOr<v1::TrainProgress> Finish();

  // Registers how to end the stream at once from another thread (CancelJob,
  // Shutdown), with the status to finish it with. Called at most while the
  // session lives; the destructor unregisters it (waiting for a call in
  // progress), so it may capture its owner.
  void SetStreamEnder(std::function<void(const absl::Status&)> end_stream);

 private:
  friend class JobManager;
  TrainingSession(JobManager* manager, std::shared_ptr<internal::JobState> job);
  // Step, loss, accuracy, throughput and last version of the job.
  void FillProgress(v1::TrainProgress* progress) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job_->mu);
  // CANCELLED (freeing the job) if it was cancelled, UNAVAILABLE if the
  // trainer is shutting down.
  absl::Status Interrupted() ABSL_EXCLUSIVE_LOCKS_REQUIRED(job_->mu);

  JobManager* manager_;
  std::shared_ptr<internal::JobState> job_;
  std::string job_id_;
  absl::Time started_;
  int64_t examples_ = 0;
};

// Accumulates recalibration examples for one job (bounded by
// JobManagerOptions::max_recalibration_bytes). The passes over them need no
// more: model::Network::Recalibrate streams one example at a time.
class RecalibrationSession {
 public:
  // Buffers the features of one minibatch. INVALID_ARGUMENT for bad framing
  // or width; RESOURCE_EXHAUSTED beyond the buffer limit.
  absl::Status Add(const v1::Minibatch& minibatch);
  // Recalibrates a copy of the job's network over everything added and
  // publishes it. INVALID_ARGUMENT with fewer than 2 examples.
  absl::StatusOr<v1::PublishResponse> Finish();

 private:
  friend class JobManager;
  RecalibrationSession(JobManager* manager, std::string job_id, int width,
                       int64_t max_bytes)
      : manager_(manager),
        job_id_(std::move(job_id)),
        width_(width),
        max_bytes_(max_bytes) {}

  JobManager* manager_;
  std::string job_id_;
  int width_;
  int64_t max_bytes_;
  int64_t rows_ = 0;
  std::vector<float> features_;
};

class JobManager {
 public:
  // `store` must outlive the manager.
  JobManager(store::SnapshotStore* store, JobManagerOptions options = {});
  ~JobManager();

  absl::StatusOr<v1::Job> CreateJob(const v1::CreateJobRequest& request);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);
  // Jobs in creation order, optionally only those of `model`.
  std::vector<v1::Job> ListJobs(const std::string& model);
  // Marks the job CANCELLED and frees its network and optimizer state; an
  // open session fails its next Step.
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);
  // The job's dashboard history (a copy; never waits for a running step).
  // NOT_FOUND for an unknown job, DATA_LOSS for a job whose checkpoints are
  // all corrupt.
  absl::StatusOr<JobHistory::View> History(const std::string& job_id);
  // Forgets the job. FAILED_PRECONDITION while a training stream is open.
  absl::Status DeleteJob(const std::string& job_id);

  // NOT_FOUND for an unknown job; FAILED_PRECONDITION if a stream is already
  // open or the job is cancelled; UNAVAILABLE while shutting down.
  absl::StatusOr<std::unique_ptr<TrainingSession>> OpenTrainingSession(
      const std::string& job_id);

  // Publishes the job's current network now.
  absl::StatusOr<v1::PublishResponse> Publish(const std::string& job_id);

  absl::StatusOr<std::unique_ptr<RecalibrationSession>> OpenRecalibration(
      const std::string& job_id);

  // Brings back the jobs checkpointed in the store (see the file comment);
  // call once, before serving. Returns how many were restored; the store's
  // error if it cannot list or read them (a job whose checkpoints are
  // corrupt only fails that job).
  absl::StatusOr<int> RestoreJobs();

  // Refuses new jobs and sessions (UNAVAILABLE) and ends every open training
  // stream with UNAVAILABLE: at once through its stream ender, else at its
  // next step (a running step finishes first). Jobs are not cancelled; with
  // checkpoints, each is checkpointed at its current step (waiting for a
  // running step), so that a restarted trainer loses no step.
  void Shutdown();

  store::SnapshotStore* store() const { return store_; }

 private:
  friend class TrainingSession;
  friend class RecalibrationSession;
  using Job = internal::JobState;

  absl::StatusOr<std::shared_ptr<Job>> FindJob(const std::string& job_id);
  // Forgets the jobs whose retention has passed. A job busy in a step (its
  // mutex held) is active and skipped: this never waits for a step.
  void EvictExpired() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESOURCE_EXHAUSTED when the trainer holds max_jobs jobs already.
  absl::Status CheckJobCount() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The network a CreateJob request asks for (from its spec, or from the
  // parent version, which is recorded in `job`), its parameter count checked
  // against the budget before it is built.
  absl::StatusOr<model::Network> BuildNetwork(
      const v1::CreateJobRequest& request, Job& job);
  // RESOURCE_EXHAUSTED if a step of `rows` examples of `job` would need more
  // than options_.max_step_bytes.
  absl::Status CheckStepMemory(const Job& job, int64_t rows) const;
  // Writes a checkpoint of the job at its current step (nothing if it has
  // one there already, or is not checkpointed) and keeps the newest two. A
  // failure is also recorded in the job (Job.checkpoint_error, logged once)
  // and makes every later step retry.
  absl::Status Checkpoint(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu);
  // A job rebuilt from the checkpoint of `ref`. DATA_LOSS if it does not
  // verify or does not describe a valid job.
  absl::StatusOr<std::shared_ptr<Job>> LoadCheckpoint(
      const store::CheckpointRef& ref);
  // Restores one job from the newest of `steps` that loads, falling back
  // past DATA_LOSS only; any other store error is returned (nothing is
  // removed or marked lost then).
  absl::Status RestoreJob(const std::string& model, const std::string& job_id,
                          const std::vector<int64_t>& steps);
  // Applies options_.keep_versions to `model` after a publish (best effort:
  // a failure is logged, the publish stands).
  void ApplyRetention(const std::string& model);
  // Publishes `network` with the job's names and provenance.
  absl::StatusOr<int64_t> PublishNetwork(Job& job,
                                         const model::Network& network,
                                         const std::string& origin)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu);

  store::SnapshotStore* const store_;
  const JobManagerOptions options_;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // The same, read by sessions without mu_.
  std::atomic<bool> stopping_{false};
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  // Jobs found in the store whose checkpoints are all corrupt: every call
  // on them answers this DATA_LOSS.
  std::map<std::string, absl::Status> lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_JOB_MANAGER_H_
