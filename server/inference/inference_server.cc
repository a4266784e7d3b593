#include "server/inference/inference_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"
#include "server/common/http_status.h"
#include "server/common/parse_error_interceptor.h"
#include "server/common/prometheus.h"

namespace bnserve::inference {

absl::StatusOr<std::unique_ptr<InferenceServer>> InferenceServer::Start(
    const InferenceServerOptions& options,
    std::shared_ptr<store::SnapshotStore> store) {
  if (options.max_message_mb < 1 ||
      options.max_message_mb > server::kMaxMessageMb) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_message_mb must be between 1 and ",
                     server::kMaxMessageMb, ", got ", options.max_message_mb));
  }
  if (options.max_request_work < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_request_work must be positive, got ", options.max_request_work));
  }
  const RequestLimits limits{
      .max_response_bytes = int64_t{options.max_message_mb} << 20,
      .max_work = options.max_request_work};
  std::unique_ptr<InferenceServer> s(new InferenceServer());
  BNSERVE_ASSIGN_OR_RETURN(s->auth_,
                           server::TokenAuth::FromFile(options.token_file));
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                           server::MakeServerCredentials(options.tls));
  if (store == nullptr) {
    store::StoreOptions store_options;
    store_options.watch_models = options.manager.models;
    BNSERVE_ASSIGN_OR_RETURN(
        store, store::OpenStore(options.store_uri, store_options));
  }
  s->store_ = std::move(store);
  s->manager_ = std::make_unique<ServableManager>(s->store_, options.manager,
                                                  &s->metrics_);
  s->health_ = std::make_unique<HealthService>(std::vector<std::string>{
      v1::Inference::service_full_name(),
      ::inference::GRPCInferenceService::service_full_name()});
  s->inference_ = std::make_unique<InferenceService>(
      s->manager_.get(), &s->auth_, &s->metrics_, limits);
  s->kserve_core_ = std::make_unique<KServeCore>(s->manager_.get(), limits);
  s->kserve_ = std::make_unique<KServeService>(s->kserve_core_.get(), &s->auth_,
                                               &s->metrics_);

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options.reflection) builder.SetOption(server::WithoutReflection());
  builder.AddListeningPort(options.listen_address, creds, &s->port_);
  builder.experimental().SetInterceptorCreators(
      server::ServerInterceptors({InferenceService::PredictMethod()}));
  builder.SetMaxReceiveMessageSize(options.max_message_mb * 1024 * 1024);
  builder.SetMaxSendMessageSize(options.max_message_mb * 1024 * 1024);
  builder.RegisterService(s->inference_.get());
  builder.RegisterService(s->kserve_.get());
  builder.RegisterService(s->health_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address));
  }

  HealthService* health = s->health_.get();
  s->manager_->SetReadyCallback(
      [health](bool ready) { health->SetServing(ready); });
  BNSERVE_RETURN_IF_ERROR(s->manager_->Start());

  BNSERVE_RETURN_IF_ERROR(s->StartHttp(options));
  return s;
}

namespace {

int HttpPort(int option) {
  return option == InferenceServerOptions::kEphemeralPort ? 0 : option;
}

}  // namespace

absl::Status InferenceServer::StartHttp(const InferenceServerOptions& options) {
  server::HttpServerOptions http;
  http.tls = options.tls;
  http.max_body_bytes = int64_t{options.max_message_mb} << 20;
  http.io_timeout = options.http_io_timeout;
  http.keep_alive_timeout = options.http_io_timeout;
  http.threads = options.http_threads;
  if (options.http_port != 0) {
    kserve_http_ = std::make_unique<KServeHttpHandler>(kserve_core_.get(),
                                                       &auth_, &metrics_);
    dashboard_http_ = std::make_unique<DashboardHttpHandler>(manager_.get(),
                                                             &metrics_, &auth_);
    http.host = options.http_host;
    http.port = HttpPort(options.http_port);
    KServeHttpHandler* kserve = kserve_http_.get();
    DashboardHttpHandler* dashboard = dashboard_http_.get();
    BNSERVE_ASSIGN_OR_RETURN(
        http_, server::HttpServer::Start(
                   http, [kserve, dashboard](const auto& request) {
                     if (auto page = dashboard->Handle(request)) return *page;
                     return kserve->Handle(request);
                   }));
  }
  if (options.metrics_port != 0) {
    http.host = options.metrics_host;
    http.port = HttpPort(options.metrics_port);
    http.max_body_bytes = 4096;  // GET only
    http.threads = 2;
    BNSERVE_ASSIGN_OR_RETURN(
        metrics_http_,
        server::HttpServer::Start(http, [this](const auto& request) {
          return ServeMetrics(request);
        }));
  }
  return absl::OkStatus();
}

server::HttpResponse InferenceServer::ServeMetrics(
    const server::HttpRequest& request) const {
  absl::Status status;
  if (request.path != "/metrics") {
    status = absl::NotFoundError(absl::StrCat("no endpoint ", request.path,
                                              "; metrics are at /metrics"));
  } else if (request.method != "GET") {
    status = absl::InvalidArgumentError("use GET /metrics");
  } else {
    status = auth_.CheckAuthorization(request.authorization);
  }
  if (!status.ok()) {
    return {server::HttpStatusOf(status), "application/json",
            server::HttpErrorBody(status)};
  }
  return {200, server::kPrometheusContentType, RenderMetrics()};
}

InferenceServer::~InferenceServer() { Shutdown(absl::ZeroDuration()); }

int InferenceServer::http_port() const {
  return http_ == nullptr ? 0 : http_->port();
}

int InferenceServer::metrics_port() const {
  return metrics_http_ == nullptr ? 0 : metrics_http_->port();
}

std::shared_ptr<grpc::Channel> InferenceServer::InProcessChannel() {
  return server_->InProcessChannel(grpc::ChannelArguments());
}

std::string InferenceServer::RenderMetrics() const {
  return metrics_.Render(manager_->AllLoaded(), manager_->Ready());
}

void InferenceServer::Shutdown(absl::Duration deadline) {
  if (shut_down_) return;
  shut_down_ = true;
  if (manager_ != nullptr) manager_->SetReadyCallback(nullptr);
  if (health_ != nullptr) health_->Shutdown();
  if (kserve_core_ != nullptr) kserve_core_->StopServing();
  if (server_ != nullptr) {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + deadline));
    server_->Wait();
  }
  if (http_ != nullptr) http_->Stop();
  if (manager_ != nullptr) manager_->Stop();
  if (metrics_http_ != nullptr) metrics_http_->Stop();
}

}  // namespace bnserve::inference
