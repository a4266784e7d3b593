#include "server/trainer/job_manager.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/base/config.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "model/status_macros.h"
#include "server/common/server_setup.h"
#include "server/trainer/dashboard_json.h"

namespace bnserve::server {
namespace {

// Refreshes the job's summary when it goes out of scope (declare it after
// the MutexLock of job.mu, so that it runs with the lock held).
class RefreshOnExit {
 public:
  explicit RefreshOnExit(internal::JobState& job) : job_(job) {}
  ~RefreshOnExit() ABSL_NO_THREAD_SAFETY_ANALYSIS { job_.Refresh(); }

 private:
  internal::JobState& job_;
};

// FAILED_PRECONDITION for a cancelled job (its trainer is freed).
absl::Status NotCancelled(internal::JobState& job)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(job.mu) {
  if (job.cancel_requested && job.state != v1::Job::CANCELLED) {
    job.Cancel(absl::Now());
  }
  if (job.state != v1::Job::CANCELLED) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("job ", job.id, " is cancelled"));
}

}  // namespace

absl::StatusOr<model::OptimizerConfig> ToOptimizerConfig(
    const v1::OptimizerSpec& spec) {
  model::OptimizerConfig config;
  switch (spec.kind()) {
    case v1::OptimizerSpec::KIND_UNSPECIFIED:
    case v1::OptimizerSpec::SGD:
      config.kind = model::OptimizerConfig::Kind::kSgd;
      config.learning_rate = 0.01f;
      break;
    case v1::OptimizerSpec::ADAM:
      config.kind = model::OptimizerConfig::Kind::kAdam;
      config.learning_rate = 0.001f;
      break;
    default:
      return absl::InvalidArgumentError("unknown optimizer kind");
  }
  if (spec.learning_rate() != 0.0f) config.learning_rate = spec.learning_rate();
  if (spec.has_momentum()) config.momentum = spec.momentum();
  config.weight_decay = spec.weight_decay();
  if (spec.beta1() != 0.0f) config.beta1 = spec.beta1();
  if (spec.beta2() != 0.0f) config.beta2 = spec.beta2();
  if (spec.eps() != 0.0f) config.adam_eps = spec.eps();
  return config;
}

namespace {

// The resolved architecture of a network, for Job.spec.
v1::NetworkSpec DescribeNetwork(const model::Network& net) {
  v1::NetworkSpec spec;
  spec.set_input_features(net.input_features());
  spec.set_task(net.task());
  spec.set_output_dim(net.output_dim());
  if (net.input_shape().spatial) {
    spec.add_input_shape(net.input_shape().channels);
    spec.add_input_shape(net.input_shape().height);
    spec.add_input_shape(net.input_shape().width);
  }
  for (const auto& layer : net.layers()) layer->ToSpec(spec.add_layers());
  return spec;
}

}  // namespace

#ifndef ABSL_IS_LITTLE_ENDIAN
#error "features_f32 is little-endian: a big-endian host needs a byte swap"
#endif

absl::Status CheckFraming(const v1::Minibatch& mb) {
  if (mb.rows() <= 0 || mb.cols() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("minibatch shape must be positive, got rows=", mb.rows(),
                     " cols=", mb.cols(), mb.rows() == 0 ? " (empty)" : ""));
  }
  const int64_t n = int64_t{mb.rows()} * mb.cols();
  if (n > kMaxMinibatchValues) {
    return absl::InvalidArgumentError(
        absl::StrCat("minibatch of ", mb.rows(), " x ", mb.cols(),
                     " values is too large; at most ", kMaxMinibatchValues));
  }
  const std::string& raw = mb.features_f32();
  if (!raw.empty() && mb.features_size() != 0) {
    return absl::InvalidArgumentError(
        "a minibatch carries its features in features or in features_f32, "
        "not both");
  }
  if (raw.size() % sizeof(float) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("features_f32 holds ", raw.size(),
                     " bytes, not a whole number of 4-byte floats"));
  }
  const int64_t got =
      raw.empty() ? mb.features_size() : static_cast<int64_t>(raw.size() / 4);
  if (got != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("ragged minibatch: rows x cols = ", mb.rows(), " x ",
                     mb.cols(), " = ", n, " features expected, got ", got));
  }
  return absl::OkStatus();
}

void CopyFeatures(const v1::Minibatch& mb, float* out) {
  if (!mb.features_f32().empty()) {
    std::memcpy(out, mb.features_f32().data(), mb.features_f32().size());
  } else {
    std::copy(mb.features().begin(), mb.features().end(), out);
  }
}

