// bnserve-trainer: turns flags into options, builds the server, waits for
// SIGTERM/SIGINT, drains and exits 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "server/common/server_setup.h"
#include "server/trainer/job_manager.h"
#include "server/trainer/trainer_service.h"
#include "store/store.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 50051, "gRPC port (0 picks a free port and logs it).");
ABSL_FLAG(std::string, store, "bnserve-store",
          "Snapshot store URI: a directory path or file:///abs/path (the "
          "embedded default), or redis://host:port[/db] (shared).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; enables TLS.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; requires and verifies client certificates (mTLS).");
ABSL_FLAG(std::string, token_file, "",
          "File holding a bearer token that every call must present as "
          "'authorization: Bearer <token>'. Empty: no token required.");
ABSL_FLAG(int, max_message_mb, 64, "Largest request message, in MiB.");
ABSL_FLAG(int, max_recalibration_mb, 256,
          "Largest amount of example data one Recalibrate call may buffer.");
ABSL_FLAG(int, shutdown_grace_seconds, 10,
          "On SIGTERM, how long open streams may take to finish.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace bnserve::server {
namespace {

int Run() {
  if (absl::Status s = SetLogLevel(absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    Log(LogLevel::kError, s.ToString());
    return 2;
  }
  auto store = store::OpenStore(absl::GetFlag(FLAGS_store));
  if (!store.ok()) {
    Log(LogLevel::kError,
        absl::StrCat("cannot open the store: ", store.status().ToString()));
    return 1;
  }
  auto auth = TokenAuth::FromFile(absl::GetFlag(FLAGS_token_file));
  auto credentials = MakeServerCredentials(
      {absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
       absl::GetFlag(FLAGS_tls_client_ca)});
  for (const absl::Status& s : {auth.status(), credentials.status()}) {
    if (!s.ok()) {
      Log(LogLevel::kError, s.ToString());
      return 2;
    }
  }
  JobManager jobs(
      store->get(),
      {.max_recalibration_bytes =
           int64_t{absl::GetFlag(FLAGS_max_recalibration_mb)} << 20});
  TrainerService service(&jobs, *std::move(auth));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)),
      *credentials, &port);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_mb) << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(LogLevel::kError,
        absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_host), ":",
                     absl::GetFlag(FLAGS_port)));
    return 1;
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  Log(LogLevel::kInfo,
      absl::StrCat("bnserve-trainer listening on ", absl::GetFlag(FLAGS_host),
                   ":", port, " store=", (*store)->uri(),
                   auth->enabled() ? " auth=token" : ""));

  const int signal = WaitForTerminationSignal();
  Log(LogLevel::kInfo, absl::StrCat("signal ", signal, ": draining"));
  jobs.Shutdown();
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(
      std::chrono::system_clock::now() +
      std::chrono::seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)));
  server->Wait();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace bnserve::server

int main(int argc, char** argv) {
  bnserve::server::BlockTerminationSignals();
  bnserve::server::ParseFlagsWithEnvironment(
      argc, argv,
      {"host", "port", "store", "tls_cert", "tls_key", "tls_client_ca",
       "token_file", "max_message_mb", "max_recalibration_mb",
       "shutdown_grace_seconds", "log_level"});
  return bnserve::server::Run();
}
