#include "server/inference/kserve_http.h"

#include <google/protobuf/arena.h>
#include <grpcpp/support/status.h>

#include <cstddef>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/grpc_status.h"
#include "server/common/http_status.h"

namespace bnserve::inference {
namespace {

using server::HttpResponse;

// The stack block of an infer's protobuf arena.
constexpr size_t kInferArenaBlockBytes = 8192;

const char* MethodName(KServeRoute::Kind kind) {
  switch (kind) {
    case KServeRoute::kLive:
      return "rest.ServerLive";
    case KServeRoute::kReady:
      return "rest.ServerReady";
    case KServeRoute::kServerMetadata:
      return "rest.ServerMetadata";
    case KServeRoute::kModelMetadata:
      return "rest.ModelMetadata";
    case KServeRoute::kModelReady:
      return "rest.ModelReady";
    case KServeRoute::kModelInfer:
      return "rest.ModelInfer";
    case KServeRoute::kModelConfig:
      return "rest.ModelConfig";
    case KServeRoute::kModelStatistics:
      return "rest.ModelStatistics";
    case KServeRoute::kRepositoryIndex:
      return "rest.RepositoryIndex";
  }
  return "rest.other";
}

HttpResponse Json(std::string body, int status = 200) {
  return {status, "application/json", std::move(body)};
}

// 200 when ready, 503 otherwise (what an HTTP probe checks).
HttpResponse Readiness(std::string body, bool ready) {
  return Json(std::move(body), ready ? 200 : 503);
}

}  // namespace

HttpResponse KServeHttpHandler::Handle(
    const server::HttpRequest& request) const {
  const absl::Time start = absl::Now();
  absl::StatusOr<KServeRoute> route =
      ParseKServeRoute(request.method, request.path);
  absl::Status status = route.status();
  HttpResponse response;
  const char* method = "rest.other";
  if (route.ok()) {
    method = MethodName(route->kind);
    status = server::GuardCall(method, [&] {
      absl::Status st;
      response = Answer(*route, request, &st);
      return st;
    });
  }
  if (!status.ok()) {
    response =
        Json(server::HttpErrorBody(status), server::HttpStatusOf(status));
  }
  if (metrics_ != nullptr) {
    metrics_->RecordRequest(method,
                            static_cast<grpc::StatusCode>(status.code()),
                            absl::Now() - start);
  }
  return response;
}

HttpResponse KServeHttpHandler::Answer(const KServeRoute& route,
                                       const server::HttpRequest& request,
                                       absl::Status* status) const {
  // Liveness and readiness answer without the token (see the header).
  if (route.kind == KServeRoute::kLive) return Json("{\"live\":true}");
  if (route.kind == KServeRoute::kReady) {
    const bool ready = core_->Ready();
    return Readiness(absl::StrCat("{\"ready\":", ready ? "true" : "false", "}"),
                     ready);
  }
  *status = auth_->CheckAuthorization(request.authorization);
  if (!status->ok()) return {};
  if (route.kind == KServeRoute::kModelInfer) {
    return AnswerInfer(route, request, status);
  }
  if (route.kind == KServeRoute::kRepositoryIndex) {
    ::inference::RepositoryIndexRequest q;
    *status = ParseIndexBody(request.body, &q);
    if (!status->ok()) return {};
    ::inference::RepositoryIndexResponse r;
    *status = core_->RepositoryIndex(q, &r);
    return Json(RepositoryIndexJson(r));
  }
  return AnswerModelQuery(route, status);
}

HttpResponse KServeHttpHandler::AnswerInfer(const KServeRoute& route,
                                            const server::HttpRequest& request,
                                            absl::Status* status) const {
  // Both messages of a digits-sized infer (~3 KiB) fit the first block; a
  // larger one continues in blocks from the heap, freed with the arena.
  alignas(std::max_align_t) char block[kInferArenaBlockBytes];
  google::protobuf::Arena arena(block, sizeof(block));
  auto& q =
      *google::protobuf::Arena::CreateMessage< ::inference::ModelInferRequest>(
          &arena);
  *status = ParseInferBody(request.body, &q);
  if (!status->ok()) return {};
  q.set_model_name(route.model);
  q.set_model_version(route.version);
  auto& r =
      *google::protobuf::Arena::CreateMessage< ::inference::ModelInferResponse>(
          &arena);
  *status = core_->ModelInfer(q, &r);
  return status->ok() ? Json(InferResponseJson(r)) : HttpResponse{};
}

HttpResponse KServeHttpHandler::AnswerModelQuery(const KServeRoute& route,
                                                 absl::Status* status) const {
  // The GET queries: a name and a version in, one message out.
  auto ask = [&](auto request, auto response, auto call, auto to_json) {
    request.set_name(route.model);
    request.set_version(route.version);
    *status = (core_->*call)(request, &response);
    return Json(to_json(response));
  };
  switch (route.kind) {
    case KServeRoute::kServerMetadata: {
      ::inference::ServerMetadataResponse r;
      core_->ServerMetadata(&r);
      return Json(ServerMetadataJson(r));
    }
    case KServeRoute::kModelMetadata:
      return ask(::inference::ModelMetadataRequest(),
                 ::inference::ModelMetadataResponse(),
                 &KServeCore::ModelMetadata, ModelMetadataJson);
    case KServeRoute::kModelConfig:
      return ask(::inference::ModelConfigRequest(),
                 ::inference::ModelConfigResponse(), &KServeCore::ModelConfig,
                 ModelConfigJson);
    case KServeRoute::kModelStatistics:
      return ask(::inference::ModelStatisticsRequest(),
                 ::inference::ModelStatisticsResponse(),
                 &KServeCore::ModelStatistics, ModelStatisticsJson);
    case KServeRoute::kModelReady: {
      ::inference::ModelReadyRequest q;
      q.set_name(route.model);
      q.set_version(route.version);
      ::inference::ModelReadyResponse r;
      *status = core_->ModelReady(q, &r);
      return Readiness(
          absl::StrCat("{\"ready\":", r.ready() ? "true" : "false", "}"),
          r.ready());
    }
    default:
      *status = absl::InternalError("unrouted KServe endpoint");
      return {};
  }
}

}  // namespace bnserve::inference