absl::Status ToBatchView(const v1::Minibatch& mb, v1::Task task, int output_dim,
                         model::BatchView* view) {
  BNSERVE_RETURN_IF_ERROR(CheckFraming(mb));
  *view = model::BatchView();
  // features_f32's bytes are read as floats where they lie (a heap buffer,
  // so aligned); CheckFraming checked that they are rows x cols of them.
  view->features = mb.features_f32().empty()
                       ? mb.features().data()
                       : reinterpret_cast<const float*>(  // NOLINT
                             mb.features_f32().data());
  view->rows = mb.rows();
  view->cols = mb.cols();
  if (task == v1::TASK_CLASSIFICATION) {
    if (mb.targets_size() != 0) {
      return absl::InvalidArgumentError(
          "classification minibatches carry labels, not targets");
    }
    view->labels = absl::MakeConstSpan(mb.labels().data(), mb.labels_size());
    return absl::OkStatus();
  }
  if (mb.labels_size() != 0) {
    return absl::InvalidArgumentError(
        "regression minibatches carry targets, not labels");
  }
  if (mb.targets_size() != int64_t{mb.rows()} * output_dim) {
    return absl::InvalidArgumentError(
        absl::StrCat("regression minibatch needs rows x outputs = ", mb.rows(),
                     " x ", output_dim, " targets, got ", mb.targets_size()));
  }
  view->targets = mb.targets().data();
  view->target_rows = mb.rows();
  view->target_cols = output_dim;
  return absl::OkStatus();
}

absl::StatusOr<model::Batch> ToBatch(const v1::Minibatch& mb, v1::Task task,
                                     int output_dim) {
  model::BatchView view;
  BNSERVE_RETURN_IF_ERROR(ToBatchView(mb, task, output_dim, &view));
  model::Batch batch;
  batch.features = view.FeatureMatrix();
  batch.labels.assign(view.labels.begin(), view.labels.end());
  if (view.targets != nullptr) batch.targets = view.TargetMatrix();
  return batch;
}

int64_t StepBytes(const model::Network& network, int64_t rows) {
  return SaturatingMul(SaturatingMul(network.training_values_per_row(), rows),
                       sizeof(float));
}

JobManager::JobManager(store::SnapshotStore* store, JobManagerOptions options)
    : store_(store),
      options_(std::move(options)),
      registry_(store->job_registry()) {
  if (leases()) renewer_ = std::thread([this] { RenewLoop(); });
}

JobManager::~JobManager() {
  {
    absl::MutexLock lock(&renew_mu_);
    stop_renewer_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
}

int64_t NetworkParameters(const v1::NetworkSpec& spec) {
  int64_t in = std::max(0, spec.input_features());
  int64_t n = 0;
  auto dense = [&](int64_t units, bool bias) {
    units = std::max<int64_t>(0, units);
    n = SaturatingAdd(
        n, SaturatingAdd(SaturatingMul(in, units), bias ? units : 0));
    in = units;
  };
  auto batch_norm = [&] { n = SaturatingAdd(n, SaturatingMul(4, in)); };
  if (spec.layers_size() == 0) {
    if (spec.input_norm()) batch_norm();
    for (int32_t width : spec.hidden()) {
      dense(width, /*bias=*/false);
      batch_norm();
    }
    dense(spec.output_dim(), /*bias=*/true);
    return n;
  }
  for (const v1::LayerSpec& layer : spec.layers()) {
    if (layer.has_dense()) dense(layer.dense().units(), layer.dense().bias());
    if (layer.has_batch_norm()) batch_norm();
  }
  return n;
}

int64_t SnapshotParameters(const v1::Snapshot& snapshot) {
  int64_t n = 0;
  for (const v1::Layer& layer : snapshot.layers()) {
    if (layer.has_dense()) {
      n += layer.dense().weight_size() + layer.dense().bias_size();
    } else if (layer.has_conv2d()) {
      n += layer.conv2d().weight_size() + layer.conv2d().bias_size();
    } else if (layer.has_batch_norm()) {
      const v1::BatchNormLayer& bn = layer.batch_norm();
      n += bn.gamma_size() + bn.beta_size() + bn.running_mean_size() +
           bn.running_var_size();
    }
  }
  return n;
}

namespace {

absl::Status CheckParameters(int64_t parameters, int64_t limit,
                             absl::string_view what) {
  if (parameters <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      what, " has ", parameters, " parameters; this trainer allows ", limit,
      " per job (--max_job_parameters)"));
}

}  // namespace

