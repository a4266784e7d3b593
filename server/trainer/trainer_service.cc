#include "server/trainer/trainer_service.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "model/status_macros.h"
#include "server/common/grpc_status.h"
#include "server/trainer/progress_coalescer.h"

namespace bnserve::server {
namespace {

// Runs `body` (returning absl::Status) after the auth check and converts;
// no exception escapes (GuardCall).
template <typename F>
grpc::Status Handle(absl::string_view method, const TokenAuth& auth,
                    grpc::ServerContext* context, F body) {
  absl::Status status = auth.Check(*context);
  if (status.ok()) status = GuardCall(method, body);
  return ToGrpcStatus(status);
}

}  // namespace

grpc::Status TrainerService::CreateJob(grpc::ServerContext* context,
                                       const v1::CreateJobRequest* request,
                                       v1::Job* response) {
  return Handle("CreateJob", auth_, context, [&]() -> absl::Status {
    BNSERVE_ASSIGN_OR_RETURN(*response, jobs_->CreateJob(*request));
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::GetJob(grpc::ServerContext* context,
                                    const v1::GetJobRequest* request,
                                    v1::Job* response) {
  return Handle("GetJob", auth_, context, [&]() -> absl::Status {
    BNSERVE_ASSIGN_OR_RETURN(*response, jobs_->GetJob(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  return Handle("ListJobs", auth_, context, [&]() -> absl::Status {
    for (v1::Job& job : jobs_->ListJobs(request->model())) {
      *response->add_jobs() = std::move(job);
    }
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request,
                                       v1::Job* response) {
  return Handle("CancelJob", auth_, context, [&]() -> absl::Status {
    BNSERVE_ASSIGN_OR_RETURN(*response, jobs_->CancelJob(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::DeleteJob(grpc::ServerContext* context,
                                       const v1::DeleteJobRequest* request,
                                       v1::DeleteJobResponse*) {
  return Handle("DeleteJob", auth_, context,
                [&] { return jobs_->DeleteJob(request->job_id()); });
}

namespace {

// One Train stream: read a request, step each of its minibatches (`batch`,
// then `batches`) and write a minibatch's progress when the stream's
// progress_interval_ms lets it (ProgressCoalescer; the steps after it wait
// for the write); when the client half-closes, finish the session (policy
// publish) and write the closing progress.
//
// The next request is read while the current one trains: as soon as a
// request is taken, the read of the next starts into the other buffer, so
// receiving and parsing it (on a gRPC thread) overlaps the training steps.
// One thread at a time owns the stream's work (`busy_`): the reaction that
// finds it idle takes it and drains every request read so far; a read that
// completes while another thread owns it is left for that owner. Only the
// owner starts writes, steps or touches the session, so the reactions'
// effects never overlap (OnCancel does nothing: the outstanding operation
// then fails and ends the stream). CancelJob and JobManager::Shutdown end an
// idle stream at once through the session's stream ender (FinishOnce). No
// exception escapes a reaction (gRPC would swallow it and the stream would
// never finish, holding its job): std::bad_alloc ends the stream with
// RESOURCE_EXHAUSTED and releases the job.
class TrainReactor final
    : public grpc::ServerBidiReactor<v1::TrainRequest, v1::TrainProgress> {
 public:
  TrainReactor(JobManager* jobs, grpc::CallbackServerContext* context,
               const absl::Status& auth)
      : jobs_(jobs), context_(context) {
    if (!auth.ok()) {
      End(auth);
      return;
    }
    StartRead(&reading_);
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock lock(&work_mu_);
      read_done_ = true;
      read_ok_ = ok;
      if (busy_) return;  // the owner takes it when it is done
      busy_ = true;
    }
    Drain();
  }

  // Only the owner starts writes, so the owner's work continues here.
  void OnWriteDone(bool ok) override {
    if (Finished()) {
      session_.reset();
    } else if (!ok) {
      End(absl::CancelledError("the client went away"));
    } else if (closing_) {
      End(absl::OkStatus());
    } else {
      Drain();
    }
  }

  void OnDone() override { delete this; }

 private:
  // The owner's loop: steps the current request's minibatches not yet
  // stepped, then takes the next request read, if any (starting the read
  // of the one after), until none is waiting (the stream's work is then
  // released) or a write, the stream's end or its close takes over.
  void Drain() {
    while (true) {
      while (next_ < count_) {
        absl::Status st = GuardCall("Train", [this] { return StepNext(); });
        if (!st.ok()) {
          End(st);
          return;
        }
        if (progress_policy_.AddStep(progress_, absl::Now())) {
          StartWrite(&progress_);
          return;
        }
      }
      bool ok;
      {
        absl::MutexLock lock(&work_mu_);
        if (!read_done_) {
          busy_ = false;
          return;
        }
        read_done_ = false;
        ok = read_ok_;
      }
      if (!TakeRequest(ok)) return;
    }
  }

  // Makes the request just read the current one and starts reading the
  // next. False if the stream ends instead (from outside, by the client's
  // close or by an error).
  bool TakeRequest(bool ok) {
    if (Finished()) {  // ended from outside (CancelJob, Shutdown)
      session_.reset();
      return false;
    }
    if (!ok) {
      ClientDone();
      return false;
    }
    std::swap(current_, reading_);
    StartRead(&reading_);
    absl::Status st = GuardCall("Train", [this] { return OpenOrCheckJob(); });
    if (!st.ok()) {
      End(st);
      return false;
    }
    first_is_batch_ = current_.has_batch() || current_.batches_size() == 0;
    count_ = (first_is_batch_ ? 1 : 0) + current_.batches_size();
    next_ = 0;
    return true;
  }

  // Opens the session on the stream's first request; later requests must
  // name the same job or none.
  absl::Status OpenOrCheckJob() {
    if (session_ == nullptr) {
      if (current_.job_id().empty()) {
        return absl::InvalidArgumentError(
            "the first message of a training stream must name the job_id");
      }
      BNSERVE_ASSIGN_OR_RETURN(session_,
                               jobs_->OpenTrainingSession(current_.job_id()));
      session_->SetStreamEnder(
          [this](const absl::Status& status) { FinishOnce(status); });
      progress_policy_.set_interval(
          absl::Milliseconds(current_.progress_interval_ms()));
    } else if (!current_.job_id().empty() &&
               current_.job_id() != session_->job_id()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a training stream serves one job: got ",
                       current_.job_id(), " after ", session_->job_id()));
    }
    return absl::OkStatus();
  }

  // One step with the current request's minibatch number next_ (numbered
  // from the request's step when it gives one).
  absl::Status StepNext() {
    const int i = next_++;
    const v1::Minibatch& minibatch =
        first_is_batch_ ? (i == 0 ? current_.batch() : current_.batches(i - 1))
                        : current_.batches(i);
    const int64_t step = current_.step() == 0 ? 0 : current_.step() + i;
    BNSERVE_ASSIGN_OR_RETURN(progress_, session_->Step(minibatch, step));
    return absl::OkStatus();
  }

  // The client closed its side (or the call was cancelled).
  void ClientDone() {
    if (context_->IsCancelled()) {
      End(absl::CancelledError("the training stream was cancelled"));
      return;
    }
    if (session_ == nullptr) {  // an empty stream
      End(absl::OkStatus());
      return;
    }
    absl::Status st = GuardCall("Train", [this]() -> absl::Status {
      BNSERVE_ASSIGN_OR_RETURN(progress_, session_->Finish());
      progress_policy_.Close(progress_);
      return absl::OkStatus();
    });
    if (!st.ok()) {
      End(st);
      return;
    }
    closing_ = true;
    StartWrite(&progress_);
  }

  // Releases the job (another stream may open it as soon as the client sees
  // the status), then finishes the call.
  void End(const absl::Status& status) {
    session_.reset();
    FinishOnce(status);
  }

  // Finish, exactly once, from a reaction or from another thread (the
  // session's stream ender, called by CancelJob or Shutdown while a read is
  // outstanding: that read then fails and OnReadDone only releases the job).
  void FinishOnce(const absl::Status& status) {
    absl::MutexLock lock(&finish_mu_);
    if (finished_) return;
    finished_ = true;
    Finish(ToGrpcStatus(status));
  }
  bool Finished() {
    absl::MutexLock lock(&finish_mu_);
    return finished_;
  }

  JobManager* const jobs_;
  grpc::CallbackServerContext* const context_;
  // Declared before session_: the session's destructor waits for a stream
  // ender call in progress, which holds finish_mu_.
  absl::Mutex finish_mu_;
  bool finished_ ABSL_GUARDED_BY(finish_mu_) = false;
  // Who owns the stream's work, and the read that completed meanwhile.
  absl::Mutex work_mu_;
  bool busy_ ABSL_GUARDED_BY(work_mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(work_mu_) = false;
  bool read_ok_ ABSL_GUARDED_BY(work_mu_) = false;
  // The rest belongs to the owner (handed over through work_mu_).
  std::unique_ptr<TrainingSession> session_;
  v1::TrainRequest reading_;  // the outstanding read's buffer
  v1::TrainRequest current_;  // the request being stepped
  v1::TrainProgress progress_;
  ProgressCoalescer progress_policy_;
  // The current request: whether `batch` is its first minibatch, how many
  // it has, and the next one to step.
  bool first_is_batch_ = true;
  int count_ = 0;
  int next_ = 0;
  bool closing_ = false;
};

}  // namespace

grpc::ServerBidiReactor<v1::TrainRequest, v1::TrainProgress>*
TrainerService::Train(grpc::CallbackServerContext* context) {
  return new TrainReactor(jobs_, context, auth_.Check(*context));
}

grpc::Status TrainerService::Publish(grpc::ServerContext* context,
                                     const v1::PublishRequest* request,
                                     v1::PublishResponse* response) {
  return Handle("Publish", auth_, context, [&]() -> absl::Status {
    BNSERVE_ASSIGN_OR_RETURN(*response, jobs_->Publish(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::Recalibrate(
    grpc::ServerContext* context,
    grpc::ServerReader<v1::RecalibrateRequest>* reader,
    v1::PublishResponse* response) {
  return Handle("Recalibrate", auth_, context, [&]() -> absl::Status {
    v1::RecalibrateRequest request;
    if (!reader->Read(&request) || request.job_id().empty()) {
      return absl::InvalidArgumentError(
          "the first message of a recalibration stream must name the job_id");
    }
    BNSERVE_ASSIGN_OR_RETURN(std::unique_ptr<RecalibrationSession> session,
                             jobs_->OpenRecalibration(request.job_id()));
    do {
      BNSERVE_RETURN_IF_ERROR(session->Add(request.batch()));
    } while (reader->Read(&request));
    if (context->IsCancelled()) {
      return absl::CancelledError("the recalibration stream was cancelled");
    }
    BNSERVE_ASSIGN_OR_RETURN(*response, session->Finish());
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::ListModels(grpc::ServerContext* context,
                                        const v1::ListModelsRequest*,
                                        v1::ListModelsResponse* response) {
  return Handle("ListModels", auth_, context, [&]() -> absl::Status {
    BNSERVE_ASSIGN_OR_RETURN(std::vector<std::string> models,
                             jobs_->store()->ListModels());
    for (std::string& m : models) response->add_models(std::move(m));
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::ListVersions(
    grpc::ServerContext* context, const v1::ListVersionsRequest* request,
    v1::ListVersionsResponse* response) {
  return Handle("ListVersions", auth_, context, [&]() -> absl::Status {
    store::SnapshotStore& store = *jobs_->store();
    BNSERVE_RETURN_IF_ERROR(store::ValidateModelName(request->model()));
    BNSERVE_ASSIGN_OR_RETURN(std::vector<int64_t> versions,
                             store.ListVersions(request->model()));
    if (versions.empty()) {
      return absl::NotFoundError(
          absl::StrCat("model '", request->model(), "' has no versions"));
    }
    BNSERVE_ASSIGN_OR_RETURN(auto labels, store.ListLabels(request->model()));
    std::multimap<int64_t, std::string> by_version;
    for (const auto& [label, version] : labels) {
      by_version.emplace(version, label);
    }
    response->set_model(request->model());
    for (int64_t v : versions) {
      v1::VersionInfo* info = response->add_versions();
      info->set_version(v);
      auto [begin, end] = by_version.equal_range(v);
      for (auto it = begin; it != end; ++it) info->add_labels(it->second);
    }
    return absl::OkStatus();
  });
}

grpc::Status TrainerService::SetLabel(grpc::ServerContext* context,
                                      const v1::SetLabelRequest* request,
                                      v1::SetLabelResponse*) {
  return Handle("SetLabel", auth_, context, [&] {
    return jobs_->store()->SetLabel(request->model(), request->label(),
                                    request->version());
  });
}

grpc::Status TrainerService::DeleteLabel(grpc::ServerContext* context,
                                         const v1::DeleteLabelRequest* request,
                                         v1::DeleteLabelResponse*) {
  return Handle("DeleteLabel", auth_, context, [&] {
    return jobs_->store()->DeleteLabel(request->model(), request->label());
  });
}

grpc::Status TrainerService::DeleteVersion(
    grpc::ServerContext* context, const v1::DeleteVersionRequest* request,
    v1::DeleteVersionResponse*) {
  return Handle("DeleteVersion", auth_, context, [&] {
    return jobs_->store()->DeleteVersion(request->model(), request->version());
  });
}

}  // namespace bnserve::server
