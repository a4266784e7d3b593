// bnserve-inference: serves the models of a snapshot store over gRPC
// (bnserve.v1.Inference, KServe v2, health, reflection) and KServe v2 REST,
// with Prometheus metrics. Every flag can also come from BNSERVE_<FLAG> (flags
// win).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/limits.h"
#include "server/common/server_setup.h"
#include "server/inference/inference_server.h"

ABSL_FLAG(int32_t, port, 50052, "gRPC port (0 = pick a free one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int32_t, http_port, 8000,
          "KServe v2 REST HTTP port (0 = off); same TLS and token as gRPC");
ABSL_FLAG(int32_t, metrics_port, 9090,
          "Prometheus /metrics HTTP port (0 = off); same TLS and token as "
          "gRPC");
ABSL_FLAG(std::string, store, "./bnserve-store",
          "snapshot store URI: a directory, file:///abs/path or "
          "redis://host:port[/db]");
ABSL_FLAG(std::string, models, "",
          "comma-separated models to serve (empty = every model in the store)");
ABSL_FLAG(int32_t, versions_to_keep, 2,
          "newest versions kept loaded per model (labelled ones come on top)");
ABSL_FLAG(int32_t, drift_sample_every, 16,
          "1 in N served examples feeds the drift metrics (0 = off)");
ABSL_FLAG(std::string, tls_cert, "", "PEM server certificate (enables TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM server private key");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA for client certificates (enables mutual TLS)");
ABSL_FLAG(std::string, token_file, "",
          "file with the bearer token clients must send (empty = no auth)");
ABSL_FLAG(int32_t, max_message_mb, bnserve::server::kDefaultMessageMb,
          "largest gRPC message, in MiB (1..2047); also bounds the answer of "
          "one batch call");
ABSL_FLAG(int64_t, max_request_work, bnserve::server::kDefaultMaxRequestWork,
          "largest work of one batch call: rows x the model's parameter "
          "count (about its multiply-adds)");
ABSL_FLAG(bool, reflection, true,
          "serve gRPC server reflection (it answers without the token)");
ABSL_FLAG(std::string, log_level, "info", "debug | info | warning | error");

namespace {

using bnserve::server::Log;
using bnserve::server::LogLevel;

int Run() {
  bnserve::inference::InferenceServerOptions options;
  options.listen_address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.http_host = absl::GetFlag(FLAGS_host);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.metrics_host = absl::GetFlag(FLAGS_host);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (options.metrics_port < 0 || options.http_port < 0) {
    Log(LogLevel::kError, "--http_port and --metrics_port must be >= 0");
    return 2;
  }
  options.store_uri = absl::GetFlag(FLAGS_store);
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_models), ',',
                                            absl::SkipWhitespace())) {
    options.manager.models.emplace_back(absl::StripAsciiWhitespace(m));
  }
  options.manager.versions_to_keep = absl::GetFlag(FLAGS_versions_to_keep);
  options.manager.drift.sample_every = absl::GetFlag(FLAGS_drift_sample_every);
  options.tls = {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                 absl::GetFlag(FLAGS_tls_client_ca)};
  options.token_file = absl::GetFlag(FLAGS_token_file);
  options.max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  options.max_request_work = absl::GetFlag(FLAGS_max_request_work);
  options.reflection = absl::GetFlag(FLAGS_reflection);

  auto server = bnserve::inference::InferenceServer::Start(options);
  if (!server.ok()) {
    Log(LogLevel::kError, server.status().ToString());
    return absl::IsInvalidArgument(server.status()) ? 2 : 1;
  }
  Log(LogLevel::kInfo,
      absl::StrCat("listening on :", (*server)->port(), " (store ",
                   options.store_uri, ", http ",
                   (*server)->http_port() == 0
                       ? std::string("off")
                       : absl::StrCat(":", (*server)->http_port()),
                   ", metrics ",
                   (*server)->metrics_port() == 0
                       ? std::string("off")
                       : absl::StrCat(":", (*server)->metrics_port()),
                   ")"));
  const int signal = bnserve::server::WaitForTerminationSignal();
  Log(LogLevel::kInfo, absl::StrCat("signal ", signal, ": draining"));
  (*server)->Shutdown(absl::Seconds(5));
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bnserve::server::PrepareServerProcess();
  bnserve::server::ParseFlagsWithEnvironment(argc, argv, __FILE__);
  if (absl::Status st =
          bnserve::server::SetLogLevel(absl::GetFlag(FLAGS_log_level));
      !st.ok()) {
    Log(LogLevel::kError, st.ToString());
    return 2;
  }
  return Run();
}