absl::StatusOr<model::Network> JobManager::BuildNetwork(
    const v1::CreateJobRequest& request, Job& job) {
  if (request.start_case() == v1::CreateJobRequest::START_NOT_SET) {
    BNSERVE_RETURN_IF_ERROR(CheckParameters(NetworkParameters(request.spec()),
                                            options_.max_job_parameters,
                                            "the requested network"));
    BNSERVE_ASSIGN_OR_RETURN(
        model::Network network,
        model::Network::Create(request.spec(), request.seed()));
    // Conv2d layers are counted once built (NetworkParameters needs shapes).
    BNSERVE_RETURN_IF_ERROR(CheckParameters(network.stored_values(),
                                            options_.max_job_parameters,
                                            "the requested network"));
    return network;
  }
  int64_t version = request.from_version();
  if (request.start_case() == v1::CreateJobRequest::kFromLabel) {
    BNSERVE_ASSIGN_OR_RETURN(
        version, store_->ResolveLabel(request.model(), request.from_label()));
  }
  BNSERVE_ASSIGN_OR_RETURN(v1::Snapshot parent,
                           store_->Read(request.model(), version));
  BNSERVE_RETURN_IF_ERROR(CheckParameters(
      SnapshotParameters(parent), options_.max_job_parameters,
      absl::StrCat("version ", version, " of ", request.model())));
  BNSERVE_ASSIGN_OR_RETURN(model::Network network,
                           model::Network::FromSnapshot(parent));
  const v1::NetworkSpec& s = request.spec();
  if ((s.input_features() != 0 &&
       s.input_features() != network.input_features()) ||
      (s.output_dim() != 0 && s.output_dim() != network.output_dim()) ||
      (s.task() != v1::TASK_UNSPECIFIED && s.task() != network.task())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the spec does not match version ", version, " of ",
                     request.model(), " (", network.input_features(),
                     " features, ", network.output_dim(), " outputs)"));
  }
  job.parent_version = version;
  if (job.feature_names.empty()) {
    job.feature_names.assign(parent.feature_names().begin(),
                             parent.feature_names().end());
  }
  if (job.class_names.empty()) {
    job.class_names.assign(parent.class_names().begin(),
                           parent.class_names().end());
  }
  return network;
}

absl::Status JobManager::CheckJobCount() {
  if (shutting_down_) {
    return absl::UnavailableError("the trainer is shutting down");
  }
  EvictExpired();
  if (static_cast<int64_t>(jobs_.size()) < options_.max_jobs) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "this trainer holds ", jobs_.size(), " jobs, its limit (--max_jobs); ",
      "delete finished or cancelled jobs (DeleteJob) or wait for their ",
      "retention (--job_retention_seconds) to pass"));
}

absl::StatusOr<v1::Job> JobManager::CreateJob(
    const v1::CreateJobRequest& request) {
  BNSERVE_RETURN_IF_ERROR(store::ValidateModelName(request.model()));
  BNSERVE_ASSIGN_OR_RETURN(model::OptimizerConfig opt,
                           ToOptimizerConfig(request.optimizer()));
  if (request.publish().every_n_steps() < 0) {
    return absl::InvalidArgumentError("publish every_n_steps must be >= 0");
  }
  {
    absl::MutexLock lock(&mu_);
    BNSERVE_RETURN_IF_ERROR(CheckJobCount());
  }
  auto job = std::make_shared<Job>();
  job->model = request.model();
  job->created = absl::Now();
  job->optimizer = request.optimizer();
  job->policy = request.publish();
  job->feature_names.assign(request.feature_names().begin(),
                            request.feature_names().end());
  job->class_names.assign(request.class_names().begin(),
                          request.class_names().end());
  if (options_.checkpoints) {
    job->checkpoint_store = store_;
    job->checkpoint_every = request.checkpoint_every() != 0
                                ? request.checkpoint_every()
                                : options_.checkpoint_every;
  }
  BNSERVE_ASSIGN_OR_RETURN(model::Network network, BuildNetwork(request, *job));
  if (!job->feature_names.empty() &&
      job->feature_names.size() !=
          static_cast<size_t>(network.input_features())) {
    return absl::InvalidArgumentError(
        absl::StrCat("got ", job->feature_names.size(), " feature names for ",
                     network.input_features(), " features"));
  }
  if (!job->class_names.empty() &&
      (network.task() != v1::TASK_CLASSIFICATION ||
       job->class_names.size() != static_cast<size_t>(network.output_dim()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "class names need a classification model with exactly one name per "
        "class (",
        network.output_dim(), ")"));
  }
  job->spec = DescribeNetwork(network);
  BNSERVE_ASSIGN_OR_RETURN(model::Trainer trainer,
                           model::Trainer::Create(std::move(network), opt));
  {
    // The network and its state exist before the job is visible.
    absl::MutexLock lock(&job->mu);
    job->trainer.emplace(std::move(trainer));
    job->last_active = options_.now();
  }
  BNSERVE_RETURN_IF_ERROR(RegisterNewJob(*job));
  absl::Status saved;
  v1::Job created;
  {
    absl::MutexLock job_lock(&job->mu);
    saved = Checkpoint(*job);  // a restarted trainer knows the job
    if (!saved.ok()) job->Cancel(options_.now());
    job->Refresh();
    created = job->ToProto();
    if (saved.ok()) ReleaseIfIdle(*job);  // registers its summary
  }
  if (!saved.ok()) {
    (void)DeleteJob(created.job_id());
    return saved;
  }
  return created;
}

