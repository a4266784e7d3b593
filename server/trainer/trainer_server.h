// Assembles the trainer: store -> JobManager -> bnserve.v1.Trainer service,
// grpc.health.v1.Health and reflection, and the HTTP port with the
// dashboard (trainer_http.h; the gRPC port's TLS settings and token). main.cc
// only turns flags into these options.
#ifndef BNSERVE_SERVER_TRAINER_TRAINER_SERVER_H_
#define BNSERVE_SERVER_TRAINER_TRAINER_SERVER_H_

#include <grpcpp/server.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/auth.h"
#include "server/common/http_server.h"
#include "server/common/limits.h"
#include "server/common/server_setup.h"
#include "server/trainer/job_manager.h"
#include "server/trainer/trainer_http.h"
#include "server/trainer/trainer_service.h"
#include "store/store.h"

namespace bnserve::server {

struct TrainerServerOptions {
  // host:port; port 0 picks an ephemeral port.
  std::string listen_address = "0.0.0.0:50051";
  // The dashboard's HTTP port: host and port; 0 = off, kEphemeralPort =
  // pick a free one (tests). The binary's --http_port defaults to 8001.
  static constexpr int kEphemeralPort = -1;
  std::string http_host = "0.0.0.0";
  int http_port = 0;
  std::string store_uri = "bnserve-store";
  // How the store is opened (Redis: replicas every publish must reach).
  store::StoreOptions store_options;
  TlsOptions tls;
  // File with the bearer token clients must send; empty = no auth.
  std::string token_file;
  // Largest request message, MiB, in [1, kMaxMessageMb].
  int max_message_mb = kDefaultMessageMb;
  int max_recalibration_mb = 256;
  // Largest memory of one training step's activations, MiB.
  int64_t max_step_mb = kDefaultMaxStepMb;
  // Jobs: parameters of one, how many at once, how long one without an open
  // stream is kept after its last activity.
  int64_t max_job_parameters = kDefaultMaxJobParameters;
  int max_jobs = kDefaultMaxJobs;
  int64_t job_retention_seconds = kDefaultJobRetentionSeconds;
  // Checkpoint jobs into the store and restore them at start (see
  // JobManager); steps between two checkpoints unless a job says otherwise.
  bool checkpoints = true;
  int64_t checkpoint_every = kDefaultCheckpointEvery;
  // Versions kept per model after each publish (0: all; see JobManager).
  int keep_versions = 0;
  // This trainer's name in job leases; empty: "<hostname>:<port>" when the
  // port is fixed (a restarted trainer takes its own jobs back at once),
  // else "<hostname>:<pid>-<random>".
  std::string replica_id;
  // How long a job's lease lasts without renewal (see JobManager).
  int64_t job_lease_ms = kDefaultJobLeaseMs;
  // gRPC server reflection (answers without a token).
  bool reflection = true;
  // Prometheus metrics (trainer_metrics.h) at GET /metrics on this port,
  // with the gRPC port's TLS and token; 0 = off, -1 = an ephemeral port.
  int metrics_port = 0;
  std::string metrics_host = "0.0.0.0";
};

// Thread-safe after Start; Shutdown may be called from any thread.
class TrainerServer {
 public:
  // InvalidArgument for bad options (unreadable token/TLS files, bad store
  // URI), Unavailable if the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<TrainerServer>> Start(
      const TrainerServerOptions& options);
  ~TrainerServer();

  int port() const { return port_; }
  // The bound HTTP port (0 when off).
  int http_port() const;
  // The bound metrics port, 0 when off.
  int metrics_port() const;
  std::string store_uri() const { return store_->uri(); }
  bool auth_enabled() const { return auth_enabled_; }
  std::shared_ptr<grpc::Channel> InProcessChannel();

  // Refuses new jobs and streams, reports NOT_SERVING, gives calls in flight
  // up to `deadline` to finish, then cancels them. Idempotent.
  void Shutdown(absl::Duration deadline);

 private:
  TrainerServer() = default;
  absl::Status StartMetrics(const TrainerServerOptions& options);

  std::unique_ptr<store::SnapshotStore> store_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<TrainerService> service_;
  std::unique_ptr<grpc::Server> server_;
  TokenAuth http_auth_;
  std::unique_ptr<TrainerHttpHandler> http_handler_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<HttpServer> metrics_http_;
  int port_ = 0;
  bool auth_enabled_ = false;
  std::atomic<bool> shut_down_{false};
};

}  // namespace bnserve::server

#endif  // BNSERVE_SERVER_TRAINER_TRAINER_SERVER_H_
