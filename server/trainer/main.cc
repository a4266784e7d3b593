// bnserve-trainer: turns flags into TrainerServerOptions, starts the server,
// waits for SIGTERM/SIGINT, drains and exits 0.
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/common/limits.h"
#include "server/common/server_setup.h"
#include "server/trainer/trainer_server.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 50051, "gRPC port (0 picks a free port and logs it).");
ABSL_FLAG(int, http_port, 8001,
          "HTTP port of the dashboard (0 = off); same TLS and token as gRPC.");
ABSL_FLAG(std::string, store, "bnserve-store",
          "Snapshot store URI: a directory path or file:///abs/path (the "
          "embedded default), or, shared: redis://host:port[/db], "
          "redis-sentinel://s1:26379,s2:26379/master[/db] or "
          "redis-cluster://h1:7000,h2:7001,...");
ABSL_FLAG(int, redis_min_replicas, 0,
          "Redis stores: a publish (or label change, deletion) is "
          "acknowledged only once this many replicas have it (WAIT); set it "
          "to the number of replicas so that a Sentinel failover loses no "
          "acknowledged version. 0 = do not wait.");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; enables TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; requires and verifies client certificates (mTLS).");
ABSL_FLAG(std::string, token_file, "",
          "File holding a bearer token that every call must present as "
          "'authorization: Bearer <token>'. Empty: no token required.");
ABSL_FLAG(int, max_message_mb, bnserve::server::kDefaultMessageMb,
          "Largest request message, in MiB (1..2047).");
ABSL_FLAG(int, max_recalibration_mb, 256,
          "Largest amount of example data one Recalibrate call may buffer.");
ABSL_FLAG(int64_t, max_step_mb, bnserve::server::kDefaultMaxStepMb,
          "Largest memory one training step's activations may take, in MiB; "
          "a larger minibatch is refused with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_job_parameters,
          bnserve::server::kDefaultMaxJobParameters,
          "Largest network one job may hold, in parameters (weights, biases, "
          "batch-norm values); checked before the network is built.");
ABSL_FLAG(int, max_jobs, bnserve::server::kDefaultMaxJobs,
          "Most jobs the trainer holds at once.");
ABSL_FLAG(int64_t, job_retention_seconds,
          bnserve::server::kDefaultJobRetentionSeconds,
          "A job without an open training stream is forgotten this long after "
          "its last activity (DeleteJob forgets one at once).");
ABSL_FLAG(int64_t, checkpoint_every, bnserve::server::kDefaultCheckpointEvery,
          "Checkpoint every training job into the store every N steps (also "
          "at creation, every publish and SIGTERM; a job's checkpoint_every "
          "overrides it); a restarted trainer resumes jobs from their "
          "checkpoints. 0: only at creation, publishes and SIGTERM.");
ABSL_FLAG(int, keep_versions, 0,
          "After each publish keep only the newest N versions of the model, "
          "plus every labelled version and every version a job of this "
          "trainer started from (0: keep all).");
ABSL_FLAG(int, metrics_port, 0,
          "Prometheus metrics at GET /metrics on this port (jobs by state, "
          "steps, examples, checkpoint and publish latency, resumes), with "
          "the gRPC port's TLS and token; 0 = off.");
ABSL_FLAG(std::string, replica_id, "",
          "This trainer's name in the job leases of a shared (Redis) store, "
          "unique among its trainers; empty: <hostname>:<port>.");
ABSL_FLAG(int64_t, job_lease_ms, bnserve::server::kDefaultJobLeaseMs,
          "How long a job's lease lasts without renewal: trainers sharing a "
          "Redis store take over the jobs of a dead one after this.");
ABSL_FLAG(bool, checkpoints, true,
          "Checkpoint jobs and restore them at start (false: jobs live only "
          "in this process, as before).");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "On SIGTERM, how long open streams may take to finish.");