absl::Status JobManager::RegisterNewJob(Job& job) {
  job.uses_leases = leases();  // before the job is visible
  while (true) {
    int64_t number = 0;
    if (leases()) {
      BNSERVE_ASSIGN_OR_RETURN(number, registry_->NextJobNumber());
    }
    std::string id;
    {
      absl::MutexLock lock(&mu_);
      BNSERVE_RETURN_IF_ERROR(CheckJobCount());  // others may have raced us
      if (!leases()) number = next_id_++;
      id = absl::StrCat("job-", number);
      if (jobs_.count(id) != 0 || lost_.count(id) != 0) continue;
      if (!leases()) {
        job.id = id;
        jobs_[id] = job.shared_from_this();
        order_.push_back(id);
        return absl::OkStatus();
      }
    }
    // Held before it is listed, so that no listing takes it for a job
    // deleted elsewhere.
    const absl::Time acquired_at = absl::Now();
    BNSERVE_ASSIGN_OR_RETURN(
        store::JobLease lease,
        registry_->Acquire(job.model, id, options_.replica_id, options_.lease));
    if (lease.owner != options_.replica_id) continue;
    job.id = id;
    NoteLease(job, acquired_at);
    absl::MutexLock lock(&mu_);
    if (jobs_.count(id) != 0) continue;  // cannot happen: ids are unique
    jobs_[id] = job.shared_from_this();
    order_.push_back(id);
    return absl::OkStatus();
  }
}

void JobManager::EvictExpired() {
  const absl::Time now = options_.now();
  for (auto it = order_.begin(); it != order_.end();) {
    Job& job = *jobs_[*it];
    bool expired = false;
    if (job.mu.TryLock()) {
      expired =
          !job.stream_open && now - job.last_active > options_.job_retention;
      if (expired) ForgetExpired(job);
      job.mu.Unlock();
    }
    if (expired) {
      jobs_.erase(*it);
      it = order_.erase(it);
    } else {
      ++it;
    }
  }
}

absl::StatusOr<std::shared_ptr<JobManager::Job>> JobManager::FindJob(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  EvictExpired();
  auto it = jobs_.find(job_id);
  if (auto lost = lost_.find(job_id);
      it == jobs_.end() && lost != lost_.end()) {
    return lost->second;
  }
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  }
  return it->second;
}

absl::StatusOr<v1::Job> JobManager::GetJob(const std::string& job_id) {
  absl::StatusOr<std::shared_ptr<Job>> job = FindJob(job_id);
  if (!leases() || (!job.ok() && !absl::IsNotFound(job.status()))) {
    if (!job.ok()) return job.status();
    return (*job)->Summary();
  }
  absl::StatusOr<store::JobEntry> entry = registry_->Get(job_id);
  if (!entry.ok()) {
    if (!job.ok())
      return absl::IsNotFound(entry.status()) ? job.status() : entry.status();
    if (absl::IsNotFound(entry.status()) && !(*job)->HoldsLease()) {
      ForgetDeleted(job_id);
      return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
    }
    return Merge(*job, store::JobEntry{(*job)->model, job_id, {}, false, {}});
  }
  return Merge(job.ok() ? *job : nullptr, *entry);
}

absl::StatusOr<JobHistory::View> JobManager::History(
    const std::string& job_id) {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, FindJob(job_id));
  return job->history.Snapshot();
}

