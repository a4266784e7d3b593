// bench-noop-server: the floor for Predict throughput. It serves
// bnserve.v1.Inference with the same gRPC library, the same build flags, the
// same callback API and the same server options as bnserve-inference
// (listening address, message size limits, reflection), but every Predict
// returns an empty PredictResponse at once: what remains is the cost of gRPC
// itself. Other methods are UNIMPLEMENTED.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bnserve/v1/inference.grpc.pb.h"
#include "server/common/server_setup.h"

ABSL_FLAG(int32_t, port, 50052, "gRPC port (0 = pick a free one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int32_t, max_message_mb, 64, "largest gRPC message, in MiB");
ABSL_FLAG(bool, fill_response, false,
          "diagnostic: answer with a response shaped like a digits Predict "
          "response (model, version, 10 outputs and probabilities, class)");
ABSL_FLAG(int32_t, busy_ns, 0,
          "diagnostic: spin this long in every Predict (what handler time "
          "costs in throughput)");

namespace {

using bnserve::server::Log;
using bnserve::server::LogLevel;

class NoopInference final : public bnserve::v1::Inference::CallbackService {
 public:
  grpc::ServerUnaryReactor* Predict(
      grpc::CallbackServerContext* context,
      const bnserve::v1::PredictRequest* /*request*/,
      bnserve::v1::PredictResponse* response) override {
    if (fill_response_) {
      response->set_model("digits");
      response->set_version(1);
      response->mutable_outputs()->Resize(10, 0.25f);
      *response->mutable_probabilities() = response->outputs();
      response->set_class_id(3);
      response->set_class_name("3");
    }
    if (busy_ns_ > 0) {
      const auto end =
          std::chrono::steady_clock::now() + std::chrono::nanoseconds(busy_ns_);
      while (std::chrono::steady_clock::now() < end) {
      }
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const int busy_ns_ = absl::GetFlag(FLAGS_busy_ns);
  const bool fill_response_ = absl::GetFlag(FLAGS_fill_response);
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
  // As bnserve-inference does (Debian's Abseil has deadlock detection on).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  bnserve::server::BlockTerminationSignals();
  bnserve::server::ParseFlagsWithEnvironment(
      argc, argv,
      {"port", "host", "max_message_mb", "busy_ns", "fill_response"});
  return Run();
}
