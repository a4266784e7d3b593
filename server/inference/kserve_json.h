// The KServe v2 REST encoding: URL paths to routes, JSON infer bodies to
// ModelInferRequest, and the core's protobuf answers to JSON. Pure
// functions (no sockets, no HTTP library), so the parsers are fuzzed
// directly (tests/fuzz/kserve_rest_fuzzer.cc).
//
// Paths (GET unless noted; {v} is a version number or a label):
//   /v2/health/live, /v2/health/ready, /v2
//   /v2/models/{m}[/versions/{v}]              model metadata
//   /v2/models/{m}[/versions/{v}]/ready        model readiness
//   /v2/models/{m}[/versions/{v}]/infer        POST: inference
//   /v2/models/{m}[/versions/{v}]/config       Triton ModelConfig
//   /v2/models[/{m}[/versions/{v}]]/stats      Triton ModelStatistics
//   /v2/repository/index                       POST (or GET): RepositoryIndex
//
// Infer body: {"id"?: string, "parameters"?: object (ignored),
//   "inputs": [{"name", "datatype", "shape": [ints], "data": [numbers, flat
//   or nested, row-major], "parameters"?}], "outputs"?: [{"name",
//   "parameters"?}]}. Parsed in one streaming pass (SAX, RapidJSON's reader:
// the infer body is the REST hot path, and nlohmann's lexer took twice as
// long over it; the other documents use nlohmann) straight into the
// request: no document tree is built, nesting deeper than kMaxJsonDepth is
// refused when it is reached, and the values take at most twice the body's
// size. Each number becomes the double nearest to its text, then FP32. Unknown
// keys, non-numbers in `data`, numbers outside the FP32 range and non-integers
// in `shape` are INVALID_ARGUMENT naming the JSON path
// (`inputs[0].data[17]: ...`).
#ifndef BNSERVE_SERVER_INFERENCE_KSERVE_JSON_H_
#define BNSERVE_SERVER_INFERENCE_KSERVE_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "inference/grpc_service.pb.h"

namespace bnserve::inference {

// Deepest nesting of arrays and objects in a REST request body.
inline constexpr int kMaxJsonDepth = 16;
// Most dimensions of a declared tensor shape.
inline constexpr int kMaxShapeDims = 8;

struct KServeRoute {
  enum Kind {
    kLive,
    kReady,
    kServerMetadata,
    kModelMetadata,
    kModelReady,
    kModelInfer,
    kModelConfig,
    kModelStatistics,  // model empty: every model
    kRepositoryIndex,
  };
  Kind kind = kLive;
  std::string model;
  std::string version;  // empty: the newest
};

// NOT_FOUND for a path that is not an endpoint; INVALID_ARGUMENT naming the
// method to use for a known path with the wrong method.
absl::StatusOr<KServeRoute> ParseKServeRoute(absl::string_view method,
                                             absl::string_view path);

// Parses an infer body into `request` (its model name and version are the
// caller's, from the path). See the header comment.
absl::Status ParseInferBody(absl::string_view body,
                            ::inference::ModelInferRequest* request);

// Parses an optional RepositoryIndex body: empty, or {"ready"?: bool,
// "repository_name"?: string}.
absl::Status ParseIndexBody(absl::string_view body,
                            ::inference::RepositoryIndexRequest* request);

// The answers as JSON. Floats are written in their shortest round-trip form.
std::string InferResponseJson(const ::inference::ModelInferResponse& r);
std::string ServerMetadataJson(const ::inference::ServerMetadataResponse& r);
std::string ModelMetadataJson(const ::inference::ModelMetadataResponse& r);
std::string ModelConfigJson(const ::inference::ModelConfigResponse& r);
std::string ModelStatisticsJson(const ::inference::ModelStatisticsResponse& r);
std::string RepositoryIndexJson(const ::inference::RepositoryIndexResponse& r);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_KSERVE_JSON_H_