std::vector<v1::Job> JobManager::ListJobs(const std::string& model) {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    EvictExpired();
    for (const std::string& id : order_) jobs.push_back(jobs_[id]);
  }
  std::map<std::string, store::JobEntry> shared;
  bool listed = false;
  if (leases()) {
    absl::StatusOr<std::vector<store::JobEntry>> entries = registry_->List();
    if (!entries.ok()) {
      Log(LogLevel::kWarning,
          absl::StrCat("job registry: ", entries.status().ToString()));
    } else {
      listed = true;
      for (store::JobEntry& e : *entries) shared[e.job_id] = std::move(e);
    }
  }
  std::vector<v1::Job> out;
  for (const auto& job : jobs) {
    auto entry = shared.find(job->id);
    if (listed && entry == shared.end() && !job->HoldsLease()) {
      ForgetDeleted(job->id);
      continue;
    }
    if (model.empty() || job->model == model) {
      out.push_back(entry == shared.end()
                        ? Merge(job, {job->model, job->id, {}, false, {}})
                        : Merge(job, entry->second));
      if (!leases()) out.back().clear_owner();
    }
    if (entry != shared.end()) shared.erase(entry);
  }
  for (const auto& [id, entry] : shared) {
    if (model.empty() || entry.model == model) {
      out.push_back(Merge(nullptr, entry));
    }
  }
  return out;
}

std::string JobManager::RenderMetrics() {
  std::map<std::string, int64_t> by_state = {
      {"idle", 0}, {"training", 0}, {"cancelled", 0}};
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) jobs.push_back(job);
  }
  std::vector<v1::Job> summaries;
  for (const auto& job : jobs) summaries.push_back(job->Summary());
  for (const v1::Job& summary : summaries) {
    switch (summary.state()) {
      case v1::Job::TRAINING:
        ++by_state["training"];
        break;
      case v1::Job::CANCELLED:
        ++by_state["cancelled"];
        break;
      default:
        ++by_state["idle"];
    }
  }
  return metrics_.Render(by_state) + JobGaugesPrometheus(summaries);
}

void JobManager::ForgetDeleted(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second->HoldsLease()) return;
  jobs_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), job_id));
}

absl::StatusOr<v1::Job> JobManager::CancelJob(const std::string& job_id) {
  absl::StatusOr<std::shared_ptr<Job>> found = FindJob(job_id);
  if (leases() && !(found.ok() && (*found)->HoldsLease())) {
    std::string held_by;
    found = Claim(job_id, &held_by);
    if (!found.ok() && !held_by.empty()) {
      // Its trainer cancels it at its next renewal.
      BNSERVE_RETURN_IF_ERROR(registry_->RequestCancel(job_id));
      BNSERVE_ASSIGN_OR_RETURN(v1::Job job, GetJob(job_id));
      job.set_state(v1::Job::CANCELLED);
      return job;
    }
  }
  if (!found.ok()) return found.status();
  std::shared_ptr<Job> job = *std::move(found);
  job->cancel_requested = true;
  job->EndStream(
      absl::CancelledError(absl::StrCat("job ", job_id, " was cancelled")));
  if (job->mu.TryLock()) {
    job->Cancel(options_.now());
    job->Refresh();
    ReleaseIfIdle(*job);
    job->mu.Unlock();
  } else {
    // A step is running: it frees the job when it ends. Answer now.
    absl::MutexLock lock(&job->info_mu);
    job->summary.set_state(v1::Job::CANCELLED);
  }
  return job->Summary();
}

absl::Status JobManager::DeleteJob(const std::string& job_id) {
  std::string held_by;
  absl::StatusOr<std::shared_ptr<Job>> found = Claim(job_id, &held_by);
  if (!held_by.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " is held by trainer replica ", held_by,
                     "; cancel it first"));
  }
  if (leases() && absl::IsFailedPrecondition(found.status())) {
    found = FindJob(job_id);  // cancelled elsewhere: forget it
    if (absl::IsNotFound(found.status())) {
      absl::StatusOr<store::JobEntry> entry = registry_->Get(job_id);
      if (entry.ok()) return registry_->Remove(entry->model, job_id);
    }
  }
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, found);
  {
    absl::MutexLock lock(&job->mu);
    if (job->stream_open) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", job_id, " has an open training stream; cancel it first"));
    }
    job->Cancel(options_.now());  // no stream can open on it any more
    job->Refresh();
    if (leases()) {
      (void)registry_->Remove(job->model, job_id);
      job->lease_until_ns = 0;
    }
  }
  absl::MutexLock lock(&mu_);
  if (auto it = jobs_.find(job_id); it != jobs_.end() && it->second == job) {
    jobs_.erase(it);
    order_.erase(std::find(order_.begin(), order_.end(), job_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TrainingSession>>
JobManager::OpenTrainingSession(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the trainer is shutting down");
    }
  }
  bool took_over = false;
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job,
                           Claim(job_id, nullptr, &took_over));
  absl::MutexLock lock(&job->mu);
  if (absl::Status s = NotCancelled(*job); !s.ok()) {
    ReleaseIfIdle(*job);
    return s;
  }
  if (job->stream_open) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id,
        " already has an open training stream; a job takes one at a time"));
  }
  job->stream_open = true;
  job->state = v1::Job::TRAINING;
  job->last_active = options_.now();
  job->Refresh();
  std::unique_ptr<TrainingSession> session(new TrainingSession(this, job));
  session->took_over_ = took_over;
  return session;
}

