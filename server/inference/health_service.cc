#include "server/inference/health_service.h"

#include <optional>

#include "absl/strings/str_cat.h"

namespace bnserve::inference {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream: writes the current status, then every change (only the
// latest value when several arrive during a write). Decisions are taken under
// `mu_`, but StartWrite/Finish are called with no lock of this class held,
// because gRPC may run the resulting reactions inline. The reactor is not
// deleted in OnDone: it only marks itself done, and the HealthService deletes
// it later under its own lock, so the service never touches a freed watcher.
class HealthService::Watcher final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  explicit Watcher(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }

  // Sends `status` if it differs from the last one sent.
  void Update(ServingStatus status) {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      pending_ = status;
    }
    Pump();
  }

  // Ends the stream with OK (server shutting down).
  void End() {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      finishing_ = true;
    }
    Pump();
  }

  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) finishing_ = true;
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      finishing_ = true;
    }
    Pump();
  }

  void OnDone() override {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

 private:
  // Starts the next write or the Finish, if one is due and none in flight.
  void Pump() {
    bool write = false, finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (finishing_) {
        finished_ = finish = true;
      } else if (pending_.has_value() && pending_ != last_sent_) {
        last_sent_ = pending_;
        response_.set_status(*pending_);
        writing_ = write = true;
      }
      pending_.reset();
    }
    if (finish) Finish(grpc::Status::OK);
    if (write) StartWrite(&response_);
  }

  const std::string name_;
  absl::Mutex mu_;
  // Written only by the thread that set writing_.
  HealthCheckResponse response_;
  std::optional<ServingStatus> pending_ ABSL_GUARDED_BY(mu_);
  std::optional<ServingStatus> last_sent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

HealthService::HealthService(const std::vector<std::string>& services) {
  absl::MutexLock lock(&mu_);
  statuses_[""] = HealthCheckResponse::NOT_SERVING;
  for (const std::string& s : services) {
    statuses_[s] = HealthCheckResponse::NOT_SERVING;
  }
}

HealthService::~HealthService() {
  // The server has shut down: every watcher is done.
  absl::MutexLock lock(&mu_);
  for (Watcher* w : watchers_) delete w;
  watchers_.clear();
}

HealthService::ServingStatus HealthService::StatusOf(
    const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? HealthCheckResponse::SERVICE_UNKNOWN
                               : it->second;
}

void HealthService::ReapLocked() {
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if ((*it)->done()) {
      delete *it;
      it = watchers_.erase(it);
    } else {
      ++it;
    }
  }
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  for (auto& [name, status] : statuses_) {
    status = serving ? HealthCheckResponse::SERVING
                     : HealthCheckResponse::NOT_SERVING;
  }
  ReapLocked();
  for (Watcher* w : watchers_) w->Update(StatusOf(w->name()));
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
  for (auto& [name, status] : statuses_) {
    status = HealthCheckResponse::NOT_SERVING;
  }
  ReapLocked();
  for (Watcher* w : watchers_) {
    w->Update(StatusOf(w->name()));
    w->End();
  }
}

grpc::ServerUnaryReactor* HealthService::Check(
    grpc::CallbackServerContext* context, const HealthCheckRequest* request,
    HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  grpc::Status status = grpc::Status::OK;
  {
    absl::ReaderMutexLock lock(&mu_);
    const ServingStatus s = StatusOf(request->service());
    if (s == HealthCheckResponse::SERVICE_UNKNOWN) {
      status = grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("unknown service '", request->service(), "'"));
    } else {
      response->set_status(s);
    }
  }
  reactor->Finish(status);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* /*context*/,
    const HealthCheckRequest* request) {
  auto* watcher = new Watcher(request->service());
  absl::MutexLock lock(&mu_);
  ReapLocked();
  watchers_.insert(watcher);
  watcher->Update(StatusOf(request->service()));
  if (shutdown_) watcher->End();
  return watcher;
}

}  // namespace bnserve::inference
