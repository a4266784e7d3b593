// bench-noop-server: the floor for Predict throughput. It serves
// bnserve.v1.Inference with the same gRPC library, the same build flags, the
// same callback API and the same server options as bnserve-inference
// (listening address, message size limits, reflection), but every Predict
// returns an empty PredictResponse at once: what remains is the cost of gRPC
// itself. Other methods are UNIMPLEMENTED.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/server_builder.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "server/common/server_setup.h"

ABSL_FLAG(int32_t, port, 50052, "gRPC port (0 = pick a free one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int32_t, max_message_mb, 64, "largest gRPC message, in MiB");

namespace {

using bnserve::server::Log;
using bnserve::server::LogLevel;

class NoopInference final : public bnserve::v1::Inference::CallbackService {
 public:
  grpc::ServerUnaryReactor* Predict(
      grpc::CallbackServerContext* context,
      const bnserve::v1::PredictRequest* /*request*/,
      bnserve::v1::PredictResponse* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int Run() {
  const std::string address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  auto creds = bnserve::server::MakeServerCredentials({});
  if (!creds.ok()) {
    Log(LogLevel::kError, creds.status().ToString());
    return 2;
  }
  NoopInference service;
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  const int max_bytes = absl::GetFlag(FLAGS_max_message_mb) * 1024 * 1024;
  builder.AddListeningPort(address, *creds, &port);
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(LogLevel::kError, absl::StrCat("cannot listen on ", address));
    return 1;
  }
  Log(LogLevel::kInfo, absl::StrCat("noop server listening on :", port));
  bnserve::server::WaitForTerminationSignal();
  server->Shutdown();
  server->Wait();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bnserve::server::PrepareServerProcess();  // as bnserve-inference does
  bnserve::server::ParseFlagsWithEnvironment(
      argc, argv, {"port", "host", "max_message_mb"});
  return Run();
}