absl::StatusOr<int64_t> JobManager::PublishNetwork(
    Job& job, const model::Network& network, const std::string& origin) {
  v1::Snapshot snapshot = network.ToSnapshot();
  snapshot.set_model(job.model);
  for (const std::string& n : job.feature_names) snapshot.add_feature_names(n);
  for (const std::string& n : job.class_names) snapshot.add_class_names(n);
  v1::Provenance* p = snapshot.mutable_training();
  p->set_job_id(job.id);
  p->set_step(job.trainer->steps());
  p->set_examples_seen(job.trainer->examples_seen());
  p->set_loss(job.last_loss);
  p->set_parent_version(job.parent_version);
  const absl::Time now = absl::Now();
  p->mutable_created()->set_seconds(absl::ToUnixSeconds(now));
  p->mutable_created()->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(
      now - absl::FromUnixSeconds(absl::ToUnixSeconds(now)))));
  p->set_origin(origin);
  const absl::Time started = absl::Now();
  BNSERVE_ASSIGN_OR_RETURN(int64_t version, store_->Publish(snapshot));
  metrics_.RecordPublish(absl::Now() - started);
  job.history.RecordPublish(job.trainer->steps(), version, origin);
  ApplyRetention(job.model);
  return version;
}

void JobManager::ApplyRetention(const std::string& model) {
  if (options_.keep_versions <= 0) return;
  std::set<int64_t> parents;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : jobs_) {
      if (job->model == model && job->parent_version > 0) {
        parents.insert(job->parent_version);
      }
    }
  }
  absl::StatusOr<std::vector<int64_t>> deleted = store::ApplyRetentionKeeping(
      *store_, model, options_.keep_versions, parents);
  if (!deleted.ok()) {
    Log(LogLevel::kWarning,
        absl::StrCat("retention of ", model, " (keep ", options_.keep_versions,
                     "): ", deleted.status().ToString()));
  }
}

absl::Status JobManager::CheckStepMemory(const Job& job, int64_t rows) const {
  const int64_t need = StepBytes(job.trainer->network(), rows);
  if (need <= options_.max_step_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "a minibatch of ", rows, " examples needs ", need >> 20,
      " MiB of activations in job ", job.id, "'s network; this trainer allows ",
      options_.max_step_bytes >> 20,
      " MiB per step (--max_step_mb): send smaller minibatches"));
}

absl::StatusOr<v1::PublishResponse> JobManager::Publish(
    const std::string& job_id) {
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Claim(job_id));
  absl::MutexLock lock(&job->mu);
  absl::Cleanup release = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ReleaseIfIdle(*job);
  };
  RefreshOnExit refresh(*job);
  BNSERVE_RETURN_IF_ERROR(NotCancelled(*job));
  job->last_active = options_.now();
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t version,
      PublishNetwork(*job, job->trainer->network(), "trainer"));
  job->last_published = version;
  job->last_published_step = job->trainer->steps();
  (void)Checkpoint(*job);  // a failure is recorded in the job
  v1::PublishResponse response;
  response.set_model(job->model);
  response.set_version(version);
  return response;
}

absl::StatusOr<std::unique_ptr<RecalibrationSession>>
JobManager::OpenRecalibration(const std::string& job_id) {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      return absl::UnavailableError("the trainer is shutting down");
    }
  }
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Claim(job_id));
  absl::MutexLock lock(&job->mu);
  absl::Cleanup release = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ReleaseIfIdle(*job);
  };
  BNSERVE_RETURN_IF_ERROR(NotCancelled(*job));
  job->last_active = options_.now();
  return std::unique_ptr<RecalibrationSession>(new RecalibrationSession(
      this, job_id, job->trainer->network().input_features(),
      options_.max_recalibration_bytes));
}

