// The KServe v2 / Open Inference Protocol gRPC service
// (`inference.GRPCInferenceService`), so standard KServe and Triton clients
// work unchanged.
//
// Model "version" strings: empty = the newest loaded version; digits = that
// version; anything else is taken as a label (a bnserve extension).
//
// Model tensors (ModelMetadata reports them):
//   input          "input"          FP32 [-1, F]  (rows are independent; any
//                                   input name is accepted)
//   outputs        "output"         FP32 [-1, D]  raw outputs (logits for
//                                   classification)
//   classification "probabilities"  FP32 [-1, D]  softmax of "output"
//                  "class_id"       INT64 [-1]    argmax
// ModelInfer takes exactly one FP32 input of shape [N, F] (1 <= N <=
// kMaxBatchRows) whose values are either in contents.fp32_contents or in
// raw_input_contents[0] (little-endian, row-major), never both. The declared
// shape is checked against the model before anything is allocated. The
// request's `outputs` (if any) select which outputs are returned. Outputs
// are returned in raw_output_contents when the input came raw, in typed
// contents (fp32_contents / int64_contents) otherwise.
//
// Thread-safe; the manager, auth and metrics must outlive the service.
#ifndef BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_
#define BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "inference/grpc_service.grpc.pb.h"
#include "server/common/auth.h"
#include "server/inference/metrics.h"
#include "server/inference/request_limits.h"
#include "server/inference/servable_manager.h"

namespace bnserve::inference {

class KServeService final
    : public ::inference::GRPCInferenceService::CallbackService {
 public:
  KServeService(const ServableManager* manager, const server::TokenAuth* auth,
                Metrics* metrics, RequestLimits limits = {})
      : manager_(manager), auth_(auth), metrics_(metrics), limits_(limits) {}

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

 private:
  absl::StatusOr<std::shared_ptr<const Servable>> Select(
      const std::string& model, const std::string& version) const;
  absl::Status DoModelReady(const grpc::CallbackServerContext& context,
                            const ::inference::ModelReadyRequest& request,
                            ::inference::ModelReadyResponse* response) const;
  absl::Status DoModelMetadata(
      const grpc::CallbackServerContext& context,
      const ::inference::ModelMetadataRequest& request,
      ::inference::ModelMetadataResponse* response) const;
  absl::Status DoModelInfer(const grpc::CallbackServerContext& context,
                            const ::inference::ModelInferRequest& request,
                            ::inference::ModelInferResponse* response) const;

  const ServableManager* const manager_;
  const server::TokenAuth* const auth_;
  Metrics* const metrics_;
  const RequestLimits limits_;
};

// Parses a KServe model version string (see above) into a VersionRequest.
absl::StatusOr<VersionRequest> ParseKServeVersion(const std::string& version);

}  // namespace bnserve::inference

#endif  // BNSERVE_SERVER_INFERENCE_KSERVE_SERVICE_H_