ABSL_FLAG(bool, reflection, true,
          "Serve gRPC server reflection (it answers without the token).");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace bnserve::server {
namespace {

// The options the flags describe; INVALID_ARGUMENT names a bad flag.
absl::StatusOr<TrainerServerOptions> OptionsFromFlags() {
  TrainerServerOptions options;
  options.listen_address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.http_host = absl::GetFlag(FLAGS_host);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  if (options.http_port < 0) {
    return absl::InvalidArgumentError("--http_port must be >= 0");
  }
  options.store_uri = absl::GetFlag(FLAGS_store);
  options.store_options.redis_min_replicas =
      absl::GetFlag(FLAGS_redis_min_replicas);
  options.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                 absl::GetFlag(FLAGS_tls_client_ca)};
  options.token_file = absl::GetFlag(FLAGS_token_file);
  options.max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  options.max_recalibration_mb = absl::GetFlag(FLAGS_max_recalibration_mb);
  options.max_step_mb = absl::GetFlag(FLAGS_max_step_mb);
  options.max_job_parameters = absl::GetFlag(FLAGS_max_job_parameters);
  options.max_jobs = absl::GetFlag(FLAGS_max_jobs);
  options.job_retention_seconds = absl::GetFlag(FLAGS_job_retention_seconds);
  options.reflection = absl::GetFlag(FLAGS_reflection);
  options.checkpoints = absl::GetFlag(FLAGS_checkpoints);
  options.checkpoint_every = absl::GetFlag(FLAGS_checkpoint_every);
  options.keep_versions = absl::GetFlag(FLAGS_keep_versions);
  options.replica_id = absl::GetFlag(FLAGS_replica_id);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.metrics_host = absl::GetFlag(FLAGS_host);
  if (options.metrics_port < 0) {
    return absl::InvalidArgumentError("--metrics_port must be >= 0");
  }
  options.job_lease_ms = absl::GetFlag(FLAGS_job_lease_ms);
  if (options.checkpoint_every < 0) {
    return absl::InvalidArgumentError("--checkpoint_every must be >= 0");
  }
  return options;
}

// "bnserve-trainer listening on HOST:PORT store=... dashboard=... ...".
std::string ListeningMessage(const TrainerServer& server, bool tls) {
  const std::string host = absl::GetFlag(FLAGS_host);
  return absl::StrCat(
      "bnserve-trainer listening on ", host, ":", server.port(),
      " store=", server.store_uri(),
      server.http_port() == 0
          ? std::string(" dashboard=off")
          : absl::StrCat(" dashboard=http", tls ? "s" : "", "://", host, ":",
                         server.http_port(), "/"),
      server.auth_enabled() ? " auth=token" : "",
      server.metrics_port() == 0
          ? ""
          : absl::StrCat(" metrics=:", server.metrics_port()));
}

}  // namespace
}  // namespace bnserve::server

int main(int argc, char** argv) {
  using namespace bnserve::server;  // NOLINT
  PrepareServerProcess();
  UseOneMallocHeap();
  ParseFlagsWithEnvironment(argc, argv, __FILE__);
  if (absl::Status s = SetLogLevel(absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    Log(LogLevel::kError, s.ToString());
    return 2;
  }
  absl::StatusOr<TrainerServerOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    Log(LogLevel::kError, std::string(options.status().message()));
    return 2;
  }
  auto server = TrainerServer::Start(*options);
  if (!server.ok()) {
    Log(LogLevel::kError,
        absl::StrCat("cannot start: ", server.status().ToString()));
    return server.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  Log(LogLevel::kInfo,
      ListeningMessage(**server, !options->tls.cert_file.empty()));
  const int signal = WaitForTerminationSignal();
  Log(LogLevel::kInfo, absl::StrCat("signal ", signal, ": draining"));
  (*server)->Shutdown(
      absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  Log(LogLevel::kInfo, "stopped");
  return 0;
}