void JobManager::Shutdown() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (const auto& [id, job] : jobs_) jobs.push_back(job);
  }
  stopping_ = true;  // a step that is running ends its stream when it ends
  for (const auto& job : jobs) {
    job->EndStream(absl::UnavailableError("the trainer is shutting down"));
  }
  {
    absl::MutexLock lock(&renew_mu_);
    stop_renewer_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
  if (!options_.checkpoints) return;
  for (const auto& job : jobs) {
    absl::MutexLock lock(&job->mu);  // waits for a running step
    if (job->state == v1::Job::CANCELLED || job->cancel_requested) continue;
    if (!job->HoldsLease()) continue;      // at rest in its checkpoint
    if (!Checkpoint(*job).ok()) continue;  // a failure is logged
    if (leases()) {
      // Another trainer may take the job over at once.
      PutSummary(*job);
      (void)registry_->Release(job->model, job->id, options_.replica_id);
      job->lease_until_ns = 0;
    }
  }
}

TrainingSession::TrainingSession(JobManager* manager,
                                 std::shared_ptr<internal::JobState> job)
    : manager_(manager),
      job_(std::move(job)),
      job_id_(job_->id),
      started_(absl::Now()) {}

TrainingSession::~TrainingSession() {
  {
    absl::MutexLock lock(&job_->hook_mu);
    job_->end_stream = nullptr;
  }
  absl::MutexLock lock(&job_->mu);
  job_->stream_open = false;
  job_->last_active = manager_->options_.now();
  if (job_->cancel_requested && job_->state != v1::Job::CANCELLED) {
    // CancelJob ended the stream after the last step had passed its last
    // check: the job is cancelled all the same.
    job_->Cancel(job_->last_active);
  }
  if (job_->state == v1::Job::TRAINING) job_->state = v1::Job::IDLE;
  job_->Refresh();
  manager_->ReleaseIfIdle(*job_);
}

absl::StatusOr<v1::TrainProgress> TrainingSession::Step(
    const v1::Minibatch& minibatch, int64_t expected_step) {
  absl::MutexLock lock(&job_->mu);
  RefreshOnExit refresh(*job_);
  BNSERVE_RETURN_IF_ERROR(Interrupted());
  model::Trainer& trainer = *job_->trainer;
  const bool first = std::exchange(first_step_, false);
  if (!job_->HoldsLease()) {
    return absl::UnavailableError(absl::StrCat(
        "job ", job_id_, " lost its lease on this trainer (the store did not ",
        "answer its renewal); resume it: it continues from its last ",
        "checkpoint"));
  }
  if (first && took_over_ && expected_step > 0 &&
      expected_step != trainer.steps() + 1) {
    // The client's view came from the trainer that held the job before:
    // steps it saw may have died with it, or it may not have heard of the
    // last checkpoint. It asks again (GetJob) and resumes from there.
    return absl::UnavailableError(absl::StrCat(
        "job ", job_id_, " resumed from its checkpoint at step ",
        trainer.steps(), "; resume by sending the minibatch of step ",
        trainer.steps() + 1));
  }
  if (expected_step > 0 && expected_step != trainer.steps() + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id_, " is at step ", trainer.steps(),
        "; a minibatch for step ", expected_step,
        " does not follow (resume by sending the minibatch of step ",
        trainer.steps() + 1, ")"));
  }
  BNSERVE_RETURN_IF_ERROR(CheckFraming(minibatch));
  BNSERVE_RETURN_IF_ERROR(manager_->CheckStepMemory(*job_, minibatch.rows()));
  model::BatchView batch;  // the minibatch trained on where it lies
  BNSERVE_RETURN_IF_ERROR(ToBatchView(minibatch, trainer.network().task(),
                                      trainer.network().output_dim(), &batch));
  BNSERVE_ASSIGN_OR_RETURN(model::StepResult result, trainer.Step(batch));
  manager_->metrics_.RecordStep(result.examples);
  BNSERVE_RETURN_IF_ERROR(Interrupted());  // cancelled during the step
  job_->last_loss = result.loss;
  job_->last_accuracy = result.accuracy;
  job_->history.RecordStep(trainer, result, absl::Now());
  job_->last_active = manager_->options_.now();
  examples_ += result.examples;

  v1::TrainProgress progress;
  const int64_t every = job_->policy.every_n_steps();
  if (every > 0 && trainer.steps() % every == 0) {
    BNSERVE_ASSIGN_OR_RETURN(
        int64_t version,
        manager_->PublishNetwork(*job_, trainer.network(), "trainer"));
    job_->last_published = version;
    job_->last_published_step = trainer.steps();
    progress.set_published(true);
  }
  BNSERVE_RETURN_IF_ERROR(Interrupted());  // cancelled meanwhile
  const int64_t interval = job_->checkpoint_every;
  if (progress.published() || job_->checkpoint_pending ||
      (interval > 0 && trainer.steps() % interval == 0)) {
    (void)manager_->Checkpoint(*job_);  // a failure is recorded in the job
  }
  FillProgress(&progress);
  return progress;
}

