// The KServe v2 / Open Inference Protocol gRPC service
// (`inference.GRPCInferenceService`), so standard KServe and Triton clients
// work unchanged: a thin transport over KServeCore (kserve_core.h), which
// holds the protocol's decoding, validation and encoding, shared with the
// REST handler (kserve_http.h).
//
// Authentication: every call needs the bearer token when one is configured,
// except ServerLive and ServerReady, which answer without it (like
// grpc.health.v1.Health: they reveal only whether the server is live or
// ready, and probes carry no credentials). The same rule holds over REST.
//
// Thread-safe; the core, auth and metrics must outlive the service.
#ifndef BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_
#define BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_

#include "inference/grpc_service.grpc.pb.h"
#include "server/common/auth.h"
#include "server/inference/kserve_core.h"
#include "server/inference/metrics.h"

namespace bnserve::inference {

class KServeService final
    : public ::inference::GRPCInferenceService::CallbackService {
 public:
  KServeService(const KServeCore* core, const server::TokenAuth* auth,
                Metrics* metrics)
      : core_(core), auth_(auth), metrics_(metrics) {}

  grpc::ServerUnaryReactor* ServerLive(
      grpc::CallbackServerContext* context,
      const ::inference::ServerLiveRequest* request,
      ::inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(
      grpc::CallbackServerContext* context,
      const ::inference::ServerReadyRequest* request,
      ::inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(
      grpc::CallbackServerContext* context,
      const ::inference::ModelReadyRequest* request,
      ::inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(
      grpc::CallbackServerContext* context,
      const ::inference::ServerMetadataRequest* request,
      ::inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(
      grpc::CallbackServerContext* context,
      const ::inference::ModelMetadataRequest* request,
      ::inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(
      grpc::CallbackServerContext* context,
      const ::inference::ModelInferRequest* request,
      ::inference::ModelInferResponse* response) override;
  grpc::ServerUnaryReactor* ModelConfig(
      grpc::CallbackServerContext* context,
      const ::inference::ModelConfigRequest* request,
      ::inference::ModelConfigResponse* response) override;
  grpc::ServerUnaryReactor* ModelStatistics(
      grpc::CallbackServerContext* context,
      const ::inference::ModelStatisticsRequest* request,
      ::inference::ModelStatisticsResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryIndex(
      grpc::CallbackServerContext* context,
      const ::inference::RepositoryIndexRequest* request,
      ::inference::RepositoryIndexResponse* response) override;

 private:
  // Checks the token, then runs `body` (an absl::Status-returning call of
  // the core) under server::GuardCall and finishes the call.
  template <typename Body>
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                   const char* method, Body&& body);

  const KServeCore* const core_;
  const server::TokenAuth* const auth_;
  Metrics* const metrics_;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_
