// Assembles the inference server: store -> ServableManager -> gRPC services
// (bnserve.v1.Inference, KServe v2, grpc.health.v1.Health, reflection),
// KServe v2 REST and the dashboard (dashboard_http.h) on the HTTP port and
// the Prometheus endpoint on the metrics port. Both HTTP ports use the gRPC
// port's TLS settings (TLS, mutual TLS) and bearer token: /metrics needs the
// token when one is configured, the REST health endpoints never do. main.cc
// only turns flags into these options.
#ifndef BNSERVE_SERVER_INFERENCE_INFERENCE_SERVER_H_
#define BNSERVE_SERVER_INFERENCE_INFERENCE_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/auth.h"
#include "server/common/http_server.h"
#include "server/common/limits.h"
#include "server/common/server_setup.h"
#include "server/inference/dashboard_http.h"
#include "server/inference/health_service.h"
#include "server/inference/inference_service.h"
#include "server/inference/kserve_http.h"
#include "server/inference/kserve_service.h"
#include "server/inference/metrics.h"
#include "server/inference/servable_manager.h"
#include "store/store.h"

namespace bnserve::inference {

struct InferenceServerOptions {
  // gRPC listen address, host:port (port 0 = an ephemeral port).
  std::string listen_address = "0.0.0.0:50052";
  // HTTP ports (KServe v2 REST; Prometheus /metrics): host and port; port 0
  // = off, kEphemeralPort = pick a free one (tests).
  static constexpr int kEphemeralPort = -1;
  std::string http_host = "0.0.0.0";
  int http_port = 0;  // the binary's --http_port defaults to 8000
  std::string metrics_host = "0.0.0.0";
  int metrics_port = 9090;
  // Slow clients on the HTTP ports: every read or write must progress within
  // this time; idle keep-alive connections are closed after it too.
  absl::Duration http_io_timeout = absl::Seconds(server::kHttpIoTimeoutSeconds);
  // Worker threads of each HTTP port (connections beyond wait to be served).
  int http_threads = server::kHttpThreads;
  // Store URI (see store/store.h); ignored when Start() is given a store.
  std::string store_uri = "./bnserve-store";
  ServableManagerOptions manager;
  server::TlsOptions tls;
  // File holding the bearer token clients must send; empty = no auth.
  std::string token_file;
  // Largest request or response message, MiB, in [1, server::kMaxMessageMb].
  int max_message_mb = server::kDefaultMessageMb;
  // Largest work of one call: rows x the model's parameter count.
  int64_t max_request_work = server::kDefaultMaxRequestWork;
  // gRPC server reflection (answers without a token).
  bool reflection = true;
};

class InferenceServer {
 public:
  // Opens the store (unless `store` is given), starts loading the models in
  // the background and starts serving at once: health is NOT_SERVING until
  // the models are loaded. InvalidArgument for bad options, Unavailable if a
  // port cannot be bound.
  static absl::StatusOr<std::unique_ptr<InferenceServer>> Start(
      const InferenceServerOptions& options,
      std::shared_ptr<store::SnapshotStore> store = nullptr);
  // Shutdown(zero deadline) if not done yet.
  ~InferenceServer();

  // Bound ports (http_port() and metrics_port() are 0 when off).
  int port() const { return port_; }
  int http_port() const;
  int metrics_port() const;

  ServableManager& manager() { return *manager_; }
  Metrics& metrics() { return metrics_; }
  HealthService& health() { return *health_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // The Prometheus exposition (what GET /metrics returns).
  std::string RenderMetrics() const;

  // Drains: health goes NOT_SERVING, no new calls are accepted, calls in
  // flight get up to `deadline` to finish (then they are cancelled); the
  // store watch and the metrics endpoint stop. Idempotent.
  void Shutdown(absl::Duration deadline);

 private:
  InferenceServer() = default;
  absl::Status StartHttp(const InferenceServerOptions& options);
  // GET /metrics (with the token when one is configured).
  server::HttpResponse ServeMetrics(const server::HttpRequest& request) const;

  Metrics metrics_;
  std::shared_ptr<store::SnapshotStore> store_;
  std::unique_ptr<ServableManager> manager_;
  server::TokenAuth auth_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<InferenceService> inference_;
  std::unique_ptr<KServeCore> kserve_core_;
  std::unique_ptr<KServeService> kserve_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<KServeHttpHandler> kserve_http_;
  std::unique_ptr<DashboardHttpHandler> dashboard_http_;
  std::unique_ptr<server::HttpServer> http_;
  std::unique_ptr<server::HttpServer> metrics_http_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_INFERENCE_SERVER_H_
