#include "server/trainer/trainer_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "server/common/http_status.h"
#include "server/common/parse_error_interceptor.h"
#include "server/common/prometheus.h"
#include "server/common/server_setup.h"

namespace bnserve::server {

namespace {

// "<hostname>:<port>" for a fixed port, else "<hostname>:<pid>-<random>".
std::string DefaultReplicaId(const std::string& listen_address) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  const std::string name = host[0] != '\0' ? host : "trainer";
  const size_t colon = listen_address.rfind(':');
  const std::string port =
      colon == std::string::npos ? "" : listen_address.substr(colon + 1);
  if (!port.empty() && port != "0") return absl::StrCat(name, ":", port);
  return absl::StrCat(name, ":", getpid(), "-",
                      absl::Hex(absl::ToUnixNanos(absl::Now()) & 0xffffff));
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrainerServer>> TrainerServer::Start(
    const TrainerServerOptions& options) {
  std::unique_ptr<TrainerServer> s(new TrainerServer());
  BNSERVE_ASSIGN_OR_RETURN(
      s->store_, store::OpenStore(options.store_uri, options.store_options));
  BNSERVE_ASSIGN_OR_RETURN(TokenAuth auth,
                           TokenAuth::FromFile(options.token_file));
  BNSERVE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                           MakeServerCredentials(options.tls));
  if (options.max_message_mb < 1 || options.max_message_mb > kMaxMessageMb) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_message_mb must be between 1 and ", kMaxMessageMb,
                     ", got ", options.max_message_mb));
  }
  if (options.max_recalibration_mb <= 0 || options.max_step_mb <= 0 ||
      options.max_step_mb > (int64_t{1} << 40) ||
      options.max_job_parameters <= 0 || options.max_jobs <= 0 ||
      options.job_retention_seconds <= 0 || options.keep_versions < 0) {
    return absl::InvalidArgumentError(
        "--max_recalibration_mb, --max_step_mb (at most 2^40), "
        "--max_job_parameters, --max_jobs and --job_retention_seconds must "
        "be positive, --keep_versions >= 0");
  }
  if (options.job_lease_ms < 30 || options.job_lease_ms > 3'600'000 ||
      options.replica_id.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrCat("--job_lease_ms must be between 30 and 3600000, got ",
                     options.job_lease_ms, "; --replica_id at most 200 bytes"));
  }
  s->auth_enabled_ = auth.enabled();
  s->http_auth_ = auth;
  s->jobs_ = std::make_unique<JobManager>(
      s->store_.get(),
      JobManagerOptions{
          .max_recalibration_bytes = int64_t{options.max_recalibration_mb}
                                     << 20,
          .max_step_bytes = options.max_step_mb << 20,
          .max_job_parameters = options.max_job_parameters,
          .max_jobs = options.max_jobs,
          .job_retention = absl::Seconds(options.job_retention_seconds),
          .checkpoints = options.checkpoints,
          .checkpoint_every = options.checkpoint_every,
          .keep_versions = options.keep_versions,
          .replica_id = options.replica_id.empty()
                            ? DefaultReplicaId(options.listen_address)
                            : options.replica_id,
          .lease = absl::Milliseconds(options.job_lease_ms)});
  // Jobs checkpointed by an earlier trainer on this store resume here.
  BNSERVE_ASSIGN_OR_RETURN(const int restored, s->jobs_->RestoreJobs());
  if (restored > 0) {
    Log(LogLevel::kInfo, absl::StrCat("restored ", restored,
                                      " training job(s) from checkpoints"));
  }
  s->service_ =
      std::make_unique<TrainerService>(s->jobs_.get(), std::move(auth));
  if (options.metrics_port != 0) {
    BNSERVE_RETURN_IF_ERROR(s->StartMetrics(options));
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options.reflection) builder.SetOption(WithoutReflection());
  builder.AddListeningPort(options.listen_address, creds, &s->port_);
  builder.experimental().SetInterceptorCreators(server::ServerInterceptors());
  builder.SetMaxReceiveMessageSize(options.max_message_mb << 20);
  builder.SetMaxSendMessageSize(options.max_message_mb << 20);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  if (options.http_port != 0) {
    s->http_handler_ =
        std::make_unique<TrainerHttpHandler>(s->jobs_.get(), &s->http_auth_);
    HttpServerOptions http;
    http.host = options.http_host;
    http.port = options.http_port == TrainerServerOptions::kEphemeralPort
                    ? 0
                    : options.http_port;
    http.tls = options.tls;
    http.max_body_bytes = 4096;  // GET only
    TrainerHttpHandler* handler = s->http_handler_.get();
    BNSERVE_ASSIGN_OR_RETURN(
        s->http_, HttpServer::Start(http, [handler](const auto& request) {
          return handler->Handle(request);
        }));
  }
  return s;
}

int TrainerServer::http_port() const {
  return http_ == nullptr ? 0 : http_->port();
}

absl::Status TrainerServer::StartMetrics(const TrainerServerOptions& options) {
  HttpServerOptions http;
  http.host = options.metrics_host;
  http.port = options.metrics_port < 0 ? 0 : options.metrics_port;
  http.tls = options.tls;
  http.max_body_bytes = 4096;  // GET only
  http.threads = 2;
  BNSERVE_ASSIGN_OR_RETURN(
      metrics_http_,
      HttpServer::Start(http, [this](const HttpRequest& request) {
        absl::Status status;
        if (request.path != "/metrics") {
          status = absl::NotFoundError(absl::StrCat(
              "no endpoint ", request.path, "; metrics are at /metrics"));
        } else if (request.method != "GET") {
          status = absl::InvalidArgumentError("use GET /metrics");
        } else {
          status = http_auth_.CheckAuthorization(request.authorization);
        }
        if (!status.ok()) {
          return HttpResponse{HttpStatusOf(status), "application/json",
                              HttpErrorBody(status)};
        }
        return HttpResponse{200, kPrometheusContentType,
                            jobs_->RenderMetrics()};
      }));
  return absl::OkStatus();
}

int TrainerServer::metrics_port() const {
  return metrics_http_ == nullptr ? 0 : metrics_http_->port();
}

TrainerServer::~TrainerServer() { Shutdown(absl::ZeroDuration()); }

std::shared_ptr<grpc::Channel> TrainerServer::InProcessChannel() {
  return server_->InProcessChannel({});
}

void TrainerServer::Shutdown(absl::Duration deadline) {
  if (server_ == nullptr || shut_down_.exchange(true)) return;
  jobs_->Shutdown();
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoMilliseconds(deadline));
  server_->Wait();
  if (http_ != nullptr) http_->Stop();
  if (metrics_http_ != nullptr) metrics_http_->Stop();
}

}  // namespace bnserve::server
