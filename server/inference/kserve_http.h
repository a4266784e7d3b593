// KServe v2 REST (and Triton's ModelConfig, ModelStatistics and
// RepositoryIndex over REST) on the inference server's HTTP port: a thin
// transport over KServeCore. Each request is routed (kserve_json.h), the
// bearer token is checked exactly as over gRPC (every endpoint needs it when
// one is configured, except /v2/health/live and /v2/health/ready, which
// reveal only whether the server is live or ready, for probes), the JSON
// body is parsed into the protocol's message, the core answers and the
// answer is written as JSON. Errors are {"error": "<message>"} with the
// status of server::HttpStatusOf (400 bad request, 401 token, 404 unknown
// model, version, label or path, 413 too large or too costly, 503 not
// ready). Readiness answers 200 when ready and 503 otherwise, so an HTTP
// probe needs no JSON parsing.
//
// Requests are counted in the Prometheus metrics under the method names
// "rest.<Endpoint>" (rest.ModelInfer, rest.ModelMetadata, ...).
//
// An infer request and its answer live on a per-request protobuf arena
// whose first block is on the worker's stack: a single-example infer
// allocates nothing for its messages.
//
// Thread-safe; the core, auth and metrics must outlive the handler.
#ifndef BNSERVE_SERVER_INFERENCE_KSERVE_HTTP_H_
#define BNSERVE_SERVER_INFERENCE_KSERVE_HTTP_H_

#include "server/common/auth.h"
#include "server/common/http_server.h"
#include "server/inference/kserve_core.h"
#include "server/inference/kserve_json.h"
#include "server/inference/metrics.h"

namespace bnserve::inference {

class KServeHttpHandler {
 public:
  // `metrics` may be null.
  KServeHttpHandler(const KServeCore* core, const server::TokenAuth* auth,
                    Metrics* metrics)
      : core_(core), auth_(auth), metrics_(metrics) {}

  // Answers one request; never throws for bad input.
  server::HttpResponse Handle(const server::HttpRequest& request) const;

 private:
  server::HttpResponse Answer(const KServeRoute& route,
                              const server::HttpRequest& request,
                              absl::Status* status) const;
  // The GET queries of one model (metadata, readiness, config, statistics)
  // and the server metadata.
  server::HttpResponse AnswerModelQuery(const KServeRoute& route,
                                        absl::Status* status) const;

  server::HttpResponse AnswerInfer(const KServeRoute& route,
                                   const server::HttpRequest& request,
                                   absl::Status* status) const;

  const KServeCore* const core_;
  const server::TokenAuth* const auth_;
  Metrics* const metrics_;
};

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_KSERVE_HTTP_H_
