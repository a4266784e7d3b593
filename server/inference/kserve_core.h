// The KServe v2 / Open Inference Protocol core, independent of any transport:
// decoding, validation, inference and encoding of the protocol's messages
// (the KServe protobuf messages of proto/inference/grpc_service.proto, which
// the gRPC service receives as they are and the REST handler builds from
// JSON). Every method returns absl::Status; each transport converts it once
// (server::ToGrpcStatus, HttpStatusOf) and does its own authentication.
//
// Model "version" strings: empty = the newest loaded version; digits = that
// version; anything else is taken as a label (a bnserve extension).
//
// Model tensors (ModelMetadata and ModelConfig report them):
//   input          "input"          FP32 [-1, F] or [-1, C, H, W] (rows are
//                                   independent)
//   outputs        "output"         FP32 [-1, D]  raw outputs (logits for
//                                   classification)
//   classification "probabilities"  FP32 [-1, D]  softmax of "output"
//                  "class_id"       INT64 [-1]    argmax
// ModelInfer takes exactly one FP32 input named "input" (another name is
// INVALID_ARGUMENT naming both) of shape [N, F] (or [N, C, H, W] for an
// image model; 1 <= N <= kMaxBatchRows) whose values are either in
// contents.fp32_contents or in raw_input_contents[0] (little-endian,
// row-major), never both. The declared shape is checked against the model,
// and the answer's size and work against the RequestLimits, before anything
// is allocated. The request's `outputs` (if any) select which outputs are
// returned, raw (raw_output_contents) when the input came raw and typed
// (fp32_contents / int64_contents) otherwise.
//
// The platform of every model is kPlatform, "bnserve_snapshot": the
// protocol's `<framework>_<format>` convention (Triton's "onnxruntime_onnx",
// "pytorch_libtorch"): the bnserve runtime serving a bnserve snapshot.
//
// Thread-safe; the manager must outlive the core.
#ifndef BNSERVE_SERVER_INFERENCE_KSERVE_CORE_H_
#define BNSERVE_SERVER_INFERENCE_KSERVE_CORE_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "inference/grpc_service.pb.h"
#include "server/inference/request_limits.h"
#include "server/inference/servable_manager.h"

namespace bnserve::inference {

inline constexpr char kKServePlatform[] = "bnserve_snapshot";
inline constexpr char kKServeInputName[] = "input";

class KServeCore {
 public:
  KServeCore(const ServableManager* manager, RequestLimits limits = {})
      : manager_(manager), limits_(limits) {}

  // Always true while the process answers.
  bool Live() const { return true; }
  // True once the configured models are loaded and verified, until
  // StopServing() (the server is draining: readiness probes must fail so
  // that no new traffic arrives).
  bool Ready() const {
    return !stopping_.load(std::memory_order_relaxed) && manager_->Ready();
  }
  void StopServing() { stopping_.store(true, std::memory_order_relaxed); }

  // Name "bnserve", the build's version and the extensions implemented.
  void ServerMetadata(::inference::ServerMetadataResponse* response) const;

  // ready = false for a model or version not loaded (yet); INVALID_ARGUMENT
  // only for a malformed name or version.
  absl::Status ModelReady(const ::inference::ModelReadyRequest& request,
                          ::inference::ModelReadyResponse* response) const;

  // NOT_FOUND for a model, version or label not loaded here; UNAVAILABLE for
  // a served model with nothing loaded yet.
  absl::Status ModelMetadata(
      const ::inference::ModelMetadataRequest& request,
      ::inference::ModelMetadataResponse* response) const;

  // See the header comment. Counted in the chosen version's InferStats.
  absl::Status ModelInfer(const ::inference::ModelInferRequest& request,
                          ::inference::ModelInferResponse* response) const;

  // Triton's ModelConfig: name, platform, max_batch_size (kMaxBatchRows),
  // the input and outputs without the batch dimension.
  absl::Status ModelConfig(const ::inference::ModelConfigRequest& request,
                           ::inference::ModelConfigResponse* response) const;

  // Triton's ModelStatistics: every loaded version of the named model (every
  // model when the name is empty), or the one version asked for.
  absl::Status ModelStatistics(
      const ::inference::ModelStatisticsRequest& request,
      ::inference::ModelStatisticsResponse* response) const;

  // Triton's RepositoryIndex: every model and version known here, state
  // "READY" or "UNAVAILABLE" (with the reason); `ready` keeps only READY.
  absl::Status RepositoryIndex(
      const ::inference::RepositoryIndexRequest& request,
      ::inference::RepositoryIndexResponse* response) const;

 private:
  absl::StatusOr<std::shared_ptr<const Servable>> Select(
      const std::string& model, const std::string& version) const;
  absl::Status Infer(const Servable& servable,
                     const ::inference::ModelInferRequest& request,
                     ::inference::ModelInferResponse* response,
                     int64_t* rows_out, absl::Duration* compute) const;

  const ServableManager* const manager_;
  const RequestLimits limits_;
  std::atomic<bool> stopping_{false};
};

// Parses a KServe model version string (see above) into a VersionRequest.
absl::StatusOr<VersionRequest> ParseKServeVersion(const std::string& version);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_KSERVE_CORE_H_
