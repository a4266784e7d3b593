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
// Shared jobs (with checkpoints): the jobs of every trainer on one store are
// registered in its job registry (store/job_registry.h; shared between
// processes on Redis). A job is stepped, checkpointed, published or
// cancelled only by the trainer that holds its lease: taken when a training
// stream opens (or for a Publish, Recalibrate, Cancel or Delete call),
// renewed every lease/3 by a background thread, and released, after a
// checkpoint, when the stream closes or the trainer shuts down. A trainer
// whose renewal fails stops stepping the job at 90% of the lease, before any
// other trainer may take it. Taking a job whose newest checkpoint is newer
// than this trainer's copy (another trainer advanced it) reloads it from the
// store first. GetJob and ListJobs answer every job of the registry; CancelJob
// of a job held by another live trainer flags it in the registry and that
// trainer cancels it at its next renewal. A call that needs a job held by
// another live trainer answers UNAVAILABLE naming that trainer and the time
// left on its lease (a client retries; once the holder dies the lease
// expires and this trainer takes the job over from its last checkpoint).
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
#include <thread>
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
#include "server/trainer/trainer_metrics.h"
#include "store/job_registry.h"
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
  // Leases (with checkpoints): this trainer's name in the job registry
  // (unique among the trainers of one store), and how long a lease lasts
  // without renewal (how long a job of a dead trainer waits to move).
  std::string replica_id = "trainer";
  absl::Duration lease = absl::Milliseconds(server::kDefaultJobLeaseMs);
};

// The optimizer configuration of a job's spec, defaults resolved.
absl::StatusOr<model::OptimizerConfig> ToOptimizerConfig(
    const v1::OptimizerSpec& spec);

class JobManager;

// Checks a wire minibatch's framing: shape given, at most
// kMaxMinibatchValues values, features in one of its two fields (repeated
// floats or features_f32 bytes), not ragged.
absl::Status CheckFraming(const v1::Minibatch& minibatch);

// Copies the rows * cols features of a minibatch whose framing checked,
// from whichever field carries them, to `out`.
void CopyFeatures(const v1::Minibatch& minibatch, float* out);

// Points `*view` at a wire minibatch's features (features or features_f32,
// no copy), labels or targets, checking its framing and that it carries
// what `task` needs. Content checks (width, finite values, labels, at
// least two rows) are model::Trainer::ValidateBatch's. The view is valid
// while `minibatch` lives unchanged.
absl::Status ToBatchView(const v1::Minibatch& minibatch, v1::Task task,
                         int output_dim, model::BatchView* view);
// The same checks, copied into a model batch that owns its values.
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
  // steps + 1 (UNAVAILABLE instead for the first minibatch of a stream on
  // a job this trainer just took over from another: the client's step came
  // from that trainer, so it asks again and resumes from this one's);
  // CANCELLED if the job was cancelled; the store's error
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
  bool first_step_ = true;
  // The job was taken over from another trainer when the stream opened.
  bool took_over_ = false;
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
  const std::string& replica_id() const { return options_.replica_id; }
  const TrainerMetrics& metrics() const { return metrics_; }
  // The Prometheus exposition: the counters and histograms of
  // trainer_metrics.h, with `jobs{state}` counting this trainer's own
  // copies of jobs, then the per-job gauges of JobGaugesPrometheus.
  std::string RenderMetrics();

 private:
  friend class TrainingSession;
  friend class RecalibrationSession;
  using Job = internal::JobState;

  absl::StatusOr<std::shared_ptr<Job>> FindJob(const std::string& job_id);

  // --- Leases (job_leases.cc) ---
  // Whether jobs are shared through the registry under leases.
  bool leases() const { return options_.checkpoints && registry_ != nullptr; }
  // The job with its lease held by this trainer (taken or renewed), reloaded
  // from the store first if another trainer advanced it. NOT_FOUND for a
  // job neither here nor in the registry; UNAVAILABLE naming the holder if
  // another live trainer holds it (`*held_by` gets the holder then, if
  // given); FAILED_PRECONDITION if it was cancelled elsewhere. Without
  // leases: FindJob.
  // `*took_over` (if given) tells whether this trainer's copy was behind:
  // reloaded from the store, or another trainer had reported later steps
  // (lost with it unless checkpointed).
  absl::StatusOr<std::shared_ptr<Job>> Claim(const std::string& job_id,
                                             std::string* held_by = nullptr,
                                             bool* took_over = nullptr);
  // After a call or a stream: if this trainer holds the job's lease and no
  // stream is open, checkpoints the job, publishes its summary and releases
  // the lease (kept if the checkpoint fails: the renewer retries).
  void ReleaseIfIdle(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu);
  // Stores the job's summary in the registry (best effort, logged).
  void PutSummary(Job& job);
  // The lease is held until `acquired_at` + 90% of the lease.
  void NoteLease(Job& job, absl::Time acquired_at);
  // The job's newest loadable checkpoint in the store, installed in jobs_
  // in place of any older copy.
  absl::StatusOr<std::shared_ptr<Job>> Reload(const std::string& model,
                                              const std::string& job_id);
  // The registry's view of a job merged with this trainer's copy (null if
  // none): the copy if this trainer holds the job or nobody advanced it
  // since, else the registry's summary; `owner` filled in.
  v1::Job Merge(const std::shared_ptr<Job>& local,
                const store::JobEntry& entry);
  // The renewer thread: renews held leases every lease/3, acts on cancel
  // requests and lost leases, retries failed releases.
  void RenewLoop();
  void RenewOne(Job& job);
  // Forgets an expired job whose lease is not held elsewhere: drops its
  // checkpoints and registry entry if this trainer can take its lease and
  // nobody advanced it (a dormant copy is only forgotten here).
  void ForgetExpired(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu);
  // Forgets this trainer's copy of a job that the registry no longer knows
  // (deleted by another trainer), unless this trainer holds it.
  void ForgetDeleted(const std::string& job_id);
  // Forgets the jobs whose retention has passed. A job busy in a step (its
  // mutex held) is active and skipped: this never waits for a step.
  void EvictExpired() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives a new job its id (from the registry with leases, else the next
  // local number; never one in use here), adds it to jobs_ and, with
  // leases, takes its lease.
  absl::Status RegisterNewJob(Job& job);
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
  // The job from the newest of `steps` that loads, falling back past
  // DATA_LOSS and NOT_FOUND (another trainer removed it meanwhile); any
  // other store error is returned. DATA_LOSS if every one is corrupt,
  // NOT_FOUND if none is left. Newer corrupt checkpoints are removed.
  absl::StatusOr<std::shared_ptr<Job>> LoadNewest(
      const std::string& model, const std::string& job_id,
      const std::vector<int64_t>& steps);
  // Restores one job from the newest of `steps` that loads (LoadNewest),
  // marking it lost if all are corrupt; any other store error is returned
  // (nothing is removed or marked lost then).
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
  store::JobRegistry* const registry_;
  TrainerMetrics metrics_;
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

  // The renewer (running only with leases).
  absl::Mutex renew_mu_;
  bool stop_renewer_ ABSL_GUARDED_BY(renew_mu_) = false;
  std::thread renewer_;
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_JOB_MANAGER_H_