absl::StatusOr<v1::TrainProgress> TrainingSession::Finish() {
  absl::MutexLock lock(&job_->mu);
  RefreshOnExit refresh(*job_);
  BNSERVE_RETURN_IF_ERROR(Interrupted());
  model::Trainer& trainer = *job_->trainer;
  v1::TrainProgress progress;
  const bool on_close =
      !job_->policy.has_on_stream_close() || job_->policy.on_stream_close();
  if (on_close && job_->last_published_step != trainer.steps()) {
    BNSERVE_ASSIGN_OR_RETURN(
        int64_t version,
        manager_->PublishNetwork(*job_, trainer.network(), "trainer"));
    job_->last_published = version;
    job_->last_published_step = trainer.steps();
    progress.set_published(true);
  }
  (void)manager_->Checkpoint(*job_);  // a failure is recorded in the job
  FillProgress(&progress);
  return progress;
}

absl::Status TrainingSession::Interrupted() {
  if (job_->cancel_requested || job_->state == v1::Job::CANCELLED) {
    job_->Cancel(manager_->options_.now());
    return absl::CancelledError(
        absl::StrCat("job ", job_id_, " was cancelled"));
  }
  if (manager_->stopping_) {
    return absl::UnavailableError("the trainer is shutting down");
  }
  return absl::OkStatus();
}

void TrainingSession::SetStreamEnder(
    std::function<void(const absl::Status&)> end_stream) {
  absl::MutexLock lock(&job_->hook_mu);
  job_->end_stream = std::move(end_stream);
}

void TrainingSession::FillProgress(v1::TrainProgress* progress) const {
  const model::Trainer& trainer = *job_->trainer;
  progress->set_step(trainer.steps());
  progress->set_loss(job_->last_loss);
  progress->set_accuracy(job_->last_accuracy);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started_);
  progress->set_examples_per_second(seconds > 0 ? examples_ / seconds : 0.0);
  progress->set_examples_seen(trainer.examples_seen());
  progress->set_last_published_version(job_->last_published);
}

absl::Status RecalibrationSession::Add(const v1::Minibatch& minibatch) {
  BNSERVE_RETURN_IF_ERROR(CheckFraming(minibatch));
  if (minibatch.cols() != width_) {
    return absl::InvalidArgumentError(
        absl::StrCat("recalibration minibatch has ", minibatch.cols(),
                     " features per example, the model expects ", width_));
  }
  const int64_t values = int64_t{minibatch.rows()} * minibatch.cols();
  const int64_t bytes =
      static_cast<int64_t>((features_.size() + values) * sizeof(float));
  if (bytes > max_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "recalibration data exceeds the trainer's buffer of ", max_bytes_ >> 20,
        " MiB (--max_recalibration_mb); send fewer "
        "examples or raise the limit"));
  }
  const size_t old_size = features_.size();
  features_.resize(old_size + values);
  CopyFeatures(minibatch, features_.data() + old_size);
  for (size_t i = old_size; i < features_.size(); ++i) {
    if (!std::isfinite(features_[i])) {
      features_.resize(old_size);
      return absl::InvalidArgumentError(
          absl::StrCat("recalibration example ", rows_ + 1,
                       " or later contains NaN or Inf"));
    }
  }
  rows_ += minibatch.rows();
  return absl::OkStatus();
}

absl::StatusOr<v1::PublishResponse> RecalibrationSession::Finish() {
  if (rows_ < 2) {
    return absl::InvalidArgumentError(
        "recalibration needs at least 2 examples");
  }
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<internal::JobState> job,
                           manager_->FindJob(job_id_));
  const Eigen::Map<const model::Matrix> x(features_.data(), rows_, width_);
  absl::MutexLock lock(&job->mu);
  BNSERVE_RETURN_IF_ERROR(NotCancelled(*job));
  model::Network network = job->trainer->network();
  BNSERVE_RETURN_IF_ERROR(network.Recalibrate(x));
  BNSERVE_ASSIGN_OR_RETURN(
      int64_t version, manager_->PublishNetwork(*job, network, "recalibrate"));
  v1::PublishResponse response;
  response.set_model(job->model);
  response.set_version(version);
  response.set_stats_examples(rows_);
  return response;
}

}  // namespace bnserve::server
