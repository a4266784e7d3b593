#include "server/inference/kserve_service.h"

#include "absl/time/clock.h"
#include "model/status_macros.h"
#include "server/common/grpc_status.h"
#include "server/inference/finish_call.h"

namespace bnserve::inference {

template <typename Body>
grpc::ServerUnaryReactor* KServeService::Answer(
    grpc::CallbackServerContext* context, const char* method, Body&& body) {
  const absl::Time start = absl::Now();
  absl::Status status = server::GuardCall(method, [&]() -> absl::Status {
    BNSERVE_RETURN_IF_ERROR(auth_->Check(*context));
    return body();
  });
  return FinishCall(context, metrics_, method, start, status);
}

grpc::ServerUnaryReactor* KServeService::ServerLive(
    grpc::CallbackServerContext* context,
    const ::inference::ServerLiveRequest* /*request*/,
    ::inference::ServerLiveResponse* response) {
  response->set_live(core_->Live());  // no token: see the header
  return FinishCall(context, metrics_, "ServerLive", absl::Now(),
                    absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::ServerReady(
    grpc::CallbackServerContext* context,
    const ::inference::ServerReadyRequest* /*request*/,
    ::inference::ServerReadyResponse* response) {
  response->set_ready(core_->Ready());  // no token: see the header
  return FinishCall(context, metrics_, "ServerReady", absl::Now(),
                    absl::OkStatus());
}

grpc::ServerUnaryReactor* KServeService::ServerMetadata(
    grpc::CallbackServerContext* context,
    const ::inference::ServerMetadataRequest* /*request*/,
    ::inference::ServerMetadataResponse* response) {
  return Answer(context, "ServerMetadata", [&] {
    core_->ServerMetadata(response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KServeService::ModelReady(
    grpc::CallbackServerContext* context,
    const ::inference::ModelReadyRequest* request,
    ::inference::ModelReadyResponse* response) {
  return Answer(context, "ModelReady",
                [&] { return core_->ModelReady(*request, response); });
}

grpc::ServerUnaryReactor* KServeService::ModelMetadata(
    grpc::CallbackServerContext* context,
    const ::inference::ModelMetadataRequest* request,
    ::inference::ModelMetadataResponse* response) {
  return Answer(context, "ModelMetadata",
                [&] { return core_->ModelMetadata(*request, response); });
}

grpc::ServerUnaryReactor* KServeService::ModelInfer(
    grpc::CallbackServerContext* context,
    const ::inference::ModelInferRequest* request,
    ::inference::ModelInferResponse* response) {
  return Answer(context, "ModelInfer",
                [&] { return core_->ModelInfer(*request, response); });
}

grpc::ServerUnaryReactor* KServeService::ModelConfig(
    grpc::CallbackServerContext* context,
    const ::inference::ModelConfigRequest* request,
    ::inference::ModelConfigResponse* response) {
  return Answer(context, "ModelConfig",
                [&] { return core_->ModelConfig(*request, response); });
}

grpc::ServerUnaryReactor* KServeService::ModelStatistics(
    grpc::CallbackServerContext* context,
    const ::inference::ModelStatisticsRequest* request,
    ::inference::ModelStatisticsResponse* response) {
  return Answer(context, "ModelStatistics",
                [&] { return core_->ModelStatistics(*request, response); });
}

grpc::ServerUnaryReactor* KServeService::RepositoryIndex(
    grpc::CallbackServerContext* context,
    const ::inference::RepositoryIndexRequest* request,
    ::inference::RepositoryIndexResponse* response) {
  return Answer(context, "RepositoryIndex",
                [&] { return core_->RepositoryIndex(*request, response); });
}

}  // namespace bnserve::inference
